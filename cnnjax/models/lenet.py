"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document
recognition", Sec. II.B and Fig. 2), in the form of the course notes' worked example.

Count convention: 61,706 parameters (weights and biases) for 32x32x1 inputs and 10 classes, with
full C3 connectivity (every C3 map sees all six S2 maps, not the paper's Table I), parameter-free
subsampling (the paper's S2/S4 have a trainable coefficient and bias per map) and a linear output
layer in place of the paper's Euclidean RBF units:
    C1 (5*5*1+1)*6 = 156, C3 (5*5*6+1)*16 = 2,416, C5 (5*5*16+1)*120 = 48,120,
    F6 (120+1)*84 = 10,164, output (84+1)*10 = 850.
With norm='batch' the convolutions drop their biases and each gains a BN scale and shift.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax

from cnnjax.models import base, layers
from cnnjax.models.registry import register_model


@register_model("lenet5", natural_input=((32, 32, 1), 10))
class LeNet5(base.ConvModel):
    """C1-S2-C3-S4-C5-F6-output; tanh and average-pool subsampling by default.

    Knobs: activation, norm ('none', 'batch', 'lrn': LRN after each pooling), pool, conv_impl,
    dtype, dropout_rate (before F6 and before the output layer; 0 by default).
    """

    OWNER: ClassVar[str] = "lenet5"

    num_classes: int = 10
    activation: str = "tanh"
    pool: str = "avg"

    def _conv(self, x: jax.Array, features: int, name: str, train: bool) -> jax.Array:
        return layers.conv_norm_act(x, self.options, features, 5, padding="VALID",
                                    kernel_init=layers.lecun98_uniform, name=name, train=train)

    def _subsample(self, x: jax.Array, name: str) -> jax.Array:
        x = layers.Pool(self.pool, 2, 2, options=self.options,
                        kernel_init=layers.lecun98_uniform, name=name)(x)
        if self.norm == "lrn":
            x = layers.LRN(name=f"{name}_lrn")(x)
        return x

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """x: (N, 32, 32, 1) -> logits (N, num_classes); shapes below are for 32x32 inputs."""
        dense = dict(dtype=self.dtype, kernel_init=layers.lecun98_uniform)
        x = self._conv(x, 6, "c1", train)                            # (N, 28, 28, 6)
        x = self._subsample(x, "s2")                                 # (N, 14, 14, 6)
        x = self._conv(x, 16, "c3", train)                           # (N, 10, 10, 16)
        x = self._subsample(x, "s4")                                 # (N, 5, 5, 16)
        x = self._conv(x, 120, "c5", train)                          # (N, 1, 1, 120)
        x = x.reshape(x.shape[0], -1)                                # (N, 120)
        x = layers.dropout(x, self.dropout_rate, train)
        x = self.options.act(layers.Dense(84, name="f6", **dense)(x))  # (N, 84)
        x = layers.dropout(x, self.dropout_rate, train)
        x = layers.Dense(self.num_classes, name="output", **dense)(x)  # (N, num_classes)
        return layers.to_logits(x)
