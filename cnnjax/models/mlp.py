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

from cnnjax.models import base, layers
from cnnjax.models.registry import register_model


@register_model("mlp", natural_input=((32, 32, 1), 10))
class MLP(base.Model):
    """(N, H, W, C) -> flatten (N, H*W*C) -> Dense(h) + activation per hidden width -> logits.

    Knobs: hidden (the widths), activation, norm ('none', 'batch': BN before each activation),
    dtype, dropout_rate (after each hidden layer).
    """

    OWNER: ClassVar[str] = "mlp"
    CHOICES: ClassVar[dict[str, tuple]] = {"norm": ("none", "batch")}

    num_classes: int = 10
    hidden: Sequence[int] = (1024, 512)

    def __post_init__(self) -> None:
        self.check_widths("hidden", self.hidden)
        super().__post_init__()

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
