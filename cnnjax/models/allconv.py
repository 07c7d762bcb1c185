"""All-CNN-C (Springenberg, Dosovitskiy, Brox & Riedmiller 2015, "Striving for simplicity: the all
convolutional net", Table 2): CIFAR-10 network whose pooling layers are replaced by 3x3
convolutions with stride 2, and whose classifier is a 1x1 convolution to the classes followed by
global averaging (no fully connected layer).

pool='max' gives the paper's base "Model C" (3x3/2 max pooling in those two places);
pool='strided_conv' (the default) gives All-CNN-C. Dropout 20% on the input and 50% after each
pooling layer or its replacement (Sec. 3.1). The 1x1 class layer is followed by a ReLU as in
Table 2 (relu_logits=False drops it). 1,369,738 parameters (biases included) for 10 classes.
Weights He normal (fan_in); the paper does not state its initialisation.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax

from cnnjax.models import base, layers
from cnnjax.models.registry import CIFAR, register_model


@register_model("allconv", natural_input=CIFAR)
class AllConvNet(base.ConvModel):
    """Model C / All-CNN-C. Shapes below are for 32x32x3 inputs.

    Knobs: activation, norm ('none', 'batch'), pool ('strided_conv', 'max', 'avg'), conv_impl,
    dtype, dropout_rate (0.5), input_dropout_rate (0.2), relu_logits.
    """

    OWNER: ClassVar[str] = "allconv"
    CHOICES: ClassVar[dict[str, tuple]] = {"norm": ("none", "batch")}

    num_classes: int = 10
    pool: str = "strided_conv"
    dropout_rate: float = 0.5
    input_dropout_rate: float = 0.2
    relu_logits: bool = True

    def _conv(self, x: jax.Array, features: int, kernel: int, padding: int, name: str,
              train: bool, act: bool = True) -> jax.Array:
        return layers.conv_norm_act(x, self.options, features, kernel, padding=padding,
                                    kernel_init=layers.he_normal_fan_in, name=name, train=train,
                                    act=act)

    def _down(self, x: jax.Array, name: str, train: bool) -> jax.Array:
        x = layers.Pool(self.pool, 3, 2, padding=1, options=self.options, name=name)(x)
        return layers.dropout(x, self.dropout_rate, train)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """x: (N, 32, 32, 3) -> logits (N, num_classes)."""
        x = layers.dropout(x, self.input_dropout_rate, train)
        x = self._conv(x, 96, 3, 1, "conv1", train)                  # (N, 32, 32, 96)
        x = self._conv(x, 96, 3, 1, "conv2", train)                  # (N, 32, 32, 96)
        x = self._down(x, "down1", train)                            # (N, 16, 16, 96)
        x = self._conv(x, 192, 3, 1, "conv3", train)                 # (N, 16, 16, 192)
        x = self._conv(x, 192, 3, 1, "conv4", train)                 # (N, 16, 16, 192)
        x = self._down(x, "down2", train)                            # (N, 8, 8, 192)
        x = self._conv(x, 192, 3, 0, "conv5", train)                 # (N, 6, 6, 192)
        x = self._conv(x, 192, 1, 0, "conv6", train)                 # (N, 6, 6, 192)
        x = self._conv(x, self.num_classes, 1, 0, "conv7", train,
                       act=self.relu_logits)                         # (N, 6, 6, classes)
        x = layers.GlobalAvgPool(name="avgpool")(x)                  # (N, classes)
        return layers.to_logits(x)
