"""Convolution on oneDNN through the XLA FFI: `impl='onednn'` of cnnjax.ops' conv functions.

The three maps of y = conv(x, w) (forward, gradient with respect to the input, gradient with
respect to the kernel) are oneDNN primitives in `onednn/conv.cc`, called as typed XLA custom
calls (`jax.ffi.ffi_call`) on NHWC / HWIO arrays without layout changes. `jax.custom_vjp` ties
them together, so the op composes with jax.grad and jax.jit (reverse mode only, as the explicit
implementation). Under `jax.vmap` the vmapped axis is folded into the batch (`custom_vmap`), or
the calls run once per element where the kernel is vmapped.

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
from jax.custom_batching import custom_vmap
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cnnjax.ops import onednn
from cnnjax.ops.conv_explicit import output_size

Ints = tuple[int, ...]
Pads = tuple[tuple[int, int], ...]

# Let oneDNN choose its blocked kernel layout and reorder the (small) kernel on every call,
# instead of reading HWIO directly: measured faster in benchmarks/README.md ("oneDNN").
WEIGHTS_ANY = 1


def supported(dtype) -> bool:
    """Whether the oneDNN kernels take operands of this dtype (float32 or bfloat16) and the
    extension is loaded."""
    dtype = jnp.dtype(dtype)
    if dtype == jnp.bfloat16:
        return onednn.supports_bfloat16()
    return dtype == jnp.float32 and onednn.load()


def _geom(stride: Ints, padding: Pads, dilation: Ints, groups: int) -> Ints:
    (pt, pb), (pl, pr) = padding
    return (*stride, *dilation, pt, pb, pl, pr, groups, WEIGHTS_ANY)


# Einsum-like sharding rules (Shardy) of the three maps: the batch n may be sharded, every other
# dimension is replicated; n is summed over by the kernel gradient.
_RULES = {
    "cnnjax_onednn_conv_fwd": "n h w c, kh kw ci co -> n ho wo o",
    "cnnjax_onednn_conv_bwd_data": "n ho wo o, kh kw ci co -> n h w c",
    "cnnjax_onednn_conv_bwd_weights": "n h w c, n ho wo o -> kh kw ci co",
}


def _result_shape(target: str, a, b, geom: Ints, fixed: Ints) -> Ints:
    """Output shape of one map: forward from x and w; input gradient (N, *fixed) from dy;
    kernel gradient `fixed` (the kernel's shape)."""
    if target == "cnnjax_onednn_conv_fwd":
        sh, sw, dh, dw, pt, pb, pl, pr = geom[:8]
        out = output_size((a.shape[1] + pt + pb, a.shape[2] + pl + pr), b.shape[:2], (sh, sw),
                          (dh, dw))
        return (a.shape[0], *out, b.shape[-1])
    if target == "cnnjax_onednn_conv_bwd_data":
        return (a.shape[0], *fixed)
    return fixed


def _batch_axes(sharding) -> str | tuple | None:
    spec = getattr(sharding, "spec", ())
    return spec[0] if len(spec) else None


@functools.cache
def _op(target: str, geom: Ints, fixed: Ints):
    """The FFI call `target`, wrapped so that it (1) runs per device on its shard of a batch
    sharded over a mesh and (2) batches under jax.vmap by folding the vmapped axis into the
    batch (sequentially where the kernel or both activations are vmapped)."""
    reduces_batch = target == "cnnjax_onednn_conv_bwd_weights"

    def call(a, b):
        shape = _result_shape(target, a, b, geom, fixed)
        return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(shape, a.dtype))(
            a, b, geom=np.array(geom, np.int64))

    def shardings(mesh, arg_shapes):
        axes = _batch_axes(arg_shapes[0].sharding)
        batch, whole = NamedSharding(mesh, P(axes)), NamedSharding(mesh, P())
        args = (batch, batch) if reduces_batch else (batch, whole)
        return axes, args, whole if reduces_batch else batch

    def infer(mesh, arg_shapes, result_shape):
        return shardings(mesh, arg_shapes)[2]

    def partition(mesh, arg_shapes, result_shape):
        axes, args, result = shardings(mesh, arg_shapes)

        def per_shard(a, b):
            out = call(a, b)
            return lax.psum(out, axes) if reduces_batch and axes is not None else out

        return mesh, per_shard, result, args

    partitioned = custom_partitioning(call)
    partitioned.def_partition(
        partition, infer_sharding_from_operands=infer, sharding_rule=_RULES[target],
        reduction_factors=("n",) if reduces_batch else (),
        need_replication_factors=tuple(f for f in _RULES[target].replace(",", " ").split()
                                       if f not in ("n", "->")))
    batched = custom_vmap(lambda a, b: partitioned(a, b))

    @batched.def_vmap
    def _vmap_rule(axis_size, in_batched, a, b):
        if in_batched == [True, False] and not reduces_batch:
            out = batched(a.reshape(-1, *a.shape[2:]), b)
            return out.reshape(axis_size, -1, *out.shape[1:]), True
        a, b = (v if bat else jnp.broadcast_to(v, (axis_size, *v.shape))
                for v, bat in zip((a, b), in_batched, strict=True))
        return lax.map(lambda ab: batched(*ab), (a, b)), True

    return batched


def _forward(x, w, stride, padding, dilation, groups):
    return _op("cnnjax_onednn_conv_fwd", _geom(stride, padding, dilation, groups), ())(x, w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _conv_cpu(x, w, stride, padding, dilation, groups):
    return _forward(x, w, stride, padding, dilation, groups)


def _conv_cpu_fwd(x, w, stride, padding, dilation, groups):
    return _forward(x, w, stride, padding, dilation, groups), (x, w)


def _conv_cpu_bwd(stride, padding, dilation, groups, res, dy):
    x, w = res
    geom = _geom(stride, padding, dilation, groups)
    dx = _op("cnnjax_onednn_conv_bwd_data", geom, x.shape[1:])(dy, w)
    dw = _op("cnnjax_onednn_conv_bwd_weights", geom, w.shape)(x, dy)
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
