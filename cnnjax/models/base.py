"""The knobs every model family shares, declared once with their defaults and allowed values.

A family subclasses ConvModel (or Model, for the MLP: no convolution, no pooling), redeclares
only the knob defaults it changes (`activation: str = "tanh"`), adds its own fields, and narrows
the allowed values in CHOICES (for the family) or `restrictions` (for a variant: what its
structure fields rule out). `knob_choices` is then both what `__post_init__` checks and what
`models.knob_choices(name)` reports, so the two cannot disagree.

Errors are one-line ModelErrors naming OWNER (the family), the knob, the allowed values and the
value given.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn

from cnnjax import ops
from cnnjax.models import layers


class Model(nn.Module):
    """A classifier's shared knobs: num_classes, activation, norm, bn_stats (batch norm's
    statistics: global | device | group:N, layers.BN_STATS), dtype (the compute dtype; parameters
    stay float32) and dropout_rate; `options` hands them to the blocks."""

    OWNER: ClassVar[str] = "model"
    # Allowed values of the knobs that take a choice; a subclass's CHOICES overrides entries.
    CHOICES: ClassVar[dict[str, tuple]] = {"activation": tuple(layers.ACTIVATIONS),
                                           "norm": layers.NORMS, "dtype": tuple(layers.DTYPES)}
    # Fields that define a registered variant (fixed by the registry, so not knobs).
    STRUCTURE: ClassVar[tuple[str, ...]] = ()

    num_classes: int = 1000
    activation: str = "relu"
    norm: str = "none"
    bn_stats: str = "global"
    dtype: str = "float32"
    dropout_rate: float = 0.0

    @property
    def restrictions(self) -> dict[str, tuple[tuple, str]]:
        """knob -> (the values this variant accepts, why): what the structure rules out."""
        return {}

    @property
    def knob_choices(self) -> dict[str, tuple]:
        """The allowed values of every field that takes a choice (its CHOICES over the class
        hierarchy, the booleans, then `restrictions`), structure fields included."""
        declared: dict[str, tuple] = {}
        for cls in reversed(type(self).__mro__):
            declared.update(vars(cls).get("CHOICES", {}))
        out = {}
        for field in dataclasses.fields(self):
            if field.name in declared:
                out[field.name] = tuple(declared[field.name])
            elif isinstance(field.default, bool):
                out[field.name] = (False, True)
        out.update({knob: values for knob, (values, _) in self.restrictions.items()})
        return out

    def __post_init__(self) -> None:
        owner = self.OWNER
        layers.check_positive_int(owner, "num_classes", self.num_classes)
        why = {knob: reason for knob, (_, reason) in self.restrictions.items()}
        for knob, values in self.knob_choices.items():
            layers.check_choice(owner, knob, getattr(self, knob), values, why.get(knob, ""))
        layers.check_bn_stats(owner, self.bn_stats)
        for field in dataclasses.fields(self):
            if field.name.endswith("dropout_rate"):  # every probability knob is named so
                layers.check_rate(owner, field.name, getattr(self, field.name))
        super().__post_init__()

    @property
    def options(self) -> layers.LayerOptions:
        return layers.LayerOptions(self.activation, self.norm,
                                   getattr(self, "conv_impl", ops.DEFAULT_IMPL), self.dtype,
                                   self.bn_stats)

    def check_widths(self, knob: str, widths: Any, *, multiple: int = 1,
                     what: str = "a non-empty sequence of widths") -> None:
        """One-line ModelError ('`knob` must be `what`') unless `widths` is a non-empty sequence of
        positive ints whose length is a multiple of `multiple` (hidden widths, conv widths)."""
        if (isinstance(widths, str) or not isinstance(widths, tuple | list) or not widths
                or len(widths) % multiple):
            raise layers.ModelError(f"{self.OWNER}: {knob} must be {what}; got {widths!r}")
        for width in widths:
            layers.check_positive_int(self.OWNER, f"{knob} entries", width)


class ConvModel(Model):
    """A convolutional classifier: Model's knobs plus pool (the downsampling layers: max or average
    pooling, or a learned strided convolution) and conv_impl (ops.IMPLS; ops.DEFAULT_IMPL)."""

    CHOICES: ClassVar[dict[str, tuple]] = {"pool": layers.POOLS, "conv_impl": ops.IMPLS}

    pool: str = "max"
    conv_impl: str = ops.DEFAULT_IMPL
