"""Public convolution ops: validation, padding resolution and dispatch to an implementation.

`conv1d` / `conv2d` compute cross-correlation (what deep-learning frameworks call convolution);
`convolve1d` / `convolve2d` compute true convolution, the kernel flipped on every spatial axis
(Goodfellow, Bengio & Courville, Deep Learning, Sec. 9.1, eqs. 9.4 and 9.6). `conv_transpose2d`
is the adjoint of `conv2d`'s linear map in x. Two interchangeable implementations:
`impl='xla'` (lax.conv_general_dilated) and `impl='explicit'` (cnnjax.ops.conv_explicit, written
from the definition with a hand-written backward pass). A third, `impl='onednn'`
(cnnjax.ops.conv_onednn), runs oneDNN's kernels on the CPU through the XLA FFI; where it cannot
(another platform, a dtype other than float32/bfloat16, the extension not built) it is XLA's.
`impl='auto'` is 'onednn' on the CPU when the extension is loaded, since it measured faster than
XLA's convolution on every layer shape and training step benchmarked (benchmarks/README.md), and
'xla' everywhere else. It is the default of `models.layers.Conv` and of the models' `conv_impl` knob
(DEFAULT_IMPL, stated once): modules are trained, and training needs only reverse mode. The functions
here default to 'xla' instead, because a pure function of this module is expected to compose with every
JAX transformation: 'onednn' and 'explicit' define reverse-mode derivatives only, so jax.jvp,
jax.jacfwd and jax.linear_transpose (which conv_transpose2d's tests use) need impl='xla'.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from cnnjax.ops import conv_explicit as _explicit
from cnnjax.ops import conv_onednn as _onednn
from cnnjax.ops.errors import OpError
from cnnjax.ops.padding import Padding, as_tuple, effective_kernel_size, resolve_padding
from cnnjax.ops.precision import widened

IMPLS = ("xla", "explicit", "onednn", "auto")
DEFAULT_IMPL = "auto"
_DIMENSION_NUMBERS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC")}
_LAYOUT = {1: ("(N, L, Cin)", "(k, Cin/groups, Cout)"),
           2: ("(N, H, W, Cin)", "(kh, kw, Cin/groups, Cout)")}

IntOrSeq = int | Sequence[int]
# Set inside `as_xla()`: every convolution traced there is XLA's, whatever its impl.
_AS_XLA = contextvars.ContextVar("cnnjax_convolutions_as_xla", default=False)


@contextlib.contextmanager
def as_xla() -> Iterator[None]:
    """Within it, every convolution is traced as XLA's `conv_general_dilated`, whatever its impl:
    the same arithmetic as one primitive, for tools that read a jaxpr (models.introspect) and
    cannot look inside oneDNN's custom call or the explicit implementation's gathers."""
    token = _AS_XLA.set(True)
    try:
        yield
    finally:
        _AS_XLA.reset(token)


class ConvSpec(NamedTuple):
    """Validated static geometry of one convolution."""

    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    groups: int


def _check_impl(impl: str, op: str) -> None:
    if impl not in IMPLS:
        raise OpError(f"{op}: impl must be one of {IMPLS}, got {impl!r}")


def _check_operands(x: jax.Array, kernel: jax.Array, nd: int, groups: int, op: str,
                    x_name: str = "x", channels_axis: int = -2) -> None:
    """Ranks and channel bookkeeping shared by conv and its transpose."""
    x_layout, k_layout = _LAYOUT[nd]
    if channels_axis == -1:
        x_layout = "(N, Ho, Wo, Cout)"
    if x.ndim != nd + 2:
        raise OpError(f"{op}: {x_name} must have rank {nd + 2} {x_layout}, got shape {x.shape}")
    if kernel.ndim != nd + 2:
        raise OpError(f"{op}: kernel must have rank {nd + 2} {k_layout}, "
                      f"got shape {kernel.shape}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise OpError(f"{op}: groups must be a positive int, got {groups!r}")
    cin_g, cout = kernel.shape[-2], kernel.shape[-1]
    if cout % groups:
        raise OpError(f"{op}: groups={groups} must divide the kernel's output channels "
                      f"{cout} (kernel {kernel.shape})")
    channels = x.shape[-1]
    expected = cin_g * groups if channels_axis == -2 else cout
    if channels != expected:
        what = (f"kernel.shape[-2] * groups = {cin_g} * {groups} = {expected}"
                if channels_axis == -2 else f"kernel.shape[-1] = {cout}")
        raise OpError(f"{op}: {x_name} has {channels} channels but {what} "
                      f"({x_name} {x.shape}, kernel {kernel.shape})")


def _check_fits(in_size: Sequence[int], kernel_size: Sequence[int], spec: ConvSpec, op: str,
                shapes: str) -> None:
    for axis, (m, n, d, (lo, hi)) in enumerate(
            zip(in_size, kernel_size, spec.dilation, spec.padding, strict=True)):
        k_eff = effective_kernel_size(n, d)
        if m + lo + hi < k_eff:
            raise OpError(f"{op}: kernel extent {k_eff} (size {n}, dilation {d}) exceeds the "
                          f"padded input {m}+{lo}+{hi} on spatial axis {axis} ({shapes})")


def validate_conv(x: jax.Array, kernel: jax.Array, bias: jax.Array | None, nd: int, *,
                  stride: IntOrSeq, padding: Padding, dilation: IntOrSeq, groups: int, impl: str,
                  op: str) -> ConvSpec:
    """Check a convolution's arguments on static shapes; return its resolved geometry.

    Raises a one-line OpError naming the argument and the shapes for: wrong rank, channel
    mismatch, groups not dividing the channels, non-positive stride or dilation, bad padding,
    a dilated kernel larger than the padded input, an unknown impl, a bias of the wrong shape.
    """
    _check_impl(impl, op)
    _check_operands(x, kernel, nd, groups, op)
    if x.shape[-1] % groups:
        raise OpError(f"{op}: groups={groups} must divide the input channels {x.shape[-1]} "
                      f"(x {x.shape})")
    stride_t = _named(as_tuple, op, stride, nd, "stride")
    dilation_t = _named(as_tuple, op, dilation, nd, "dilation")
    kernel_size = kernel.shape[:nd]
    pads = _named(resolve_padding, op, padding, kernel_size, dilation_t, stride_t, x.shape[1:-1])
    spec = ConvSpec(stride_t, dilation_t, pads, groups)
    _check_fits(x.shape[1:-1], kernel_size, spec, op, f"x {x.shape}, kernel {kernel.shape}")
    if bias is not None and tuple(bias.shape) != (kernel.shape[-1],):
        raise OpError(f"{op}: bias must have shape ({kernel.shape[-1]},) to match the kernel's "
                      f"output channels, got {tuple(bias.shape)} (kernel {kernel.shape})")
    return spec


def _named(fn, op: str, *args, **kwargs):
    """Call an argument normaliser, prefixing its error with the op's name."""
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        raise OpError(f"{op}: {e}") from None


