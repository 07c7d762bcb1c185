"""Padding normalisation and the convolution output-size formula shared by every op.

Every op in cnnjax.ops turns its `padding` argument into explicit (lo, hi) pairs, one per spatial
axis, with `resolve_padding`; models and the summary tool call the same function so that shapes
agree everywhere.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

from cnnjax.ops.errors import OpError

Padding = str | int | Sequence[tuple[int, int]]
PADDING_STRINGS = ("VALID", "SAME", "FULL")


def _as_int(value: object, name: str) -> int:
    """Return `value` as a Python int, rejecting bools, floats and anything else non-integral."""
    if isinstance(value, bool):
        raise OpError(f"{name} must be an int, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise OpError(f"{name} must be an int, got {value!r}") from None


def as_tuple(value: int | Sequence[int], nd: int, name: str, *,
             minimum: int = 1) -> tuple[int, ...]:
    """Normalise an int or a length-`nd` sequence of ints to an `nd`-tuple, each >= `minimum`."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != nd:
            raise OpError(f"{name} must be an int or a sequence of {nd} ints, got {value!r}")
        out = tuple(_as_int(v, name) for v in value)
    else:
        out = (_as_int(value, name),) * nd
    if any(v < minimum for v in out):
        raise OpError(f"{name} must be >= {minimum} on every axis, got {value!r}")
    return out


def effective_kernel_size(kernel_size: int, dilation: int = 1) -> int:
    """Extent of a dilated kernel: (n - 1) d + 1 (Dumoulin & Visin 2016, relationship 15)."""
    return (kernel_size - 1) * dilation + 1


def _pair(value: object, name: str) -> tuple[int, int]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise OpError(f"{name} must hold (lo, hi) pairs of ints, got {value!r}")
    lo, hi = (_as_int(v, name) for v in value)
    if lo < 0 or hi < 0:
        raise OpError(f"{name} must be non-negative, got {value!r}")
    return lo, hi


def resolve_padding(
    padding: Padding,
    kernel_size: Sequence[int],
    dilation: int | Sequence[int] = 1,
    stride: int | Sequence[int] = 1,
    input_size: Sequence[int] | None = None,
    *,
    name: str = "padding",
) -> tuple[tuple[int, int], ...]:
    """Explicit (lo, hi) padding per spatial axis for a window of `kernel_size` (one int per axis).

    Accepted `padding` values:
      - 'VALID': no padding.
      - 'SAME': XLA's rule, total = max((ceil(m / s) - 1) s + n_eff - m, 0) split with the smaller
        half first, so the output size is ceil(m / s). With stride 1 the total is n_eff - 1 and
        `input_size` is not needed; with a larger stride it is.
      - 'FULL': n_eff - 1 on each side (the "full" mode of scipy.signal.correlate2d).
      - an int p: p on both sides of every spatial axis.
      - a sequence of (lo, hi) pairs, one per spatial axis (for one spatial axis a bare (lo, hi)
        pair is accepted too, as it is unambiguous).
    Here n_eff = (n - 1) d + 1 is the dilated kernel extent. Strings are case-insensitive.
    Returns a tuple of `len(kernel_size)` (lo, hi) pairs of non-negative ints.
    """
    nd = len(kernel_size)
    dil = as_tuple(dilation, nd, "dilation")
    strides = as_tuple(stride, nd, "stride")
    k_eff = [effective_kernel_size(k, d) for k, d in zip(kernel_size, dil, strict=True)]
    if isinstance(padding, str):
        mode = padding.upper()
        if mode == "VALID":
            return ((0, 0),) * nd
        if mode == "FULL":
            return tuple((k - 1, k - 1) for k in k_eff)
        if mode == "SAME":
            if input_size is None:
                if any(s != 1 for s in strides):
                    raise OpError(f"{name}='SAME' with stride {strides} needs the input size")
                input_size = (1,) * nd  # unused: with stride 1 the total is n_eff - 1
            pads = []
            for m, k, s in zip(input_size, k_eff, strides, strict=True):
                total = max((math.ceil(m / s) - 1) * s + k - m, 0)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise OpError(f"{name} must be one of {PADDING_STRINGS}, an int or (lo, hi) pairs, "
                      f"got {padding!r}")
    if isinstance(padding, Sequence):
        if nd == 1 and len(padding) == 2 and not isinstance(padding[0], Sequence):
            return (_pair(padding, name),)
        if len(padding) != nd:
            raise OpError(f"{name} must hold {nd} (lo, hi) pairs (one per spatial axis), "
                          f"got {padding!r}")
        return tuple(_pair(p, name) for p in padding)
    p = _as_int(padding, name)
    if p < 0:
        raise OpError(f"{name} must be non-negative, got {padding!r}")
    return ((p, p),) * nd


def conv_output_size(
    m: int,
    n: int,
    stride: int = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int = 1,
) -> int:
    """Output length of a convolution or pooling window along one axis.

    floor((m + 2p - n - (n - 1)(d - 1)) / s) + 1 for input length m, kernel length n, stride s,
    padding p per side and dilation d (Dumoulin & Visin 2016, relationship 15). `padding` may also
    be an asymmetric (lo, hi) pair, in which case 2p becomes lo + hi, or a padding string
    (see `resolve_padding`). Raises OpError when the dilated kernel exceeds the padded input.
    """
    m, n = _as_int(m, "m"), _as_int(n, "n")
    if m < 1 or n < 1:
        raise OpError(f"m and n must be >= 1, got m={m}, n={n}")
    s = as_tuple(stride, 1, "stride")[0]
    d = as_tuple(dilation, 1, "dilation")[0]
    if isinstance(padding, Sequence) and not isinstance(padding, str):
        lo, hi = _pair(padding, "padding")
    else:
        ((lo, hi),) = resolve_padding(padding, (n,), d, s, (m,))
    k_eff = effective_kernel_size(n, d)
    if m + lo + hi < k_eff:
        raise OpError(f"kernel extent {k_eff} (n={n}, dilation={d}) exceeds the padded input "
                      f"{m}+{lo}+{hi}")
    return (m + lo + hi - k_eff) // s + 1
