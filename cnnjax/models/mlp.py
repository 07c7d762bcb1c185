"""The dense baseline: flatten the image and apply fully connected layers.

The course notes' point of comparison for convolutions: every hidden unit sees every pixel, so
the first layer alone has H*W*C*hidden weights (32x32x1 -> 1024: 1,049,600 parameters with
biases) and nothing is shared across positions. For 32x32x1 inputs, hidden (1024, 512) and 10
classes: 1,579,530 parameters, biases included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax

from cnnjax.models import layers


class MLP(nn.Module):
    """(N, H, W, C) -> flatten (N, H*W*C) -> Dense(h) + activation per hidden width -> logits.

    Knobs: hidden (the widths), activation, norm ('none', 'batch': BN before each activation),
    dtype, dropout_rate (after each hidden layer).
    """

    # Allowed values of the knobs that take a choice (checked below; `summary` lists them).
    CHOICES: ClassVar[dict[str, tuple]] = {"norm": ("none", "batch")}

    num_classes: int = 10
    hidden: Sequence[int] = (1024, 512)
    activation: str = "relu"
    norm: str = "none"
    dtype: str = "float32"
    dropout_rate: float = 0.0
    bn_stats: str = "global"   # batch norm's statistics: global | device | group:N (layers.BN_STATS)

    def __post_init__(self) -> None:
        layers.check_positive_int("mlp", "num_classes", self.num_classes)
        if not isinstance(self.hidden, Sequence) or not self.hidden:
            raise layers.ModelError(f"mlp: hidden must be a non-empty sequence of widths; got "
                                    f"{self.hidden!r}")
        for width in self.hidden:
            layers.check_positive_int("mlp", "hidden widths", width)
        self.options.validate("mlp", norms=self.CHOICES["norm"])
        layers.check_rate("mlp", "dropout_rate", self.dropout_rate)
        super().__post_init__()

    @property
    def options(self) -> layers.LayerOptions:
        return layers.LayerOptions(self.activation, self.norm, "xla", self.dtype, self.bn_stats)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """x: (N, H, W, C) -> logits (N, num_classes)."""
        opts = self.options
        x = x.reshape(x.shape[0], -1)                                 # (N, H*W*C)
        for i, width in enumerate(self.hidden):                       # (N, width)
            x = layers.Dense(width, use_bias=opts.conv_bias, dtype=opts.dtype,
                             name=f"dense{i + 1}")(x)
            if opts.norm == "batch":
                x = layers.batch_norm(opts, f"bn{i + 1}")(x, use_running_average=not train)
            x = layers.dropout(opts.act(x), self.dropout_rate, train)
        x = layers.Dense(self.num_classes, dtype=opts.dtype, name="output")(x)  # (N, classes)
        return layers.to_logits(x)