def _promote(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, jax.Array]:
    dtype = jnp.result_type(x, kernel)
    return x.astype(dtype), kernel.astype(dtype)


def _conv(x, kernel, bias, nd, *, stride, padding, dilation, groups, impl, precision, flip, op):
    x, kernel = jnp.asarray(x), jnp.asarray(kernel)
    bias = None if bias is None else jnp.asarray(bias)
    spec = validate_conv(x, kernel, bias, nd, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, impl=impl, op=op)
    x, kernel = _promote(x, kernel)
    if _AS_XLA.get():
        impl = "xla"
    if impl == "auto":
        impl = "onednn"  # falls to XLA's below where oneDNN cannot run; XLA's on GPU/TPU
    if flip:
        kernel = jnp.flip(kernel, axis=tuple(range(nd)))
    if impl == "onednn" and _onednn.supported(x.dtype):
        x2, k2 = (x, kernel) if nd == 2 else (x[:, None], kernel[None])
        spec2 = spec if nd == 2 else ConvSpec((1, *spec.stride), (1, *spec.dilation),
                                              ((0, 0), *spec.padding), groups)
        y = _onednn.conv_onednn(x2, k2, spec2.stride, spec2.padding, spec2.dilation, groups,
                                precision)
        y = y if nd == 2 else y[:, 0]
    elif impl in ("xla", "onednn"):
        y = lax.conv_general_dilated(
            x, kernel, window_strides=spec.stride, padding=spec.padding,
            rhs_dilation=spec.dilation, dimension_numbers=_DIMENSION_NUMBERS[nd],
            feature_group_count=groups, precision=precision)
    else:
        y = _explicit.conv_explicit(x, kernel, spec.stride, spec.padding, spec.dilation, groups,
                                    precision)
    return y if bias is None else add_bias(y, bias)


def add_bias(y: jax.Array, bias: jax.Array) -> jax.Array:
    """y + bias along the last (channel) axis, in y's dtype.

    Below float32 (bfloat16 compute) the sum is formed in float32 and rounded once: the values are
    the same, but reverse mode then sums the bias gradient (the cotangent over every other axis) in
    float32. A bfloat16 addition's gradient is a bfloat16 reduction, which XLA:CPU rounds after
    every partial sum, so that it stalls at 2**8 terms' worth (lenet5's first bias gradient at batch
    128: 16 instead of 1004)."""
    wide, dtype = widened(y)
    return (wide + bias.astype(wide.dtype)).astype(dtype)


