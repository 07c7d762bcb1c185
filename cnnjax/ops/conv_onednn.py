"""Convolution on oneDNN through the XLA FFI: `impl='onednn'` of cnnjax.ops' conv functions.

The three maps of y = conv(x, w) (forward, gradient with respect to the input, gradient with
respect to the kernel) are oneDNN primitives in `onednn/conv.cc`, called as typed XLA custom
calls (`jax.ffi.ffi_call`) on NHWC / HWIO arrays without layout changes. `jax.custom_vjp` ties
them together, so the op composes with jax.grad and jax.jit (reverse mode only, as the explicit
implementation). Under `jax.vmap` the calls run once per batch element ("sequential").

Where it runs: only on the CPU (`lax.platform_dependent` lowers XLA's convolution on every other
platform), only for float32 and bfloat16 (other dtypes use XLA's convolution), and only when
the extension loaded (`cnnjax.ops.onednn.load()`; otherwise XLA's convolution, after one
logged line). With a batch sharded over a mesh, each device convolves its own shard
(`jax.experimental.custom_partitioning`: the kernel gradient is summed across the shards).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnjax.ops import onednn
from cnnjax.ops.conv_explicit import output_size

Ints = tuple[int, ...]
Pads = tuple[tuple[int, int], ...]

DTYPES = (jnp.float32, jnp.bfloat16)
# Let oneDNN choose its blocked kernel layout and reorder the (small) kernel on every call,
# instead of reading HWIO directly: measured faster in benchmarks/README.md ("oneDNN").
WEIGHTS_ANY = 1


def supported(dtype) -> bool:
    """Whether the oneDNN kernels take operands of this dtype (float32 or bfloat16) and the
    extension is loaded."""
    return jnp.dtype(dtype) in DTYPES and onednn.load()


def _geom(stride: Ints, padding: Pads, dilation: Ints, groups: int) -> np.ndarray:
    (pt, pb), (pl, pr) = padding
    return np.array([*stride, *dilation, pt, pb, pl, pr, groups, WEIGHTS_ANY], np.int64)


def _call(target: str, shape: Ints, dtype, a: jax.Array, b: jax.Array, geom: np.ndarray):
    return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(shape, dtype),
                            vmap_method="sequential")(a, b, geom=geom)


def _forward(x, w, stride, padding, dilation, groups):
    spatial = tuple(m + lo + hi for m, (lo, hi) in zip(x.shape[1:3], padding, strict=True))
    out = output_size(spatial, w.shape[:2], stride, dilation)
    return _call("cnnjax_onednn_conv_fwd", (x.shape[0], *out, w.shape[-1]), x.dtype, x, w,
                 _geom(stride, padding, dilation, groups))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv_cpu(x, w, stride, padding, dilation, groups):
    return _forward(x, w, stride, padding, dilation, groups)


def _conv_cpu_fwd(x, w, stride, padding, dilation, groups):
    return _forward(x, w, stride, padding, dilation, groups), (x, w)


def _conv_cpu_bwd(stride, padding, dilation, groups, res, dy):
    x, w = res
    geom = _geom(stride, padding, dilation, groups)
    dx = _call("cnnjax_onednn_conv_bwd_data", x.shape, x.dtype, dy, w, geom)
    dw = _call("cnnjax_onednn_conv_bwd_weights", w.shape, w.dtype, x, dy, geom)
    return dx, dw


_conv_cpu.defvjp(_conv_cpu_fwd, _conv_cpu_bwd)


def conv_onednn(x: jax.Array, w: jax.Array, stride: Ints, padding: Pads, dilation: Ints,
                groups: int, precision=None) -> jax.Array:
    """Grouped 2-D cross-correlation of x (N, H, W, Cin) with w (kh, kw, Cin/g, Cout), zero
    padding `padding` ((lo, hi) per axis), on oneDNN on the CPU and on XLA elsewhere.

    Same values as lax.conv_general_dilated with NHWC/HWIO dimension numbers, to float32
    rounding. Callers check `supported(x.dtype)` first.
    """

    def xla(x, w):
        return lax.conv_general_dilated(x, w, stride, padding, rhs_dilation=dilation,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=groups, precision=precision)

    def cpu(x, w):
        return _conv_cpu(x, w, stride, padding, dilation, groups)

    return lax.platform_dependent(x, w, cpu=cpu, default=xla)
