"""Pooling over the spatial axes of NHWC arrays with lax.reduce_window."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnjax.ops.errors import OpError
from cnnjax.ops.padding import Padding, as_tuple, resolve_padding
from cnnjax.ops.precision import widened


def _window_geometry(x: jax.Array, window: int | Sequence[int], stride: int | Sequence[int] | None,
                     padding: Padding, op: str):
    """Validate a pooling call; return reduce_window's dims, strides and padding (NHWC)."""
    if x.ndim != 4:
        raise OpError(f"{op}: x must have rank 4 (N, H, W, C), got shape {x.shape}")
    try:
        win = as_tuple(window, 2, "window")
        strides = win if stride is None else as_tuple(stride, 2, "stride")
        pads = resolve_padding(padding, win, 1, strides, x.shape[1:3])
    except ValueError as e:
        raise OpError(f"{op}: {e}") from None
    for axis, (m, n, (lo, hi)) in enumerate(zip(x.shape[1:3], win, pads, strict=True)):
        if lo >= n or hi >= n:
            # A window lying wholly in the padding would have no real cell to reduce over.
            raise OpError(f"{op}: padding {(lo, hi)} must be smaller than the window {n} on "
                          f"spatial axis {axis} (x {x.shape})")
        if m + lo + hi < n:
            raise OpError(f"{op}: window {n} exceeds the padded input {m}+{lo}+{hi} on spatial "
                          f"axis {axis} (x {x.shape}, window {win})")
    return (1, *win, 1), (1, *strides, 1), ((0, 0), *pads, (0, 0))


def max_pool(x: jax.Array, window: int | Sequence[int], stride: int | Sequence[int] | None = None,
             padding: Padding = "VALID") -> jax.Array:
    """Max over each window: (N, H, W, C) -> (N, Ho, Wo, C), Ho = conv_output_size(H, wh, sh, p).

    `window` and `stride` are ints or (h, w) pairs; stride defaults to the window
    (non-overlapping). Padded cells hold -inf, so they never win. AlexNet (Sec. 3.4) uses
    overlapping pooling, window 3 and stride 2.
    """
    x = jnp.asarray(x)
    dims, strides, pads = _window_geometry(x, window, stride, padding, "max_pool")
    x, dtype = widened(x)  # exact: the max of widened values is a value of x
    # A concrete (numpy) init value lets JAX recognise the max monoid, which it needs to differentiate.
    init = np.array(-np.inf if jnp.issubdtype(x.dtype, jnp.floating)
                    else jnp.iinfo(x.dtype).min, x.dtype)
    return lax.reduce_window(x, init, lax.max, dims, strides, pads).astype(dtype)


def avg_pool(x: jax.Array, window: int | Sequence[int], stride: int | Sequence[int] | None = None,
             padding: Padding = "VALID", count_include_pad: bool = True) -> jax.Array:
    """Mean over each window: (N, H, W, C) -> (N, Ho, Wo, C).

    With `count_include_pad` the sum is divided by the full window size (padded zeros count);
    without it, by the number of real (unpadded) cells in each window.
    """
    x = jnp.asarray(x)
    dims, strides, pads = _window_geometry(x, window, stride, padding, "avg_pool")
    x, dtype = widened(x)  # the mean is rounded once, to x's dtype
    zero = np.zeros((), x.dtype)  # concrete, so JAX sees a sum it can differentiate under jit
    total = lax.reduce_window(x, zero, lax.add, dims, strides, pads)
    if count_include_pad:
        return (total / jnp.asarray(dims[1] * dims[2], x.dtype)).astype(dtype)
    ones = jnp.ones((1, *x.shape[1:3], 1), x.dtype)
    count = lax.reduce_window(ones, zero, lax.add, dims, strides, pads)
    return (total / count).astype(dtype)



def global_avg_pool(x: jax.Array) -> jax.Array:
    """Mean over the spatial axes: (N, H, W, C) -> (N, C) (Lin et al. 2014, Network in Network,
    Sec. 3.2; the head of GoogLeNet and ResNet)."""
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise OpError(f"global_avg_pool: x must have rank 4 (N, H, W, C), got shape {x.shape}")
    return jnp.mean(x, axis=(1, 2))