def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, *,
           stride: IntOrSeq = 1, padding: Padding = "VALID", dilation: IntOrSeq = 1,
           groups: int = 1, impl: str = "xla", precision=None) -> jax.Array:
    """2-D cross-correlation (deep-learning "convolution"), plus bias.

    y[n, i, j, o] = b[o] + sum_{a, b, c} xp[n, i sh + a dh, j sw + b dw, g(o) Cin/g + c]
                                        * kernel[a, b, c, o]
    where xp is x zero-padded per `padding` (see `resolve_padding`: 'VALID', 'SAME', 'FULL', an
    int, or ((lo, hi), (lo, hi))) and g(o) is the group of output channel o (`groups` splits the
    channels into independent blocks: 2 for AlexNet's two towers, Cin for depthwise).

    x: (N, H, W, Cin); kernel: (kh, kw, Cin/groups, Cout) HWIO; bias: (Cout,) or None.
    stride, dilation: int or (sh, sw). Returns (N, Ho, Wo, Cout) with Ho = conv_output_size(H, kh,
    sh, padding, dh). x and kernel are promoted to a common dtype, which the output keeps.
    impl: 'xla', 'explicit' (definition-based, hand-written backward; reverse-mode only) or
    'onednn' (oneDNN on the CPU through the XLA FFI, reverse-mode only; XLA's conv elsewhere) or
    'auto' ('onednn' where it runs, else 'xla').
    """
    return _conv(x, kernel, bias, 2, stride=stride, padding=padding, dilation=dilation,
                 groups=groups, impl=impl, precision=precision, flip=False, op="conv2d")


def convolve2d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, *,
               stride: IntOrSeq = 1, padding: Padding = "VALID", dilation: IntOrSeq = 1,
               groups: int = 1, impl: str = "xla", precision=None) -> jax.Array:
    """2-D true convolution: `conv2d` with the kernel flipped on both spatial axes.

    y[n, i, j, o] = b[o] + sum_{a, b, c} xp[n, i sh + a dh, j sw + b dw, c]
                                        * kernel[kh - 1 - a, kw - 1 - b, c, o]
    (Deep Learning, Sec. 9.1, eq. 9.4, with stride, dilation and groups). Shapes as in `conv2d`.
    Padding is resolved exactly as for `conv2d`, so convolve2d(x, w) == conv2d(x, flip(w)) for
    every argument; for even kernel sizes 'SAME' therefore puts the extra padded row on the high
    side, one pixel off scipy.signal.convolve2d(mode='same').
    """
    return _conv(x, kernel, bias, 2, stride=stride, padding=padding, dilation=dilation,
                 groups=groups, impl=impl, precision=precision, flip=True, op="convolve2d")


def conv1d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, *,
           stride: IntOrSeq = 1, padding: Padding = "VALID", dilation: IntOrSeq = 1,
           groups: int = 1, impl: str = "xla", precision=None) -> jax.Array:
    """1-D cross-correlation: y[n, i, o] = b[o] + sum_{t, c} xp[n, i s + t d, c] kernel[t, c, o].

    x: (N, L, Cin); kernel: (k, Cin/groups, Cout); bias: (Cout,) or None. Returns (N, Lo, Cout)
    with Lo = conv_output_size(L, k, s, padding, d). Other arguments as in `conv2d`.
    """
    return _conv(x, kernel, bias, 1, stride=stride, padding=padding, dilation=dilation,
                 groups=groups, impl=impl, precision=precision, flip=False, op="conv1d")


def convolve1d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, *,
               stride: IntOrSeq = 1, padding: Padding = "VALID", dilation: IntOrSeq = 1,
               groups: int = 1, impl: str = "xla", precision=None) -> jax.Array:
    """1-D true convolution: y[n, i, o] = b[o] + sum_{t, c} xp[n, i s + t d, c] kernel[k-1-t, c, o]
    (Deep Learning, Sec. 9.1, eq. 9.3 in discrete form). Shapes as in `conv1d`."""
    return _conv(x, kernel, bias, 1, stride=stride, padding=padding, dilation=dilation,
                 groups=groups, impl=impl, precision=precision, flip=True, op="convolve1d")


