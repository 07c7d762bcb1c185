"""Layer-by-layer accounting of a model without allocating it: parameters, multiply-adds,
output shapes and receptive fields.

Everything is abstract: `jax.eval_shape` gives the variables' shapes and `jax.make_jaxpr` the
forward computation (eval mode, batch 1) as a jaxpr, which is then read, not run:
- multiply-adds: every conv_general_dilated contributes prod(output shape) x (kernel taps x
  input channels per group) and every dot_general prod(output shape) x (contracted size), the
  convention of the papers' "FLOPs" (VGG-19 19.6 G, ResNet-50 3.8 G): elementwise work (bias,
  batch norm, activations, pooling) is not counted;
- receptive fields: each array's spatial axes carry (size, jump, start) through the
  computation with the recurrences of `cnnjax.ops.receptive_field`; where paths meet (residual
  additions, Inception concatenations) the larger field is kept; after a reduction over a
  spatial axis (flatten, global pooling) a unit sees the whole input.
Rows are the model's leaf modules (Conv, Dense, BatchNorm, Pool, LRN, ...) in call order; their
scope in the jaxpr's name stack (flax runs every module method under jax.named_scope) assigns the
equations to them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from cnnjax.ops import LayerGeometry, receptive_field
from cnnjax.ops.conv import as_xla as conv_as_xla

# A spatial axis's receptive field: (size, jump, start) in input pixels (see ops.ReceptiveField).
Field = tuple[float, float, float]
# Per-array geometry: one Field or None (non-spatial axis) per axis, or WHOLE.
WHOLE = "whole"
_SKIP_ROWS = ("Dropout",)
_CALLS = ("jit", "pjit", "custom_jvp_call", "custom_vjp_call", "custom_vjp_call_jaxpr",
          "closed_call", "core_call", "remat", "checkpoint")


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One leaf module: its path, class, output shape (no batch axis), parameter count,
    multiply-adds for one example, and receptive field size and jump per spatial axis (None
    where the output sees the whole input)."""

    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    field: tuple[int, int] | None
    jump: tuple[int, int] | None


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    """Rows plus totals for one example of shape input_shape (H, W, C)."""

    rows: list[LayerRow]
    input_shape: tuple[int, ...]
    output_shapes: list[tuple[int, ...]]
    params: int
    state: int  # non-trainable variables (batch-norm running statistics)
    macs: int


def abstract_variables(model: nn.Module, input_shape: Sequence[int]) -> dict:
    """The model's variables as ShapeDtypeStructs for one (1, *input_shape) batch."""
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    return jax.eval_shape(lambda x: model.init({"params": jax.random.key(0)}, x), x)


