"""The model registry: every named model is registered in its family's file, as timm does.

    @register_model("lenet5", natural_input=((32, 32, 1), 10))
    class LeNet5(base.ConvModel): ...
    register_model("vgg16", VGG, config="D")     # a variant: the family with fields fixed

`build(name, num_classes=..., **knobs)` checks the name and the knobs against the family's fields
(a knob is any field of the family except num_classes and the ones that define the variant, listed
in the class's STRUCTURE) and returns the flax module; the module checks the knob values itself.
`knobs(name)` gives every knob with the variant's default (the config's `model` block is filled
from it) and `knob_choices(name)` exactly the values model `name` accepts for the knobs that take
a choice (the module's `knob_choices`, which its checks use).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn

from cnnjax.models import layers

Shape = tuple[int, int, int]
IMAGENET: tuple[Shape, int] = ((224, 224, 3), 1000)
CIFAR: tuple[Shape, int] = ((32, 32, 3), 10)

_NOT_KNOBS = frozenset({"parent", "name", "num_classes"})


class _Entry(NamedTuple):
    factory: functools.partial
    # What the summary tool feeds the model when no --input is given: (H, W, C) and class count.
    natural_input: tuple[Shape, int]


_MODELS: dict[str, _Entry] = {}  # filled by register_model as cnnjax.models imports each family


def register_model(name: str, family: type[nn.Module] | None = None, /, *,
                   natural_input: tuple[Shape, int] = IMAGENET,
                   **fixed: Any) -> Any:
    """Register model `name`: `family` with the fields in `fixed` set (the fields that define the
    variant, and knob defaults it changes). Without `family`, a class decorator registering the
    class it decorates. Returns the class. A name registered twice is a programming error."""
    if family is None:
        return lambda cls: register_model(name, cls, natural_input=natural_input, **fixed)
    if name in _MODELS:
        raise RuntimeError(f"model {name!r} is registered twice")
    _MODELS[name] = _Entry(functools.partial(family, **fixed), natural_input)
    return family


def list_models() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_MODELS)


def _entry(name: str) -> _Entry:
    if name not in _MODELS:
        raise layers.ModelError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    return _MODELS[name]


def knobs(name: str) -> dict[str, Any]:
    """The knobs model `name` accepts, with the variant's defaults."""
    factory = _entry(name).factory
    cls = factory.func
    structure = set(getattr(cls, "STRUCTURE", ()))
    out = {}
    for field in dataclasses.fields(cls):
        if field.name in _NOT_KNOBS or field.name in structure:
            continue
        default = factory.keywords.get(field.name, field.default)
        out[field.name] = None if default is dataclasses.MISSING else default
    return out


def knob_choices(name: str) -> dict[str, tuple]:
    """The values model `name` accepts for each of its knobs that takes a choice (activation,
    norm, pool, conv_impl, dtype, the family's own and the booleans), the other knobs at their
    defaults."""
    allowed = _entry(name).factory().knob_choices
    return {knob: allowed[knob] for knob in knobs(name) if knob in allowed}


def natural_input(name: str) -> tuple[Shape, int]:
    """The input shape (H, W, C) and class count model `name` was designed for."""
    return _entry(name).natural_input


def build(name: str, *, num_classes: int = 1000, **knob_values: Any) -> nn.Module:
    """The flax module for model `name` with `num_classes` outputs and the given knobs.

    Raises ModelError (one line) for an unknown name, a knob this model does not take (listing
    the valid ones) or a knob value it does not accept.
    """
    factory: Callable[..., nn.Module] = _entry(name).factory
    valid = knobs(name)
    unknown = sorted(set(knob_values) - set(valid))
    if unknown:
        raise layers.ModelError(f"model {name!r} does not take knob(s) {', '.join(unknown)}; valid "
                                f"knobs: {', '.join(sorted(valid))}")
    # Lists (from configs or the command line) become tuples: modules must stay hashable, as
    # jax.jit hashes the apply function bound to them.
    knob_values = {k: tuple(v) if isinstance(v, list) else v for k, v in knob_values.items()}
    return factory(num_classes=num_classes, **knob_values)
