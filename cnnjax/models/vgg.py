"""VGG (Simonyan & Zisserman 2015, "Very deep convolutional networks for large-scale image
recognition", Table 1): configurations A, A-LRN, B, C, D, E.

3x3 convolutions with stride 1 and padding 1 (C adds 1x1 convolutions), 2x2/2 max pooling, then
FC 4096, FC 4096 and FC classes with dropout 0.5 after the first two (Sec. 2.1, 3.1). Parameter
counts (Table 2: 133, 133, 133, 134, 138, 144 million) include all biases: A 132,863,336,
B 133,047,848, C 133,638,952 (the 1x1 layers add ~0.6M), D 138,357,544, E 143,667,240 for
224x224x3 inputs and 1000 classes. With norm='batch' (torchvision's vgg*_bn) the convolutions keep
their biases, as torchvision's do, and each BN adds 2 x channels: vgg16 138,365,992.

Layers are named by their torchvision nn.Sequential index (features_0 ..., classifier_0, _3, _6),
counting ReLU, BN and pooling layers as torchvision does. Initialisation as torchvision's: He
normal (fan_out) convolutions, N(0, 0.01) fully connected weights, zero biases; the paper instead
initialised the deeper nets from net A (Sec. 3.1) and later "without pre-training" with Glorot.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax

from cnnjax.models import base, layers
from cnnjax.models.registry import register_model

# Table 1: an int is a 3x3 conv with that many filters, (c, 1) a 1x1 conv with c filters,
# 'M' a 2x2/2 max pool, 'LRN' local response normalisation.
CONFIGS: dict[str, tuple] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "A-LRN": (64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "C": (64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M",
          512, 512, (512, 1), "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"),
}


class VGG(base.ConvModel):
    """features (the configuration's convs and pools) -> flatten -> classifier.

    For 224x224x3 inputs the five pools give (N, 112, 112, 64), (N, 56, 56, 128),
    (N, 28, 28, 256), (N, 14, 14, 512), (N, 7, 7, 512); the classifier sees 25,088 features.
    Knobs: activation, norm ('none', 'batch'), pool, conv_impl, dtype, dropout_rate.
    """

    OWNER: ClassVar[str] = "vgg"
    CHOICES: ClassVar[dict[str, tuple]] = {"norm": ("none", "batch"), "config": tuple(CONFIGS)}
    STRUCTURE: ClassVar[tuple[str, ...]] = ("config",)

    config: str = "D"
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """x: (N, 224, 224, 3) -> logits (N, num_classes)."""
        opts = self.options
        f = layers.SequentialNames("features")
        for v in CONFIGS[self.config]:
            if v == "M":                                       # (N, H/2, W/2, C)
                x = layers.Pool(self.pool, 2, 2, options=opts, name=f())(x)
            elif v == "LRN":                                   # (N, H, W, C)
                x = layers.LRN(name=f())(x)
            else:                                              # (N, H, W, channels)
                channels, kernel = v if isinstance(v, tuple) else (v, 3)
                name = f()
                bn_name = f() if opts.norm == "batch" else None
                x = layers.conv_norm_act(x, opts, channels, kernel, name=name, bn_name=bn_name,
                                         train=train, padding=kernel // 2,
                                         use_bias=True)  # torchvision's vgg*_bn keep it
                f()  # the activation's index
        x = x.reshape(x.shape[0], -1)                          # (N, 7*7*512)
        c = layers.SequentialNames("classifier")
        fc = dict(dtype=opts.dtype, kernel_init=nn.initializers.normal(0.01))
        for _ in range(2):                                     # (N, 4096)
            x = opts.act(layers.Dense(4096, name=c(), **fc)(x))
            c()
            x = layers.dropout(x, self.dropout_rate, train)
            c()
        x = layers.Dense(self.num_classes, name=c(), **fc)(x)  # (N, num_classes)
        return layers.to_logits(x)


for _letter in CONFIGS:
    register_model(f"vgg_{_letter.lower().replace('-', '_')}", VGG, config=_letter)
# torchvision's names for A, B, D, E.
for _depth, _letter in ((11, "A"), (13, "B"), (16, "D"), (19, "E")):
    register_model(f"vgg{_depth}", VGG, config=_letter)
