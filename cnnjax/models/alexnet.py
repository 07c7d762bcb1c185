"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet classification with deep convolutional
neural networks", Sec. 3 and Fig. 2).

`alexnet` is the paper's network: five convolutions (96, 256, 384, 384, 256 filters), ReLU,
local response normalisation after conv1 and conv2 (Sec. 3.3), overlapping 3/2 max pooling
(Sec. 3.4), three fully connected layers with dropout 0.5 on the outputs of the first two
(Sec. 4.2). groups=2 reproduces the two-GPU towers (Sec. 3.2: conv2, conv4 and conv5 see only the
maps on their own GPU): 60,965,224 parameters; groups=1: 62,378,344. `alexnet_torchvision` is
torchvision's single-tower variant (64, 192, 384, 256, 256 filters, no LRN, dropout before fc6
and fc7): 61,100,840. Counts include all biases; LRN has no parameters.

Input 224x224: conv1 pads by 2, as torchvision does, so that 224 gives the paper's 55x55 maps
(the paper's 224 only works out as 227 without padding).

Layers are named by their index in torchvision's nn.Sequential (features_0 ... classifier_6),
counting every layer including ReLU, LRN and pooling, so that torchvision's weights map by name.
Initialisation as in Sec. 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden
fully connected layers ("accelerates the early stages of learning by providing the ReLUs with
positive inputs"), 0 elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax

from cnnjax.models import base, layers
from cnnjax.models.registry import register_model

_WEIGHT_INIT = nn.initializers.normal(0.01)
_ONE = nn.initializers.ones
_ZERO = nn.initializers.zeros


@register_model("alexnet")
class AlexNet(base.ConvModel):
    """The five-conv, three-FC network of Fig. 2. Shapes below are for 224x224x3 inputs.

    Knobs: groups (1 or 2: the two towers), activation, norm ('lrn', 'none', 'batch'), pool,
    conv_impl, dtype, dropout_rate.
    """

    OWNER: ClassVar[str] = "alexnet"
    CHOICES: ClassVar[dict[str, tuple]] = {"groups": (1, 2)}
    STRUCTURE: ClassVar[tuple[str, ...]] = ("filters", "dropout_before_fc")

    filters: Sequence[int] = (96, 256, 384, 384, 256)
    dropout_before_fc: bool = False  # torchvision drops fc6's and fc7's inputs, the paper their outputs
    groups: int = 2
    norm: str = "lrn"
    dropout_rate: float = 0.5

    def _conv(self, x: jax.Array, seq: layers.SequentialNames, features: int, kernel: int, *,
              stride: int = 1, padding: int, groups: int = 1, bias_one: bool, train: bool,
              lrn: bool = False) -> jax.Array:
        """Conv [-> BN] -> activation [-> LRN], each taking one Sequential index."""
        name = seq()
        bn_name = seq() if self.norm == "batch" else None
        x = layers.conv_norm_act(x, self.options, features, kernel, name=name, bn_name=bn_name,
                                 train=train, stride=stride, padding=padding, groups=groups,
                                 kernel_init=_WEIGHT_INIT, bias_init=_ONE if bias_one else _ZERO)
        seq()  # the activation's index
        if lrn and self.norm == "lrn":
            x = layers.LRN(name=seq())(x)
        return x

    def _pool(self, x: jax.Array, seq: layers.SequentialNames) -> jax.Array:
        return layers.Pool(self.pool, 3, 2, options=self.options, kernel_init=_WEIGHT_INIT,
                           name=seq())(x)

    def _fc(self, x: jax.Array, seq: layers.SequentialNames, features: int, *, hidden: bool,
            train: bool) -> jax.Array:
        """[dropout ->] Linear -> activation [-> dropout] for the hidden layers; Linear alone
        for the classifier."""
        if hidden and self.dropout_before_fc:
            seq()
            x = layers.dropout(x, self.dropout_rate, train)
        x = layers.Dense(features, dtype=self.dtype, kernel_init=_WEIGHT_INIT,
                         bias_init=_ONE if hidden else _ZERO, name=seq())(x)
        if hidden:
            x = self.options.act(x)
            seq()
            if not self.dropout_before_fc:
                seq()
                x = layers.dropout(x, self.dropout_rate, train)
        return x

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """x: (N, 224, 224, 3) -> logits (N, num_classes)."""
        c1, c2, c3, c4, c5 = self.filters
        g = self.groups
        f = layers.SequentialNames("features")
        x = self._conv(x, f, c1, 11, stride=4, padding=2, bias_one=False, train=train,
                       lrn=True)                                                  # (N, 55, 55, 96)
        x = self._pool(x, f)                                                      # (N, 27, 27, 96)
        x = self._conv(x, f, c2, 5, padding=2, groups=g, bias_one=True, train=train,
                       lrn=True)                                                  # (N, 27, 27, 256)
        x = self._pool(x, f)                                                      # (N, 13, 13, 256)
        x = self._conv(x, f, c3, 3, padding=1, bias_one=False, train=train)       # (N, 13, 13, 384)
        x = self._conv(x, f, c4, 3, padding=1, groups=g, bias_one=True, train=train)  # (N, 13, 13, 384)
        x = self._conv(x, f, c5, 3, padding=1, groups=g, bias_one=True, train=train)  # (N, 13, 13, 256)
        x = self._pool(x, f)                                                      # (N, 6, 6, 256)
        x = x.reshape(x.shape[0], -1)                                             # (N, 9216)
        c = layers.SequentialNames("classifier")
        x = self._fc(x, c, 4096, hidden=True, train=train)                       # (N, 4096) fc6
        x = self._fc(x, c, 4096, hidden=True, train=train)                       # (N, 4096) fc7
        x = self._fc(x, c, self.num_classes, hidden=False, train=train)          # (N, classes) fc8
        return layers.to_logits(x)


register_model("alexnet_torchvision", AlexNet, filters=(64, 192, 384, 256, 256),
               dropout_before_fc=True, groups=1, norm="none")