def transposed_input_size(out_size: int, kernel_size: int, *, stride: int, padding: Padding,
                          dilation: int, output_padding: int) -> tuple[int, tuple[int, int]]:
    """Input length m of the conv whose output length is `out_size`, and its (lo, hi) padding.

    Several m give the same output length when the stride exceeds 1; `output_padding` (0 <= it
    < stride) picks m = m_min + output_padding, as torch's ConvTranspose does.
    """
    k_eff = effective_kernel_size(kernel_size, dilation)
    if isinstance(padding, str) and padding.upper() == "SAME":
        # SAME gives ceil(m / s) outputs, so the candidates are (o - 1) s + 1 ... o s.
        m = (out_size - 1) * stride + 1 + output_padding
        ((lo, hi),) = resolve_padding(padding, (kernel_size,), dilation, stride, (m,))
        return m, (lo, hi)
    ((lo, hi),) = resolve_padding(padding, (kernel_size,), dilation, stride, None)
    return (out_size - 1) * stride + k_eff - lo - hi + output_padding, (lo, hi)


def _flip_transpose_kernel(w: jax.Array, groups: int) -> jax.Array:
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


def _transpose_padding(in_size, out_size, kernel_size, stride, dilation, padding):
    """Padding of the stride-dilated y for the adjoint correlation: lo = (n - 1) d - p_lo and
    hi = m + p_lo - (o - 1) s - 1 make it span exactly the m input positions (negative values
    crop, for padding wider than the kernel)."""
    return [((k - 1) * d - lo, m + lo - (o - 1) * s - 1)
            for m, o, k, s, d, (lo, _) in zip(in_size, out_size, kernel_size, stride, dilation,
                                              padding, strict=True)]


def conv_transpose2d(y: jax.Array, kernel: jax.Array, *, stride: IntOrSeq = 1,
                     padding: Padding = "VALID", dilation: IntOrSeq = 1, groups: int = 1,
                     output_padding: IntOrSeq = 0, impl: str = "xla",
                     precision=None) -> jax.Array:
    """Transposed convolution: the adjoint of x -> conv2d(x, kernel, stride=..., padding=...,
    dilation=..., groups=...) (Dumoulin & Visin 2016, Sec. 4), with the SAME kernel array.

    y: (N, Ho, Wo, Cout); kernel: (kh, kw, Cin/groups, Cout) HWIO, as given to conv2d.
    Returns (N, H, W, Cin), where H is the smallest conv input size giving Ho, plus
    `output_padding` (int or pair, each 0 <= op < stride), which selects among the input sizes
    that give the same output size. Values and shape equal jax.linear_transpose of conv2d.
    Computed as a full convolution of the stride-dilated y with the flipped kernel.
    """
    op = "conv_transpose2d"
    y, kernel = jnp.asarray(y), jnp.asarray(kernel)
    _check_impl(impl, op)
    _check_operands(y, kernel, 2, groups, op, x_name="y", channels_axis=-1)
    stride_t = _named(as_tuple, op, stride, 2, "stride")
    dilation_t = _named(as_tuple, op, dilation, 2, "dilation")
    out_pad = _named(as_tuple, op, output_padding, 2, "output_padding", minimum=0)
    if any(p >= s for p, s in zip(out_pad, stride_t, strict=True)):
        raise OpError(f"{op}: output_padding must be < stride on every axis, got "
                      f"output_padding={out_pad}, stride={stride_t}")
    in_size, pads = [], []
    for axis in range(2):
        if not isinstance(padding, str | int) and len(padding) != 2:
            raise OpError(f"{op}: padding must hold 2 (lo, hi) pairs, got {padding!r}")
        pad_axis = padding if isinstance(padding, str | int) else (padding[axis],)
        m, pad = _named(lambda p, a=axis: transposed_input_size(
            y.shape[1 + a], kernel.shape[a], stride=stride_t[a], padding=p,
            dilation=dilation_t[a], output_padding=out_pad[a]), op, pad_axis)
        if m < 1:
            raise OpError(f"{op}: y {y.shape} with kernel {kernel.shape}, padding {padding!r} "
                          f"and output_padding {out_pad} gives conv input size {m} < 1 on "
                          f"spatial axis {axis}; raise output_padding (it must stay < stride)")
        in_size.append(m)
        pads.append(pad)
    y, kernel = _promote(y, kernel)
    if impl in ("xla", "onednn", "auto"):  # the transpose has no oneDNN path: XLA's
        # Full convolution of the stride-dilated y (lhs_dilation) with the flipped kernel.
        pads_t = _transpose_padding(in_size, y.shape[1:3], kernel.shape[:2], stride_t, dilation_t,
                                    pads)
        return lax.conv_general_dilated(
            y, _flip_transpose_kernel(kernel, groups), window_strides=(1, 1),
            padding=pads_t, lhs_dilation=stride_t,
            rhs_dilation=dilation_t, dimension_numbers=_DIMENSION_NUMBERS[2],
            feature_group_count=groups, precision=precision)
    return _explicit.transpose_conv(y, kernel, tuple(in_size), stride_t, tuple(pads), dilation_t,
                                    groups, precision)