def count_params(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Number of entries in the 'params' collection (nothing is allocated)."""
    variables = abstract_variables(model, input_shape)
    return sum(int(a.size) for a in jax.tree.leaves(variables.get("params", {})))


def dense_layer_weights(input_shape: Sequence[int], units: int = 1024) -> int:
    """Weights of one fully connected layer from the flattened input to `units` (no biases):
    150,528 x 1024 = 154,140,672 for 224x224x3."""
    return math.prod(input_shape) * units


# ----------------------------------------------------------------------------- geometry ---

def _step(field: Field, kernel: int, stride: int, dilation: int, pad_lo: int) -> Field:
    """One window along one axis, by `ops.receptive_field`'s recurrence, from `field`."""
    size, jump, start = field
    step = receptive_field([LayerGeometry(kernel, stride, dilation, 0)])[0]
    # A lone layer starts from (1, 1, 0): rescale its growth by the incoming jump.
    return (size + (step.size - 1) * jump, jump * step.jump,
            start + (step.start - pad_lo) * jump)


def _merge(geos: Sequence[Any], rank: int) -> Any:
    """Geometry of an elementwise combination: per axis the widest field among the inputs."""
    geos = [g for g in geos if g is not None]
    if any(g == WHOLE for g in geos):
        return WHOLE
    geos = [g for g in geos if len(g) == rank]
    if not geos:
        return None
    out = []
    for axis in range(rank):
        fields = [g[axis] for g in geos if g[axis] is not None]
        out.append(max(fields, key=lambda f: f[0]) if fields else None)
    return tuple(out) if any(f is not None for f in out) else None


def _spatial(geo: Any) -> bool:
    return geo == WHOLE or (geo is not None and any(f is not None for f in geo))


def _rank(var: Any) -> int:
    return len(var.aval.shape)


def _conv_geometry(eqn, geo):
    lhs_spec, rhs_spec, out_spec = eqn.params["dimension_numbers"]
    rhs_shape = eqn.invars[1].aval.shape
    out = [None] * _rank(eqn.outvars[0])
    for i, (lo, _) in enumerate(eqn.params["padding"]):
        field = geo[lhs_spec[2 + i]]
        if field is None:
            continue
        lhs_dil = eqn.params["lhs_dilation"][i]
        size, jump, start = field
        field = (size, jump / lhs_dil, start)
        out[out_spec[2 + i]] = _step(field, rhs_shape[rhs_spec[2 + i]],
                                     eqn.params["window_strides"][i],
                                     eqn.params["rhs_dilation"][i], lo)
    return tuple(out)


def _window_geometry(eqn, geo):
    out = []
    params = eqn.params
    for axis, field in enumerate(geo):
        if field is not None:
            field = _step(field, params["window_dimensions"][axis], params["window_strides"][axis],
                          params["window_dilation"][axis], params["padding"][axis][0])
        out.append(field)
    return tuple(out)


def _dot_geometry(eqn, geos):
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = geos[0], geos[1]
    for g, contracted in ((lhs, lc), (rhs, rc)):
        if g == WHOLE or (g is not None and any(g[a] is not None for a in contracted)):
            return WHOLE

    def axes(g, var, contracted, batch):
        kept = [a for a in range(_rank(var)) if a not in contracted and a not in batch]
        return [None if g is None else g[a] for a in kept]

    batch = [None if lhs is None else lhs[a] for a in lb]
    out = (batch + axes(lhs, eqn.invars[0], lc, lb) + axes(rhs, eqn.invars[1], rc, rb))
    return tuple(out) if any(f is not None for f in out) else None


def _reshape_geometry(eqn, geo):
    old, new = eqn.invars[0].aval.shape, eqn.outvars[0].aval.shape
    last = max(a for a, f in enumerate(geo) if f is not None)
    if tuple(new[:last + 1]) == tuple(old[:last + 1]):
        return tuple(list(geo[:last + 1]) + [None] * (len(new) - last - 1))
    return WHOLE


def _geometry(eqn, geos):
    """Geometry of eqn's outputs (one value for all of them) from its inputs'."""
    name = eqn.primitive.name
    rank = _rank(eqn.outvars[0]) if eqn.outvars else 0
    first = geos[0] if geos else None
    if not any(_spatial(g) for g in geos):
        return None
    if name == "dot_general":
        return _dot_geometry(eqn, geos)
    if first == WHOLE:
        return WHOLE
    if name == "conv_general_dilated":
        return _conv_geometry(eqn, first) if first is not None else None
    if name.startswith("reduce_window"):
        return _window_geometry(eqn, first) if first is not None else None
    if name.startswith(("reduce_", "argm")) and "axes" in eqn.params:
        if first is None:
            return None
        if any(first[a] is not None for a in eqn.params["axes"]):
            return WHOLE
        return tuple(f for a, f in enumerate(first) if a not in eqn.params["axes"])
    if name == "pad" and first is not None:
        return tuple(None if f is None else (f[0], f[1], f[2] - lo * f[1])
                     for f, (lo, _, _) in zip(first, eqn.params["padding_config"], strict=True))
    if name == "slice" and first is not None:
        strides = eqn.params["strides"] or (1,) * len(first)
        return tuple(None if f is None else (f[0], f[1] * s, f[2] + i * f[1])
                     for f, i, s in zip(first, eqn.params["start_indices"], strides, strict=True))
    if name == "broadcast_in_dim" and first is not None:
        out = [None] * rank
        for src, dst in enumerate(eqn.params["broadcast_dimensions"]):
            out[dst] = first[src]
        return tuple(out)
    if name == "transpose" and first is not None:
        return tuple(first[a] for a in eqn.params["permutation"])
    if name == "squeeze" and first is not None:
        if any(first[a] is not None for a in eqn.params["dimensions"]):
            return WHOLE
        return tuple(f for a, f in enumerate(first) if a not in eqn.params["dimensions"])
    if name == "reshape" and first is not None and _spatial(first):
        return _reshape_geometry(eqn, first)
    # Elementwise and everything else of unchanged rank: the widest incoming field per axis.
    merged = _merge(geos, rank)
    if merged is None and any(_spatial(g) for g in geos):
        return WHOLE
    return merged


def _sub_jaxpr(eqn):
    """The jaxpr a call-like primitive runs on exactly its inputs, else None."""
    if eqn.primitive.name not in _CALLS:
        return None
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        sub = eqn.params.get(key)
        if sub is None:
            continue
        jaxpr = getattr(sub, "jaxpr", sub)
        if len(jaxpr.invars) == len(eqn.invars) and len(jaxpr.outvars) == len(eqn.outvars):
            return jaxpr
    return None


def _scope(name_stack: str) -> str:
    """A name stack without flax's method scopes ('layer1_0.conv_bn') and jax's transforms."""
    parts = [p for p in name_stack.split("/") if p and "." not in p and "(" not in p]
    return "/".join(parts)


@dataclasses.dataclass
class _Walk:
    """Per-scope results of reading a jaxpr: multiply-adds and the last outputs' geometry."""

    geo: dict = dataclasses.field(default_factory=dict)
    macs: list = dataclasses.field(default_factory=list)      # (scope, macs)
    outputs: list = dataclasses.field(default_factory=list)   # (scope, shape, geometry)

    def read(self, jaxpr, prefix: str = "") -> None:
        for eqn in jaxpr.eqns:
            scope = _scope(f"{prefix}/{eqn.source_info.name_stack}")
            geos = [None if isinstance(v, jax.extend.core.Literal) else self.geo.get(v)
                    for v in eqn.invars]
            sub = _sub_jaxpr(eqn)
            if sub is not None:
                for inner, g in zip(sub.invars, geos, strict=True):
                    self.geo[inner] = g
                self.read(sub, scope)
                for outer, inner in zip(eqn.outvars, sub.outvars, strict=True):
                    self.geo[outer] = (None if isinstance(inner, jax.extend.core.Literal)
                                       else self.geo.get(inner))
            else:
                geo = _geometry(eqn, geos)
                for v in eqn.outvars:
                    self.geo[v] = geo
                self.macs.append((scope, _macs(eqn)))
            for v in eqn.outvars:
                self.outputs.append((scope, tuple(v.aval.shape), self.geo[v]))


def _macs(eqn) -> int:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
        rhs = eqn.invars[1].aval.shape
        out_features = rhs[eqn.params["dimension_numbers"][1][0]]
        return math.prod(eqn.outvars[0].aval.shape) * math.prod(rhs) // out_features
    if name == "dot_general":
        (lc, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        return math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[a] for a in lc)
    return 0


def _within(scope: str, module_scope: str) -> bool:
    return scope == module_scope or scope.startswith(module_scope + "/")


# ------------------------------------------------------------------------------ summary ---

def _record_calls(model: nn.Module, variables: dict, x: jax.ShapeDtypeStruct):
    """The forward jaxpr (eval mode) and every module __call__ as (path, class, output). Every
    convolution in it is XLA's primitive, whatever its impl (ops.conv.as_xla): the one whose
    geometry the walk reads."""
    calls = []

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__":
            calls.append((tuple(context.module.path), type(context.module).__name__, out))
        return out

    def forward(variables, x):
        with nn.intercept_methods(interceptor), nn.override_named_call(True):
            return model.apply(variables, x, train=False)

    with conv_as_xla():
        closed = jax.make_jaxpr(forward)(variables, x)
    return closed, calls


def _module_params(params: dict, path: tuple[str, ...]) -> int:
    node = params
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return 0
        node = node[part]
    return sum(int(a.size) for a in jax.tree.leaves(node))


def _as_pair(geo: Any, which: int) -> tuple[int, int] | None:
    if geo is None or geo == WHOLE:
        return None
    fields = [f for f in geo if f is not None]
    if len(fields) != 2:
        return None
    return tuple(round(f[which]) for f in fields)


def summarize(model: nn.Module, input_shape: Sequence[int]) -> ModelSummary:
    """Per-layer rows and totals for one example of shape input_shape (H, W, C).

    Convolutions are read as 'xla' whatever their impl (the same arithmetic, one primitive). Runs in
    seconds for the largest models: nothing is allocated or compiled.
    """
    input_shape = tuple(int(d) for d in input_shape)
    variables = abstract_variables(model, input_shape)
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    closed, calls = _record_calls(model, variables, x)

    walk = _Walk()
    walk.geo[closed.jaxpr.invars[-1]] = (None, (1.0, 1.0, 0.0), (1.0, 1.0, 0.0), None)
    walk.read(closed.jaxpr)

    top = type(model).__name__
    paths = [path for path, _, _ in calls]
    leaves = [c for c in calls
              if not any(len(p) > len(c[0]) and p[:len(c[0])] == c[0] for p in paths)]
    params = variables.get("params", {})
    rows = []
    for path, kind, out in leaves:
        if kind in _SKIP_ROWS or not path:
            continue
        scope = "/".join((top, *path))
        shape = tuple(out.shape)
        geo = None
        for s, out_shape, g in walk.outputs:
            if _within(s, scope) and out_shape == shape:
                geo = g
        if geo is None or geo == WHOLE:
            field = jump = None
        else:
            field, jump = _as_pair(geo, 0), _as_pair(geo, 1)
        rows.append(LayerRow(
            name="/".join(path), kind=kind, output_shape=shape[1:],
            params=_module_params(params, path),
            macs=sum(m for s, m in walk.macs if _within(s, scope)),
            field=field, jump=jump))

    flat = traverse_util.flatten_dict(variables)
    n_params = sum(int(a.size) for k, a in flat.items() if k[0] == "params")
    outputs = [tuple(o.aval.shape[1:]) for o in closed.jaxpr.outvars]
    return ModelSummary(rows=rows, input_shape=input_shape, output_shapes=outputs,
                        params=n_params,
                        state=sum(int(a.size) for a in jax.tree.leaves(variables)) - n_params,
                        macs=sum(m for _, m in walk.macs))
