"""Convolution written from its definition, with the backward pass written out by hand.

For an input x padded to xp and a kernel w (spatial taps t, dilation d, stride s), the
cross-correlation is

    y[n, o, co] = sum_{t, ci} xp[n, o s + t d, ci] w[t, ci, co]            (per spatial axis)

(Goodfellow, Bengio & Courville, Deep Learning, Sec. 9.1, eq. 9.6, with stride and dilation).
It is computed as im2col: shifted, strided slices of xp stacked into patches, then one
dot_general over (taps, input channels). With g groups the channels split into g independent
blocks, which become a batch dimension of the dot_general.

Backward (`jax.custom_vjp`), from the same sum:
  - kernel gradient: dL/dw[t, ci, co] = sum_{n, o} xp[n, o s + t d, ci] dL/dy[n, o, co], the
    cross-correlation of the layer input with the output gradient;
  - input gradient: the output gradient dilated by the stride (s - 1 zeros between entries),
    padded, then fully convolved with the kernel, i.e. cross-correlated with the kernel flipped
    on every spatial axis and with its in/out channel roles swapped (per group).
The input-gradient map is also the transposed convolution (`transpose_conv`).
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

Pads = tuple[tuple[int, int], ...]


def patches(xp: jax.Array, kernel_size: tuple[int, ...], stride: tuple[int, ...],
            dilation: tuple[int, ...]) -> jax.Array:
    """im2col of an already padded input: (N, *spatial, C) -> (N, *out, prod(kernel_size), C).

    Tap t (in row-major order over the kernel's spatial axes) of output position o holds
    xp[n, o s + t d, :], with out = floor((m - (n - 1) d - 1) / s) + 1 per axis.
    """
    spatial = xp.shape[1:-1]
    out = [(m - (k - 1) * d - 1) // s + 1
           for m, k, s, d in zip(spatial, kernel_size, stride, dilation, strict=True)]
    taps = []
    for offsets in itertools.product(*(range(k) for k in kernel_size)):
        first = [t * d for t, d in zip(offsets, dilation, strict=True)]
        last = [b + (o - 1) * s + 1 for b, o, s in zip(first, out, stride, strict=True)]
        taps.append(lax.slice(xp, (0, *first, 0), (xp.shape[0], *last, xp.shape[-1]),
                              (1, *stride, 1)))
    return jnp.stack(taps, axis=-2)


def correlate(xp: jax.Array, w: jax.Array, stride: tuple[int, ...], dilation: tuple[int, ...],
              groups: int, precision=None) -> jax.Array:
    """VALID grouped cross-correlation of a padded input xp (N, *spatial, Cin) with w (*k, Cin/g,
    Cout): returns (N, *out, Cout)."""
    nd = w.ndim - 2
    kernel_size = w.shape[:nd]
    cin_g, cout = w.shape[-2], w.shape[-1]
    cols = patches(xp, kernel_size, stride, dilation)        # (N, *out, K, Cin)
    batch_out = cols.shape[:-2]
    taps = math.prod(kernel_size)
    if groups == 1:
        y = lax.dot_general(cols.reshape(-1, taps * cin_g), w.reshape(taps * cin_g, cout),
                            (((1,), (0,)), ((), ())), precision=precision)
        return y.reshape(*batch_out, cout)
    cols = cols.reshape(-1, taps, groups, cin_g)             # (P, K, g, Cin/g)
    wg = w.reshape(taps, cin_g, groups, cout // groups)      # (K, Cin/g, g, Cout/g)
    y = lax.dot_general(cols, wg, (((1, 3), (0, 1)), ((2,), (2,))), precision=precision)
    # y: (g, P, Cout/g); output channel index is group-major, as in feature_group_count.
    return jnp.moveaxis(y, 0, 1).reshape(*batch_out, cout)


def kernel_grad(xp: jax.Array, dy: jax.Array, kernel_size: tuple[int, ...],
                stride: tuple[int, ...], dilation: tuple[int, ...], groups: int,
                precision=None) -> jax.Array:
    """dL/dw: cross-correlation of the padded input with the output gradient, (*k, Cin/g, Cout)."""
    cols = patches(xp, kernel_size, stride, dilation)        # (N, *out, K, Cin)
    taps = math.prod(kernel_size)
    cin, cout = xp.shape[-1], dy.shape[-1]
    cols = cols.reshape(-1, taps, groups, cin // groups)
    dyg = dy.reshape(-1, groups, cout // groups)
    dw = lax.dot_general(cols, dyg, (((0,), (0,)), ((2,), (1,))), precision=precision)
    # dw: (g, K, Cin/g, Cout/g) -> (K, Cin/g, g, Cout/g), output channels group-major.
    dw = jnp.transpose(dw, (1, 2, 0, 3))
    return dw.reshape(*kernel_size, cin // groups, cout)


def flip_transpose_kernel(w: jax.Array, groups: int) -> jax.Array:
    """Kernel of the adjoint conv: spatially flipped, in/out channels swapped within each group.

    (*k, Cin/g, Cout) -> (*k, Cout/g, Cin); entry [t, j, k Cin/g + i] = w[-t, i, k Cout/g + j].
    """
    nd = w.ndim - 2
    k = w.shape[:nd]
    cin_g, cout = w.shape[-2], w.shape[-1]
    w = jnp.flip(w, axis=tuple(range(nd)))
    w = w.reshape(*k, cin_g, groups, cout // groups)
    w = jnp.moveaxis(w, (nd, nd + 2), (nd + 2, nd))
    return w.reshape(*k, cout // groups, cin_g * groups)


def transpose_padding(in_size: tuple[int, ...], out_size: tuple[int, ...],
                      kernel_size: tuple[int, ...], stride: tuple[int, ...],
                      dilation: tuple[int, ...], padding: Pads) -> tuple[tuple[int, int, int], ...]:
    """lax.pad config (lo, hi, interior) that turns an output gradient into the input of the
    adjoint correlation: interior s - 1 dilates by the stride; lo = (n - 1) d - p_lo and
    hi = m + p_lo - (o - 1) s - 1 make the result span exactly the m input positions (negative
    values crop, for padding wider than the kernel)."""
    cfg = []
    for m, o, k, s, d, (lo, _) in zip(in_size, out_size, kernel_size, stride, dilation, padding,
                                      strict=True):
        cfg.append(((k - 1) * d - lo, m + lo - (o - 1) * s - 1, s - 1))
    return tuple(cfg)


def transpose_conv(dy: jax.Array, w: jax.Array, in_size: tuple[int, ...], stride: tuple[int, ...],
                   padding: Pads, dilation: tuple[int, ...], groups: int,
                   precision=None) -> jax.Array:
    """Adjoint of x -> correlate(pad(x, padding), w): (N, *out, Cout) -> (N, *in_size, Cin).

    The full convolution of the stride-dilated `dy` with `w`, written as a stride-1
    cross-correlation with the flipped, channel-transposed kernel."""
    nd = w.ndim - 2
    cfg = transpose_padding(in_size, dy.shape[1:-1], w.shape[:nd], stride, dilation, padding)
    zero = jnp.zeros((), dy.dtype)
    dyp = lax.pad(dy, zero, ((0, 0, 0), *cfg, (0, 0, 0)))
    return correlate(dyp, flip_transpose_kernel(w, groups), (1,) * nd, dilation, groups, precision)


def _pad(x: jax.Array, padding: Pads) -> jax.Array:
    return lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), *((lo, hi, 0) for lo, hi in padding),
                                               (0, 0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def conv_explicit(x: jax.Array, w: jax.Array, stride: tuple[int, ...], padding: Pads,
                  dilation: tuple[int, ...], groups: int, precision=None) -> jax.Array:
    """Grouped, strided, dilated, padded cross-correlation from the definition (module docstring).

    x (N, *spatial, Cin), w (*k, Cin/g, Cout) -> (N, *out, Cout). Arguments are assumed validated
    (see cnnjax.ops.conv). Reverse-mode only: forward-mode (jvp) is not defined for custom_vjp.
    """
    return correlate(_pad(x, padding), w, stride, dilation, groups, precision)


def _conv_fwd(x, w, stride, padding, dilation, groups, precision):
    return conv_explicit(x, w, stride, padding, dilation, groups, precision), (x, w)


def _conv_bwd(stride, padding, dilation, groups, precision, res, dy):
    x, w = res
    nd = w.ndim - 2
    dw = kernel_grad(_pad(x, padding), dy.astype(x.dtype), w.shape[:nd], stride, dilation, groups,
                     precision)
    dx = transpose_conv(dy.astype(w.dtype), w, x.shape[1:-1], stride, padding, dilation, groups,
                        precision)
    return dx.astype(x.dtype), dw.astype(w.dtype)


conv_explicit.defvjp(_conv_fwd, _conv_bwd)
