"""A small configurable plain CNN for ablations: stages of two 3x3 'SAME' convolutions, each stage
ending in 2x2 downsampling, then one fully connected layer to the classes.

Default widths (32, 32, 64, 64): conv-conv-pool-conv-conv-pool-fc. For a 32x32xC input and K
classes the parameters are, biases included,
    conv1 (9*C+1)*32, conv2 (9*32+1)*32 = 9,248, conv3 (9*32+1)*64 = 18,496,
    conv4 (9*64+1)*64 = 36,928, fc (8*8*64+1)*K
(105,962 for C = 1, K = 10). The knobs ablate one design choice each:
- activation: ReLU against tanh (Krizhevsky et al. 2012, Sec. 3.1 and Fig. 1);
- pool: 'max' or 'avg' 2x2/2 pooling, or 'strided_conv': each pool replaced by a learned 3x3
  stride-2 convolution with as many filters as its input, plus the activation (Springenberg et
  al. 2015, Sec. 2.1, All-CNN), which adds (9*c+1)*c parameters per stage of width c;
- norm: 'lrn' puts AlexNet's local response normalisation (Sec. 3.3; n=5, k=2, alpha=1e-4,
  beta=0.75) after each stage's last activation, before its pooling, as AlexNet orders
  conv-ReLU-LRN-pool (Sec. 3.5); 'batch' puts batch norm before every convolution's activation
  (the convolutions then drop their biases; the strided-conv replacement of a pool keeps its bias
  and has no batch norm, as in cnnjax.models.allconv);
- weight_init: 'he_normal' draws the convolutions (strided-conv pools included) from He et al. 2015's
  fan-in normal, the scale that keeps ReLU activations' variance through depth, and the FC layer
  from torch's default U(+-1/sqrt(fan_in)); 'normal_0.01' draws every weight from a zero-mean
  Gaussian of s.d. 0.01 (AlexNet, Sec. 5), under which the signal shrinks layer by layer;
  'alexnet' is that with AlexNet's biases of 1 in the last convolution of each stage (its conv2
  and conv4 here; AlexNet: conv2, conv4, conv5 and the hidden FC layers, "to provide the ReLUs
  with positive inputs"). Every other bias starts at 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax

from cnnjax.models import base, layers
from cnnjax.models.registry import register_model

CONVS_PER_STAGE = 2
# weight_init -> (convolution initialiser, FC initialiser, bias of each stage's last convolution)
INITS = {"he_normal": (layers.he_normal_fan_in, layers.torch_default, 0.0),
         "normal_0.01": (nn.initializers.normal(0.01), nn.initializers.normal(0.01), 0.0),
         "alexnet": (nn.initializers.normal(0.01), nn.initializers.normal(0.01), 1.0)}


@register_model("smallcnn", natural_input=((32, 32, 1), 10))
class SmallCNN(base.ConvModel):
    """[conv3x3 -> conv3x3 -> downsample] per stage -> flatten -> Dense(num_classes).

    Knobs: widths (one per conv layer, an even number of them: two per stage), activation, norm
    ('none', 'lrn', 'batch'), pool ('max', 'avg', 'strided_conv'), weight_init, conv_impl, dtype,
    dropout_rate (before the classifier; 0 by default). Shapes below are for 32x32 inputs and
    the default widths.
    """

    OWNER: ClassVar[str] = "smallcnn"
    CHOICES: ClassVar[dict[str, tuple]] = {"weight_init": tuple(INITS)}

    num_classes: int = 10
    widths: Sequence[int] = (32, 32, 64, 64)
    weight_init: str = "he_normal"

    def __post_init__(self) -> None:
        self.check_widths("widths", self.widths, multiple=CONVS_PER_STAGE,
                          what="a non-empty sequence of an even number of conv widths (two per stage)")
        super().__post_init__()

    def _conv(self, x: jax.Array, features: int, name: str, train: bool,
              bias: float = 0.0) -> jax.Array:
        return layers.conv_norm_act(x, self.options, features, 3, padding="SAME",
                                    kernel_init=INITS[self.weight_init][0],
                                    bias_init=nn.initializers.constant(bias), name=name, train=train)

    def _downsample(self, x: jax.Array, name: str) -> jax.Array:
        if self.norm == "lrn":
            x = layers.LRN(name=f"{name}_lrn")(x)
        # The strided convolution overlaps its windows (3x3/2, padding 1) as All-CNN's does;
        # both halve an even side.
        window, padding = (3, 1) if self.pool == "strided_conv" else (2, 0)
        return layers.Pool(self.pool, window, 2, padding=padding, options=self.options,
                           kernel_init=INITS[self.weight_init][0], name=name)(x)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """x: (N, H, W, C) -> logits (N, num_classes); H and W divisible by 2**stages."""
        for i, width in enumerate(self.widths):
            last = (i + 1) % CONVS_PER_STAGE == 0
            bias = INITS[self.weight_init][2] if last else 0.0
            x = self._conv(x, width, f"conv{i + 1}", train, bias)     # (N, 32, 32, 32) ...
            if last:
                x = self._downsample(x, f"pool{(i + 1) // CONVS_PER_STAGE}")  # (N, 16, 16, 32)
        x = x.reshape(x.shape[0], -1)                                  # (N, 8 * 8 * 64)
        x = layers.dropout(x, self.dropout_rate, train)
        x = layers.Dense(self.num_classes, dtype=self.dtype, kernel_init=INITS[self.weight_init][1],
                         name="fc")(x)  # (N, num_classes)
        return layers.to_logits(x)
