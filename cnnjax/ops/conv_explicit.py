"""Convolution written from its definition, with the backward pass written out by hand.

For an input x zero-padded to xp and a kernel w with spatial taps t, dilation d and stride s,
the cross-correlation is, per spatial axis,

    y[n, o, co] = sum_{t, ci} xp[n, o s + t d, ci] w[t, ci, co]

(Goodfellow, Bengio & Courville, Deep Learning, Sec. 9.1, eq. 9.6, with stride and dilation).
It is evaluated as im2col one kernel row at a time: the strided windows xp[n, o s + t d] of all
taps in a row are stacked along channels and multiplied with that row of the kernel in one
dot_general, and the rows are summed. (A single im2col of all taps materialises prod(k) copies of
the input; one dot per tap wastes the CPU's matmul on tiny contractions; rows sit between. With
few input channels and many rows, e.g. AlexNet's conv1, one block of all taps is used instead;
with one input channel per group the dot degenerates to a fused broadcast multiply-add.)
With g groups, channels split into g independent blocks that become a batch axis of the dot.

Backward (`jax.custom_vjp`), by differentiating the same sum:
  - kernel gradient: dL/dw[t, ci, co] = sum_{n, o} xp[n, o s + t d, ci] dL/dy[n, o, co], the
    cross-correlation of the (padded) layer input with the output gradient;
  - input gradient: dL/dxp[i] = sum_t sum_{o : o s + t d = i} dL/dy[o] w[t]^T, the full
    convolution of the stride-dilated output gradient (s - 1 zeros between entries) with the
    kernel, i.e. a cross-correlation with the kernel flipped on every spatial axis and its
    channel roles swapped. It is evaluated tap by tap: each tap adds dL/dy w[t]^T, shifted by
    t d. Taps whose shift t d has the same residue mod s land on the same phase of the input
    grid, so each phase is accumulated on its own and the phases are interleaved at the end;
    the zeros of the stride-dilated gradient are never materialised. Cropping the padding
    gives dL/dx.
The input-gradient map is the transposed convolution (`transpose_conv`).
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

Pads = tuple[tuple[int, int], ...]
Ints = tuple[int, ...]


def output_size(in_size: Ints, kernel_size: Ints, stride: Ints, dilation: Ints) -> Ints:
    """VALID output size per axis: floor((m - (n - 1) d - 1) / s) + 1."""
    return tuple((m - (k - 1) * d - 1) // s + 1
                 for m, k, s, d in zip(in_size, kernel_size, stride, dilation, strict=True))


def window(xp: jax.Array, offsets: Ints, stride: Ints, dilation: Ints, out: Ints) -> jax.Array:
    """xp[n, o s + t d, c] for all output positions o of tap t = offsets: (N, *out, C)."""
    first = [t * d for t, d in zip(offsets, dilation, strict=True)]
    last = [f + (o - 1) * s + 1 for f, o, s in zip(first, out, stride, strict=True)]
    return lax.slice(xp, (0, *first, 0), (xp.shape[0], *last, xp.shape[-1]), (1, *stride, 1))


def tap_patches(xp: jax.Array, taps: list[Ints], stride: Ints, dilation: Ints, out: Ints,
                groups: int) -> jax.Array:
    """im2col over the given kernel taps: (N * prod(out), len(taps), groups, C / groups)."""
    cols = jnp.stack([window(xp, t, stride, dilation, out) for t in taps], axis=-2)
    return cols.reshape(-1, len(taps), groups, xp.shape[-1] // groups)


def tap_blocks(kernel_size: Ints, rows: bool = True) -> list[list[Ints]]:
    """Kernel taps in row-major order, split into kernel rows (one block per index of the
    leading kernel axes), or as one block of all taps when `rows` is false."""
    taps = list(itertools.product(*(range(k) for k in kernel_size)))
    if not rows:
        return [taps]
    size = kernel_size[-1]
    return [taps[i:i + size] for i in range(0, len(taps), size)]


def correlate(xp: jax.Array, w: jax.Array, stride: Ints, dilation: Ints, groups: int,
              precision=None) -> jax.Array:
    """VALID grouped cross-correlation of an already padded xp (N, *spatial, Cin) with
    w (*k, Cin/g, Cout): returns (N, *out, Cout)."""
    nd = w.ndim - 2
    kernel_size, (cin_g, cout) = w.shape[:nd], w.shape[nd:]
    out = output_size(xp.shape[1:-1], kernel_size, stride, dilation)
    if cin_g == 1:
        # One input channel per group (LeNet C1, depthwise): the sum over input channels is
        # empty, so the conv is a broadcast multiply-add per tap, which XLA fuses into one loop.
        wg = w.reshape(*kernel_size, groups, cout // groups)
        y = 0
        for t in itertools.product(*(range(k) for k in kernel_size)):
            y = y + window(xp, t, stride, dilation, out)[..., None] * wg[t]
        return y.reshape(xp.shape[0], *out, cout)
    # Row by row, each extra row costs one more pass over the (P, Cout) accumulator; one block
    # of all taps instead costs a larger patch matrix. Take rows unless the accumulator passes
    # outweigh the patch matrix (few input channels, many rows: AlexNet conv1, the ResNet stem).
    n_taps = math.prod(kernel_size)
    rows = (n_taps // kernel_size[-1] - 1) * cout <= n_taps * cin_g
    wt = w.reshape(n_taps, cin_g, groups, cout // groups)
    y, start = 0, 0
    for block in tap_blocks(kernel_size, rows):
        cols = tap_patches(xp, block, stride, dilation, out, groups)
        wb = wt[start:start + len(block)]
        start += len(block)
        # (P, taps, g, c) x (taps, c, g, o) -> (g, P, o): contract taps and channels, batch g.
        y = y + lax.dot_general(cols, wb, (((1, 3), (0, 1)), ((2,), (2,))), precision=precision)
    return jnp.moveaxis(y, 0, 1).reshape(xp.shape[0], *out, cout)


def kernel_grad(xp: jax.Array, dy: jax.Array, kernel_size: Ints, stride: Ints, dilation: Ints,
                groups: int, precision=None) -> jax.Array:
    """dL/dw, the cross-correlation of the padded input xp (N, *spatial, Cin) with the output
    gradient dy (N, *out, Cout): returns (*k, Cin/g, Cout)."""
    cin, cout = xp.shape[-1], dy.shape[-1]
    out = dy.shape[1:-1]
    dyg = dy.reshape(-1, groups, cout // groups)
    rows = []
    for block in tap_blocks(kernel_size):
        cols = tap_patches(xp, block, stride, dilation, out, groups)
        # (P, taps, g, c) x (P, g, o) -> (g, taps, c, o): contract positions, batch groups.
        rows.append(lax.dot_general(cols, dyg, (((0,), (0,)), ((2,), (1,))),
                                    precision=precision))
    dw = jnp.concatenate(rows, axis=1)                       # (g, taps, c, o)
    dw = jnp.moveaxis(dw, 0, -2)                             # (taps, c, g, o)
    return dw.reshape(*kernel_size, cin // groups, cout)


def transpose_conv(dy: jax.Array, w: jax.Array, in_size: Ints, stride: Ints, padding: Pads,
                   dilation: Ints, groups: int, precision=None) -> jax.Array:
    """Adjoint of x -> correlate(pad(x, padding), w): (N, *out, Cout) -> (N, *in_size, Cin).

    The full convolution of the stride-dilated dy with w, accumulated per kernel tap on the s
    phases of the padded input grid (module docstring), then cropped to `in_size`.
    """
    nd = w.ndim - 2
    kernel_size, (cin_g, cout) = w.shape[:nd], w.shape[nd:]
    out = dy.shape[1:-1]
    padded = [m + lo + hi for m, (lo, hi) in zip(in_size, padding, strict=True)]
    phase_size = [-(-m // s) for m, s in zip(padded, stride, strict=True)]
    dyg = dy.reshape(-1, groups, cout // groups)
    zero = jnp.zeros((), dy.dtype)
    phases: dict[Ints, jax.Array] = {}
    wt = w.reshape(-1, cin_g, groups, cout // groups)
    start = 0
    for block in tap_blocks(kernel_size):
        wb = wt[start:start + len(block)]
        start += len(block)
        # (P, g, o) x (taps, c, g, o) -> (g, P, taps, c): dy times this row's transposed taps.
        cols = lax.dot_general(dyg, wb, (((2,), (3,)), ((1,), (2,))), precision=precision)
        cols = jnp.moveaxis(cols, 0, -2).reshape(dy.shape[0], *out, len(block), cin_g * groups)
        for b, tap in enumerate(block):
            shift = [t * d for t, d in zip(tap, dilation, strict=True)]
            phase = tuple(f % s for f, s in zip(shift, stride, strict=True))
            cfg = [(f // s, q - f // s - o, 0)
                   for f, s, q, o in zip(shift, stride, phase_size, out, strict=True)]
            term = lax.pad(cols[..., b, :], zero, ((0, 0, 0), *cfg, (0, 0, 0)))
            phases[phase] = phases[phase] + term if phase in phases else term
    cin = cin_g * groups
    empty = jnp.zeros((dy.shape[0], *phase_size, cin), dy.dtype)
    grid = jnp.stack([phases.get(r, empty) for r in itertools.product(*map(range, stride))])
    # grid[(r_1..r_nd), n, q_1..q_nd, c] holds position q s + r: interleave, then crop padding.
    grid = grid.reshape(*stride, dy.shape[0], *phase_size, cin)
    order = [nd]
    for i in range(nd):
        order += [nd + 1 + i, i]
    dxp = jnp.transpose(grid, (*order, 2 * nd + 1))
    dxp = dxp.reshape(dy.shape[0], *(q * s for q, s in zip(phase_size, stride, strict=True)), cin)
    return lax.slice(dxp, (0, *(lo for lo, _ in padding), 0),
                     (dy.shape[0], *(lo + m for m, (lo, _) in zip(in_size, padding, strict=True)),
                      cin))


def pad(x: jax.Array, padding: Pads) -> jax.Array:
    """Zero-pad the spatial axes of (N, *spatial, C) by (lo, hi) per axis."""
    cfg = ((0, 0, 0), *((lo, hi, 0) for lo, hi in padding), (0, 0, 0))
    return lax.pad(x, jnp.zeros((), x.dtype), cfg)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def conv_explicit(x: jax.Array, w: jax.Array, stride: Ints, padding: Pads, dilation: Ints,
                  groups: int, precision=None) -> jax.Array:
    """Grouped, strided, dilated, padded cross-correlation from the definition (module docstring).

    x (N, *spatial, Cin), w (*k, Cin/g, Cout) -> (N, *out, Cout). Arguments are assumed validated
    (see cnnjax.ops.conv). Reverse mode only: jax.custom_vjp defines no forward-mode (jvp) rule.
    """
    return correlate(pad(x, padding), w, stride, dilation, groups, precision)


def _conv_fwd(x, w, stride, padding, dilation, groups, precision):
    return conv_explicit(x, w, stride, padding, dilation, groups, precision), (x, w)


def _conv_bwd(stride, padding, dilation, groups, precision, res, dy):
    x, w = res
    nd = w.ndim - 2
    dw = kernel_grad(pad(x, padding), dy.astype(x.dtype), w.shape[:nd], stride, dilation, groups,
                     precision)
    dx = transpose_conv(dy.astype(w.dtype), w, x.shape[1:-1], stride, padding, dilation, groups,
                        precision)
    return dx.astype(x.dtype), dw.astype(w.dtype)


conv_explicit.defvjp(_conv_fwd, _conv_bwd)

