"""GoogLeNet (Szegedy et al. 2015, "Going deeper with convolutions", Table 1 and Fig. 3).

The Inception module with dimension reductions (Fig. 2b): four branches, 1x1; 1x1 -> 3x3;
1x1 -> 5x5 (the paper's 5x5, not torchvision's 3x3); 3x3/1 max pool -> 1x1 projection,
concatenated on channels. `naive_inception=True` uses the naive module of Fig. 2a instead: 1x1,
3x3 and 5x5 convolutions straight on the input plus the pooled input itself, so the channel count
grows with every module (Sec. 4's argument for the reductions).

Stem (Fig. 3): conv 7x7/2, max pool 3x3/2, LRN, conv 1x1 64, conv 3x3 192, LRN, max pool 3x3/2.
Head: global average pool, dropout 0.4, linear. Two auxiliary classifiers on the outputs of 4a and
4d (Sec. 5): 5x5/3 average pool, 1x1 conv 128 + ReLU, FC 1024 + ReLU, dropout 0.7, linear; they
are built and initialised always, run and returned only in training, `(logits, (aux1, aux2))`, and
their losses are weighted 0.3 by the training loop.

Count convention: every convolution and linear layer has a bias (the paper's Caffe model has
them; Table 1's params column omits them); LRN has no parameters. For 1000 classes this gives
6,998,552 parameters without the auxiliary heads and 13,378,280 with them (tested against a sum
over Table 1's rows). With norm='batch' (torchvision's layout) the convolutions drop their biases
and each gains a BN scale and shift; LRN is then not used.

googlenet_torchvision (GoogLeNetTorchvision below) is torchvision.models.googlenet, so that its
weights import: 3x3 convolutions in the "5x5" branch, batch norm (eps 0.001) after every convolution,
a 2x2 pool before 5a, adaptive 4x4 pooling in the auxiliary heads and `transform_input`.

googlenet_small (GoogLeNetSmall below) is the same topology for 32x32 inputs with every width divided
by 8, for the auxiliary-classifier ablation (experiments/googlenet_aux).

Pooling padding: 'SAME' windows reproduce the paper's 112 -> 56 -> 28 -> 14 -> 7 maps exactly as
torchvision's ceil_mode pooling does. The `pool` knob changes the four downsampling pools only;
the pooling branch inside each Inception module stays a 3x3/1 max pool. LRN parameters are the
BVLC Caffe model's (size 5, alpha 1e-4 / 5 per channel in this module's convention, beta 0.75,
k 1). Initialisation as that model: Caffe 'xavier' weights, conv biases 0.2, linear biases 0.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.models import base, layers
from cnnjax.models.registry import CIFAR, register_model

# Table 1: (name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); "M" a 3x3/2 max pool.
INCEPTION_TABLE: tuple = (
    ("3a", 64, 96, 128, 16, 32, 32),
    ("3b", 128, 128, 192, 32, 96, 64),
    "M",
    ("4a", 192, 96, 208, 16, 48, 64),
    ("4b", 160, 112, 224, 24, 64, 64),
    ("4c", 128, 128, 256, 24, 64, 64),
    ("4d", 112, 144, 288, 32, 64, 64),
    ("4e", 256, 160, 320, 32, 128, 128),
    "M",
    ("5a", 256, 160, 320, 32, 128, 128),
    ("5b", 384, 192, 384, 48, 128, 128),
)
AUX_AFTER = ("4a", "4d")

_CONV_BIAS = nn.initializers.constant(0.2)


def _lrn(name: str) -> layers.LRN:
    return layers.LRN(size=5, k=1.0, alpha=1e-4 / 5, beta=0.75, name=name)


class Inception(nn.Module):
    """One Inception module: (N, H, W, Cin) -> (N, H, W, n1 + n3 + n5 + pool_proj).

    Branch names mirror torchvision: branch1, branch2_0/1, branch3_0/1, branch4_1. The naive
    module (Fig. 2a) outputs (N, H, W, n1 + n3 + n5 + Cin) from branch1, branch2, branch3 and an
    unprojected pool.
    """

    n1: int
    r3: int
    n3: int
    r5: int
    n5: int
    pool_proj: int
    naive: bool = False
    options: layers.LayerOptions = layers.LayerOptions()

    def _conv(self, x, features, kernel, name, train):
        return layers.ConvNormAct(features, kernel, padding=kernel // 2, options=self.options,
                                  kernel_init=layers.caffe_xavier, bias_init=_CONV_BIAS,
                                  name=name)(x, train=train)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        pooled = layers.Pool("max", 3, 1, padding=1, options=self.options,
                             name="branch4_0")(x)                             # (N, H, W, Cin)
        if self.naive:
            return jnp.concatenate([
                self._conv(x, self.n1, 1, "branch1", train),                  # (N, H, W, n1)
                self._conv(x, self.n3, 3, "branch2", train),                  # (N, H, W, n3)
                self._conv(x, self.n5, 5, "branch3", train),                  # (N, H, W, n5)
                pooled.astype(self.options.compute_dtype),                    # (N, H, W, Cin)
            ], axis=-1)
        b1 = self._conv(x, self.n1, 1, "branch1", train)                      # (N, H, W, n1)
        b2 = self._conv(x, self.r3, 1, "branch2_0", train)                    # (N, H, W, r3)
        b2 = self._conv(b2, self.n3, 3, "branch2_1", train)                   # (N, H, W, n3)
        b3 = self._conv(x, self.r5, 1, "branch3_0", train)                    # (N, H, W, r5)
        b3 = self._conv(b3, self.n5, 5, "branch3_1", train)                   # (N, H, W, n5)
        b4 = self._conv(pooled, self.pool_proj, 1, "branch4_1", train)        # (N, H, W, proj)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class InceptionAux(nn.Module):
    """Auxiliary classifier (Sec. 5): (N, 14, 14, C) -> (N, num_classes).

    5x5/3 average pool, 1x1 conv `conv_features` (128) + ReLU, FC `fc_features` (1024) + ReLU,
    dropout, linear. googlenet_small passes narrower widths; its 8x8 maps pool to 2x2.
    """

    num_classes: int
    dropout_rate: float = 0.7
    options: layers.LayerOptions = layers.LayerOptions()
    conv_features: int = 128
    fc_features: int = 1024

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        opts = self.options
        x = layers.Pool("avg", 5, 3, options=opts, name="pool")(x)              # (N, 4, 4, C)
        x = layers.ConvNormAct(self.conv_features, 1, options=opts,
                               kernel_init=layers.caffe_xavier, bias_init=_CONV_BIAS,
                               name="conv")(x, train=train)                     # (N, 4, 4, 128)
        x = x.reshape(x.shape[0], -1)                                            # (N, 2048)
        fc = dict(dtype=opts.dtype, kernel_init=layers.caffe_xavier)
        x = opts.act(layers.Dense(self.fc_features, name="fc1", **fc)(x))       # (N, 1024)
        x = layers.dropout(x, self.dropout_rate, train)
        x = layers.Dense(self.num_classes, name="fc2", **fc)(x)                  # (N, classes)
        return layers.to_logits(x)


@register_model("googlenet")
class GoogLeNet(base.ConvModel):
    """Table 1's network. Shapes below are for 224x224x3 inputs.

    Knobs: activation, norm ('lrn', 'none', 'batch'), pool, conv_impl, dtype, dropout_rate (0.4),
    aux_heads, aux_dropout_rate (0.7), naive_inception.
    """

    OWNER: ClassVar[str] = "googlenet"  # the model name in one-line errors
    INCEPTION: ClassVar[type[nn.Module]] = Inception  # module classes a variant may replace
    AUX: ClassVar[type[nn.Module]] = InceptionAux

    norm: str = "lrn"
    dropout_rate: float = 0.4
    aux_heads: bool = True
    aux_dropout_rate: float = 0.7
    naive_inception: bool = False

    @property
    def inception_table(self) -> tuple:
        """Rows (name, n1, r3, n3, r5, n5, pool_proj) and "M" pools, as INCEPTION_TABLE."""
        return INCEPTION_TABLE

    @property
    def aux_widths(self) -> tuple[int, int]:
        """(1x1 conv filters, FC units) of each auxiliary head (Sec. 5: 128, 1024)."""
        return 128, 1024

    def _pool(self, x: jax.Array, name: str) -> jax.Array:
        return layers.Pool(self.pool, 3, 2, padding="SAME", options=self.options,
                           kernel_init=layers.caffe_xavier, name=name)(x)

    def _conv(self, x, features, kernel, stride, name, train):
        return layers.ConvNormAct(features, kernel, stride=stride, padding=kernel // 2,
                                  options=self.options, kernel_init=layers.caffe_xavier,
                                  bias_init=_CONV_BIAS, name=name)(x, train=train)

    def _stem(self, x: jax.Array, train: bool) -> jax.Array:
        """Fig. 3's layers before Inception 3a: (N, 224, 224, 3) -> (N, 28, 28, 192)."""
        lrn = self.norm == "lrn"
        x = self._conv(x, 64, 7, 2, "conv1", train)          # (N, 112, 112, 64)
        x = self._pool(x, "maxpool1")                        # (N, 56, 56, 64)
        if lrn:
            x = _lrn("lrn1")(x)
        x = self._conv(x, 64, 1, 1, "conv2", train)          # (N, 56, 56, 64)
        x = self._conv(x, 192, 3, 1, "conv3", train)         # (N, 56, 56, 192)
        if lrn:
            x = _lrn("lrn2")(x)
        return self._pool(x, "maxpool2")                     # (N, 28, 28, 192)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False):
        """x: (N, 224, 224, 3) -> logits (N, num_classes), or in training with aux_heads
        (logits, (aux1, aux2)), all float32."""
        x = self._stem(x, train)                             # (N, 28, 28, 192)

        # Inception 3a, 3b -> (N, 28, 28, 480); 4a ... 4e -> (N, 14, 14, 832);
        # 5a, 5b -> (N, 7, 7, 1024) (Table 1's output sizes).
        run_aux = self.aux_heads and (train or self.is_initializing())
        aux = []
        pools = iter(("maxpool3", "maxpool4"))
        for row in self.inception_table:
            if row == "M":
                x = self._pool(x, next(pools))
                continue
            name, *widths = row
            x = self.INCEPTION(*widths, naive=self.naive_inception, options=self.options,
                               name=f"inception{name}")(x, train=train)
            if run_aux and name in AUX_AFTER:
                aux.append(self.AUX(self.num_classes, self.aux_dropout_rate, self.options,
                                    *self.aux_widths, name=f"aux{len(aux) + 1}")(x, train=train))

        x = layers.GlobalAvgPool(name="avgpool")(x)          # (N, 1024)
        x = layers.dropout(x, self.dropout_rate, train)
        x = layers.Dense(self.num_classes, dtype=self.dtype, kernel_init=layers.caffe_xavier,
                         name="fc")(x)                       # (N, num_classes)
        logits = layers.to_logits(x)
        if self.aux_heads and train:
            return logits, tuple(aux)
        return logits


