"""The model registry: every named variant is a functools.partial of its family's class.

`build(name, num_classes=..., **knobs)` checks the name and the knobs against the family's fields
(a knob is any field of the family class except the ones that define the variant, listed in the
class's STRUCTURE) and returns the flax module; the module validates the knob values itself.
`knobs(name)` gives every knob with the variant's default (the config's `model` block is filled from
it) and `knob_choices(name)` the allowed values of the knobs that take a choice.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from cnnjax import ops
from cnnjax.models import layers
from cnnjax.models.alexnet import AlexNet
from cnnjax.models.allconv import AllConvNet
from cnnjax.models.googlenet import GoogLeNet, GoogLeNetSmall, GoogLeNetTorchvision
from cnnjax.models.lenet import LeNet5
from cnnjax.models.mlp import MLP
from cnnjax.models.resnet import BasicBlock, Bottleneck, ResNet
from cnnjax.models.smallcnn import SmallCNN
from cnnjax.models.vgg import VGG

_partial = functools.partial

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": _partial(LeNet5),
    "mlp": _partial(MLP),
    "allconv": _partial(AllConvNet),
    "smallcnn": _partial(SmallCNN),
    "alexnet": _partial(AlexNet),
    "alexnet_torchvision": _partial(AlexNet, filters=(64, 192, 384, 256, 256),
                                    dropout_before_fc=True, groups=1, norm="none"),
    "vgg_a": _partial(VGG, config="A"),
    "vgg_a_lrn": _partial(VGG, config="A-LRN"),
    "vgg_b": _partial(VGG, config="B"),
    "vgg_c": _partial(VGG, config="C"),
    "vgg_d": _partial(VGG, config="D"),
    "vgg_e": _partial(VGG, config="E"),
    "vgg11": _partial(VGG, config="A"),
    "vgg13": _partial(VGG, config="B"),
    "vgg16": _partial(VGG, config="D"),
    "vgg19": _partial(VGG, config="E"),
    "googlenet": _partial(GoogLeNet),
    # torchvision's variant (3x3 in the "5x5" branch, batch norm, transform_input), for its weights.
    "googlenet_torchvision": _partial(GoogLeNetTorchvision),
    # Table 1's topology with every width / 8 and a stride-1 stem, for 32x32 inputs (ablations).
    "googlenet_small": _partial(GoogLeNetSmall, width_divisor=8),
    "resnet18": _partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock),
    "resnet34": _partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock),
    "resnet50": _partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck),
    "resnet101": _partial(ResNet, stage_sizes=(3, 4, 23, 3), block_cls=Bottleneck),
    "resnet152": _partial(ResNet, stage_sizes=(3, 8, 36, 3), block_cls=Bottleneck),
    "plain18": _partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock, shortcut="none"),
    "plain34": _partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock, shortcut="none"),
}
# CIFAR-10 ResNets of depth 6n + 2 (Sec. 4.2) and their plain counterparts.
for _depth in (20, 32, 44, 56, 110):
    _cifar = _partial(ResNet, stage_sizes=((_depth - 2) // 6,) * 3, block_cls=BasicBlock,
                      stem="cifar", width=16)
    _MODELS[f"resnet{_depth}"] = _partial(_cifar, shortcut="identity_pad")
    _MODELS[f"plain{_depth}"] = _partial(_cifar, shortcut="none")

_CIFAR = ((32, 32, 3), 10)
# What the summary tool feeds each model when no --input is given: (H, W, C) and class count.
_NATURAL_INPUT: dict[str, tuple[tuple[int, int, int], int]] = {
    "lenet5": ((32, 32, 1), 10),
    "mlp": ((32, 32, 1), 10),
    "smallcnn": ((32, 32, 1), 10),
    "allconv": _CIFAR,
    "googlenet_small": _CIFAR,
    **{f"{kind}{depth}": _CIFAR for kind in ("resnet", "plain") for depth in (20, 32, 44, 56, 110)},
}
_IMAGENET = ((224, 224, 3), 1000)

_NOT_KNOBS = frozenset({"parent", "name", "num_classes"})


def list_models() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_MODELS)


def _factory(name: str) -> functools.partial:
    if name not in _MODELS:
        raise layers.ModelError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    return _MODELS[name]


def knobs(name: str) -> dict[str, Any]:
    """The knobs model `name` accepts, with the variant's defaults."""
    factory = _factory(name)
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
    """The allowed values of model `name`'s knobs where the module declares them (its CHOICES,
    the activations, conv implementations and dtypes every layer understands, and booleans)."""
    cls = _factory(name).func
    declared = {"activation": tuple(layers.ACTIVATIONS), "conv_impl": tuple(ops.IMPLS),
                "dtype": tuple(layers.DTYPES), **getattr(cls, "CHOICES", {})}
    out = {}
    for knob, default in knobs(name).items():
        if knob in declared:
            out[knob] = tuple(declared[knob])
        elif isinstance(default, bool):
            out[knob] = (False, True)
    return out


def natural_input(name: str) -> tuple[tuple[int, int, int], int]:
    """The input shape (H, W, C) and class count model `name` was designed for."""
    _factory(name)
    return _NATURAL_INPUT.get(name, _IMAGENET)


def build(name: str, *, num_classes: int = 1000, **knob_values: Any) -> nn.Module:
    """The flax module for model `name` with `num_classes` outputs and the given knobs.

    Raises ModelError (one line) for an unknown name, a knob this model does not take (listing
    the valid ones) or a knob value it does not accept.
    """
    factory = _factory(name)
    valid = knobs(name)
    unknown = sorted(set(knob_values) - set(valid))
    if unknown:
        raise layers.ModelError(f"model {name!r} does not take knob(s) {', '.join(unknown)}; valid "
                                f"knobs: {', '.join(sorted(valid))}")
    # Lists (from configs or the command line) become tuples: modules must stay hashable, as
    # jax.jit hashes the apply function bound to them.
    knob_values = {k: tuple(v) if isinstance(v, list) else v for k, v in knob_values.items()}
    return factory(num_classes=num_classes, **knob_values)
