"""Which layers a model has and what they output: the layer table (name, kind, output shape,
theoretical receptive field with its jump and start) and their outputs for an input, captured by
intercepting the modules' __call__ (flax's nn.intercept_methods), so no model is edited.

"Layers" are the modules whose output is a spatial map a user looks at: convolutions, poolings,
Inception modules and residual blocks (Szegedy et al. 2015, Fig. 2; He et al. 2016, Fig. 2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.models import introspect

# Module classes shown as layers; blocks by suffix so that every variant (TorchvisionInception,
# Bottleneck, ...) is included. InceptionAux is a side classifier, not a map.
_LEAF_KINDS = ("Conv", "Pool")
_BLOCK_SUFFIXES = ("Inception", "Block", "Bottleneck")


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer: its path ('layer1_0/conv1'), module class, output shape (H, W, C) for one
    example, convolution groups, and theoretical receptive field per spatial axis: size, jump
    (input pixels between neighbouring units) and start (centre of unit 0's field, in input pixel
    coordinates; negative in the padding), by the recurrences of `cnnjax.ops.receptive_field`."""

    name: str
    kind: str
    output_shape: tuple[int, int, int]
    groups: int
    field: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[float, float]

    def centre(self, y: int, x: int) -> tuple[float, float]:
        """Input coordinates of the centre of unit (y, x)'s receptive field."""
        return (self.start[0] + y * self.jump[0], self.start[1] + x * self.jump[1])


def is_visual(kind: str) -> bool:
    return kind in _LEAF_KINDS or (kind.endswith(_BLOCK_SUFFIXES) and not kind.endswith("Aux"))


def layers(model: nn.Module, input_shape: Sequence[int]) -> list[Layer]:
    """The model's visual layers in call order, for one example of shape (H, W, C); abstract
    (jax.make_jaxpr over jax.eval_shape's variables: nothing is allocated or compiled).

    The geometry is `cnnjax.models.introspect`'s walk of the forward jaxpr (the one `summary`
    prints), read for every module, blocks included: where branches meet the widest field is kept.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if hasattr(model, "conv_impl"):
        model = model.clone(conv_impl="xla")  # the same arithmetic, one primitive to read
    variables = introspect.abstract_variables(model, input_shape)
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    groups = {}

    def note_groups(next_fun, args, kwargs, context):
        groups[tuple(context.module.path)] = getattr(context.module, "groups", 1)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(note_groups):
        closed, calls = introspect._record_calls(model, variables, x)
    walk = introspect._Walk()
    walk.geo[closed.jaxpr.invars[-1]] = (None, (1.0, 1.0, 0.0), (1.0, 1.0, 0.0), None)
    walk.read(closed.jaxpr)
    top = type(model).__name__
    out = []
    for path, kind, value in calls:
        shape = tuple(value.shape) if hasattr(value, "shape") else ()
        if not path or not is_visual(kind) or len(shape) != 4:
            continue
        scope = "/".join((top, *path))
        geo = None
        for s, out_shape, g in walk.outputs:
            if introspect._within(s, scope) and out_shape == shape:
                geo = g
        if geo is None or geo == introspect.WHOLE:
            continue
        fields = [f for f in geo if f is not None]
        out.append(Layer(name="/".join(path), kind=kind, output_shape=shape[1:],
                         groups=int(groups.get(path, 1)),
                         field=tuple(round(f[0]) for f in fields),
                         jump=tuple(round(f[1]) for f in fields),
                         start=tuple(float(f[2]) for f in fields)))
    return out


def apply_capturing(model: nn.Module, variables: dict, x: jax.Array, names: Sequence[str],
                    perturb: dict | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """(logits, {name: output}) of the model in evaluation mode for the layers `names`.

    `perturb` {name: array} is added to those layers' outputs before the rest of the network sees
    them: the gradient of anything with respect to a zero perturbation is its gradient with respect
    to the layer's output (what Grad-CAM needs) without cutting the model in two.
    """
    wanted, perturb = set(names) | set(perturb or {}), perturb or {}
    captured = {}

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__":
            name = "/".join(context.module.path)
            if name in perturb:
                out = out + perturb[name]
            if name in wanted:
                captured[name] = out
        return out

    with nn.intercept_methods(interceptor):
        out = model.apply(variables, x, train=False)
    logits = out[0] if isinstance(out, tuple) else out
    return logits, captured


def feature_maps(model: nn.Module, variables: dict, x: jax.Array,
                 names: Sequence[str]) -> dict[str, jax.Array]:
    """{name: (N, h, w, C) output} of each layer in `names` for the batch x (evaluation mode)."""
    return apply_capturing(model, variables, x, names)[1]