@register_model("googlenet_small", natural_input=CIFAR, width_divisor=8)
class GoogLeNetSmall(GoogLeNet):
    """GoogLeNet scaled down for 32x32 inputs (CIFAR-10, Fashion-MNIST padded to 32), for the
    googlenet_aux ablation; not a network of the paper.

    Every width of Table 1 (Inception modules, stem, auxiliary heads) is divided by
    `width_divisor` (8 for googlenet_small: all of Table 1's widths are multiples of 8). The
    topology is kept: stem, 3a-3b, max pool, 4a-4e with the two auxiliary heads on 4a and 4d,
    max pool, 5a-5b, global average pool, dropout 0.4, linear. The stem drops the paper's
    stride-2 7x7 convolution and first pool (a 32x32 image is already small, as the CIFAR
    ResNets of He et al. 2016, Sec. 4.2, start with a plain 3x3 convolution): 3x3 conv
    64/d, 1x1 conv 64/d, 3x3 conv 192/d, (LRN when norm='lrn'), 3x3/2 max pool. The heads'
    5x5/3 average pool turns the 8x8 maps of stage 4 into 2x2. Default norm 'none'; the other
    knobs are GoogLeNet's. Shapes below are for 32x32 inputs and width_divisor 8.
    """

    STRUCTURE: ClassVar[tuple[str, ...]] = ("width_divisor",)
    OWNER: ClassVar[str] = "googlenet_small"

    norm: str = "none"
    width_divisor: int = 8

    def __post_init__(self) -> None:
        layers.check_positive_int(self.OWNER, "width_divisor", self.width_divisor)
        super().__post_init__()

    def _scaled(self, width: int) -> int:
        """A width of the paper divided by width_divisor, at least 1."""
        return max(1, width // self.width_divisor)

    @property
    def inception_table(self) -> tuple:
        return tuple(row if row == "M" else (row[0], *map(self._scaled, row[1:]))
                     for row in INCEPTION_TABLE)

    @property
    def aux_widths(self) -> tuple[int, int]:
        return self._scaled(128), self._scaled(1024)

    def _stem(self, x: jax.Array, train: bool) -> jax.Array:
        """(N, 32, 32, C) -> (N, 16, 16, 192/d)."""
        x = self._conv(x, self._scaled(64), 3, 1, "conv1", train)    # (N, 32, 32, 8)
        x = self._conv(x, self._scaled(64), 1, 1, "conv2", train)    # (N, 32, 32, 8)
        x = self._conv(x, self._scaled(192), 3, 1, "conv3", train)   # (N, 32, 32, 24)
        if self.norm == "lrn":
            x = _lrn("lrn2")(x)
        # Then 3a-3b (N, 16, 16, 60), max pool, 4a-4e (N, 8, 8, 104), max pool,
        # 5a-5b (N, 4, 4, 128), global average pool (N, 128).
        return self._pool(x, "maxpool2")                     # (N, 16, 16, 24)


# ---------------------------------------------------------------------------------------------------
# torchvision's GoogLeNet
# ---------------------------------------------------------------------------------------------------

TORCHVISION_BN_EPSILON = 1e-3  # torchvision's BasicConv2d: BatchNorm2d(..., eps=0.001)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def adaptive_avg_pool(x: jax.Array, size: int) -> jax.Array:
    """torch's adaptive_avg_pool2d: (N, H, W, C) -> (N, size, size, C), where output cell i averages
    input rows floor(i H / size) to ceil((i + 1) H / size) (bins may overlap; 14 -> 4 takes 4 rows
    each: 0-3, 3-6, 7-10, 10-13), and likewise for columns."""
    def bins(n: int) -> list[tuple[int, int]]:
        return [((i * n) // size, -(-((i + 1) * n) // size)) for i in range(size)]

    rows = [jnp.stack([x[:, h0:h1, w0:w1].mean(axis=(1, 2)) for w0, w1 in bins(x.shape[2])],
                      axis=1) for h0, h1 in bins(x.shape[1])]
    return jnp.stack(rows, axis=1)


def transform_input(x: jax.Array) -> jax.Array:
    """torchvision's `transform_input`: an image normalised with the ImageNet mean and std becomes
    (image - 0.5) / 0.5, the [-1, 1] scaling its GoogLeNet weights (ported from TensorFlow) expect:
    x * std / 0.5 + (mean - 0.5) / 0.5 per channel."""
    mean = jnp.asarray(IMAGENET_MEAN, x.dtype)
    std = jnp.asarray(IMAGENET_STD, x.dtype)
    return x * (std / 0.5) + (mean - 0.5) / 0.5


def ceil_mode_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """(0, extra): the padding after the input that gives torch's ceil_mode pooling, whose output
    is ceil((size - window) / stride) + 1 (odd maps pool to one cell fewer than 'SAME' gives)."""
    out = -(-(size - window) // stride) + 1
    return 0, max((out - 1) * stride + window - size, 0)


def basic_conv2d(features: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
                 options: layers.LayerOptions | None = None,
                 name: str | None = None) -> layers.ConvNormAct:
    """torchvision's GoogLeNet block BasicConv2d: (N, H, W, Cin) -> (N, Ho, Wo, features); a
    convolution without bias, batch norm with eps 0.001 (whatever options.norm says), then the
    activation. Submodules 'conv' and 'bn'."""
    return layers.ConvNormAct(features, kernel_size, stride=stride, padding=padding,
                              options=dataclasses.replace(options or layers.LayerOptions(),
                                                          norm="batch"),
                              kernel_init=layers.caffe_xavier, bn_epsilon=TORCHVISION_BN_EPSILON,
                              name=name)


class TorchvisionInception(Inception):
    """torchvision's Inception module: (N, H, W, Cin) -> (N, H, W, n1 + n3 + n5 + pool_proj), with
    BasicConv2d everywhere and a 3x3 convolution where the paper has 5x5 (branch3_1; torchvision's
    source calls it a known bug and keeps it for its weights)."""

    def _conv(self, x, features, kernel, name, train):
        kernel = 3 if name == "branch3_1" else kernel
        return basic_conv2d(features, kernel, padding=kernel // 2, options=self.options,
                            name=name)(x, train=train)


class TorchvisionAux(InceptionAux):
    """torchvision's InceptionAux: (N, H, W, C) -> (N, num_classes). Adaptive average pool to 4x4
    (the paper: 5x5/3), BasicConv2d 128, FC 1024 + ReLU, dropout, FC."""

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        opts = self.options
        x = adaptive_avg_pool(x, 4)                                              # (N, 4, 4, C)
        x = basic_conv2d(self.conv_features, 1, options=opts, name="conv")(x, train=train)
        x = x.reshape(x.shape[0], -1)                                            # (N, 2048)
        fc = dict(dtype=opts.dtype, kernel_init=layers.caffe_xavier)
        x = opts.act(layers.Dense(self.fc_features, name="fc1", **fc)(x))       # (N, 1024)
        x = layers.dropout(x, self.dropout_rate, train)
        x = layers.Dense(self.num_classes, name="fc2", **fc)(x)                  # (N, classes)
        return layers.to_logits(x)


@register_model("googlenet_torchvision")
class GoogLeNetTorchvision(GoogLeNet):
    """torchvision.models.googlenet, so that its weights import (cnnjax.convert). Shapes as the
    paper model's for 224x224x3 inputs: 112, 56, 28, 14, 7.

    Where it departs from the paper (and from GoogLeNet above): BasicConv2d (convolution without
    bias, batch norm eps 0.001, ReLU) instead of biased convolutions and LRN; 3x3 convolutions in
    the "5x5" branch; a 2x2/2 max pool before 5a; max pools in torch's ceil mode; auxiliary heads
    that pool adaptively to 4x4; dropout 0.2 before the classifier (torchvision's default); and
    `transform_input` (default True, as torchvision's pretrained builder sets it), which rescales
    ImageNet-normalised input to the [-1, 1] range the weights were trained on. 6,624,904
    parameters without the auxiliary heads and 13,004,888 with them (torchvision's counts).

    Knobs: activation, conv_impl, dtype, dropout_rate (0.2), aux_heads, aux_dropout_rate (0.7),
    transform_input. Initialised as the paper model (torchvision's truncated normal 0.01 matters
    only when training from scratch).
    """

    STRUCTURE: ClassVar[tuple[str, ...]] = ("norm", "pool", "naive_inception")
    OWNER: ClassVar[str] = "googlenet_torchvision"
    INCEPTION: ClassVar[type[nn.Module]] = TorchvisionInception
    AUX: ClassVar[type[nn.Module]] = TorchvisionAux

    norm: str = "batch"
    dropout_rate: float = 0.2
    transform_input: bool = True

    def _conv(self, x, features, kernel, stride, name, train):
        return basic_conv2d(features, kernel, stride=stride, padding=kernel // 2,
                            options=self.options, name=name)(x, train=train)

    def _pool(self, x: jax.Array, name: str) -> jax.Array:
        window = 2 if name == "maxpool4" else 3  # torchvision: MaxPool2d(2, 2, ceil_mode=True)
        pads = [ceil_mode_padding(n, window, 2) for n in x.shape[1:3]]
        return layers.Pool("max", window, 2, padding=pads, options=self.options, name=name)(x)

    def _stem(self, x: jax.Array, train: bool) -> jax.Array:
        """(N, 224, 224, 3) -> (N, 28, 28, 192), after transform_input when it is on."""
        if self.transform_input:
            x = transform_input(x.astype(jnp.float32))
        return super()._stem(x, train)
