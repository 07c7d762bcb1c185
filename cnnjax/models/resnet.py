"""Residual networks (He, Zhang, Ren & Sun 2016, "Deep residual learning for image recognition").

One class, ResNet, parameterised by its stage sizes and block class (as Flax's examples/imagenet):
- ImageNet (Sec. 3.4, Table 1): 7x7/2 conv 64, 3x3/2 max pool, four stages of 64, 128, 256, 512
  channels (x4 for bottleneck blocks), global average pool, FC. Projection shortcuts where the
  dimensions change, identities elsewhere (option B, Sec. 3.3). Counts, all torchvision's:
  resnet18 11,689,512, resnet34 21,797,672, resnet50 25,557,032, resnet101 44,549,160,
  resnet152 60,192,808. `plain18/34` are the same stacks without shortcuts (Sec. 4.1).
- CIFAR-10 (Sec. 4.2): 3x3 conv 16, three stages of n blocks on 32x32, 16x16, 8x8 maps with
  16, 32, 64 filters, global average pool, FC; depth 6n + 2 (resnet20/32/44/56/110) with
  identity shortcuts, zero-padded where the channels grow and subsampled where the maps shrink
  (option A): resnet20 has 269,722 parameters for 10 classes, resnet110 1,727,962.

Count convention: batch-norm scale and shift are parameters; the running mean and variance are
state ('batch_stats') and not counted. Convolutions have no bias before batch norm (they gain one
with norm='none'). Bottleneck blocks put the stride on the 3x3 convolution by default, as
torchvision does ("ResNet v1.5", 4.1 G multiply-adds for resnet50); stride_in_3x3=False puts it
on the first 1x1 convolution as in the original Caffe model (3.8 G); the parameters are the same.

Names mirror torchvision: conv1, bn1, layer1_0/conv1, layer1_0/bn1, layer2_0/downsample_0 (the
projection conv) and downsample_1 (its BN), fc. Initialisation as torchvision: He normal fan_out
convolutions (He et al. 2015), BN scale 1 and shift 0, fc U(+-1/sqrt(fan_in)) with zero bias;
zero_init_residual starts each block's last BN scale at 0 (Goyal et al. 2017, Sec. 5.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.models import base, layers
from cnnjax.models.registry import CIFAR, register_model

SHORTCUTS = ("projection", "identity_pad", "none")


class _Block(nn.Module):
    """Fields and helpers shared by the two residual blocks."""

    features: int
    stride: int = 1
    shortcut: str = "projection"
    zero_init_residual: bool = False
    stride_in_3x3: bool = True
    options: layers.LayerOptions = layers.LayerOptions(norm="batch")

    def conv_bn(self, x: jax.Array, features: int, kernel: int, stride: int, index: int,
                train: bool, *, last: bool = False) -> jax.Array:
        """conv{index}, bn{index}, then the activation unless `last` (it follows the addition)."""
        return layers.conv_norm_act(x, self.options, features, kernel, name=f"conv{index}",
                                    bn_name=f"bn{index}", train=train, act=not last,
                                    zero_scale=last and self.zero_init_residual, stride=stride,
                                    padding=kernel // 2)

    def add_shortcut(self, x: jax.Array, y: jax.Array, train: bool) -> jax.Array:
        """activation(y + shortcut(x)) (Sec. 3.2, eq. 1), or activation(y) in plain nets.

        x: (N, H, W, Cin), y: (N, H/s, W/s, Cout). Where the shapes differ, 'projection' is a
        1x1/s conv and BN (eq. 2), 'identity_pad' subsamples x by s and zero-pads the channels
        (option A).
        """
        opts = self.options
        if self.shortcut == "none":
            return opts.act(y)
        if self.stride == 1 and x.shape[-1] == y.shape[-1]:
            return opts.act(y + x.astype(y.dtype))
        if self.shortcut == "projection":
            s = layers.conv_norm_act(x, opts, y.shape[-1], 1, name="downsample_0",
                                     bn_name="downsample_1", train=train, act=False,
                                     stride=self.stride)
        else:
            s = x[:, ::self.stride, ::self.stride, :]
            s = jnp.pad(s, ((0, 0), (0, 0), (0, 0), (0, y.shape[-1] - s.shape[-1])))
        return opts.act(y + s.astype(y.dtype))


class BasicBlock(_Block):
    """Two 3x3 convolutions (Fig. 5 left): (N, H, W, Cin) -> (N, H/s, W/s, features)."""

    EXPANSION: ClassVar[int] = 1

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        f = self.features
        y = self.conv_bn(x, f, 3, self.stride, 1, train)             # (N, H/s, W/s, f)
        y = self.conv_bn(y, f, 3, 1, 2, train, last=True)            # (N, H/s, W/s, f)
        return self.add_shortcut(x, y, train)


class Bottleneck(_Block):
    """1x1 reduce, 3x3, 1x1 expand by 4 (Fig. 5 right): (N, H, W, Cin) -> (N, H/s, W/s, 4f)."""

    EXPANSION: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        f = self.features
        s1, s3 = (1, self.stride) if self.stride_in_3x3 else (self.stride, 1)
        y = self.conv_bn(x, f, 1, s1, 1, train)                      # (N, H/s1, W/s1, f)
        y = self.conv_bn(y, f, 3, s3, 2, train)                      # (N, H/s, W/s, f)
        y = self.conv_bn(y, f * 4, 1, 1, 3, train, last=True)        # (N, H/s, W/s, 4f)
        return self.add_shortcut(x, y, train)


class ResNet(base.ConvModel):
    """Stem, len(stage_sizes) stages of residual blocks, global average pool, FC.

    ImageNet shapes for 224x224x3 inputs: stem (N, 56, 56, 64); stages (N, 56, 56, 64e),
    (N, 28, 28, 128e), (N, 14, 14, 256e), (N, 7, 7, 512e) with e the block's expansion.
    CIFAR shapes for 32x32x3: stem (N, 32, 32, 16); stages 32x32x16, 16x16x32, 8x8x64.
    Knobs: shortcut, zero_init_residual, stride_in_3x3 (bottlenecks), activation,
    norm ('batch', 'none'), pool (the ImageNet stem's), conv_impl, dtype, dropout_rate (before fc).
    """

    OWNER: ClassVar[str] = "resnet"
    CHOICES: ClassVar[dict[str, tuple]] = {"shortcut": SHORTCUTS, "norm": ("batch", "none"),
                                           "stem": ("imagenet", "cifar")}
    STRUCTURE: ClassVar[tuple[str, ...]] = ("stage_sizes", "block_cls", "stem", "width")

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block_cls: type[_Block] = BasicBlock
    stem: str = "imagenet"
    width: int = 64
    shortcut: str = "projection"
    zero_init_residual: bool = False
    stride_in_3x3: bool = True
    norm: str = "batch"

    @property
    def restrictions(self) -> dict[str, tuple[tuple, str]]:
        out = {}
        if self.stem == "cifar":
            out["pool"] = (("max",), "pool is the ImageNet stem's max pool; the CIFAR ResNets have none")
        if self.block_cls is not Bottleneck:
            out["stride_in_3x3"] = ((True,), "it applies to bottleneck blocks only: resnet50/101/152")
        if self.norm != "batch" or self.shortcut == "none":
            out["zero_init_residual"] = ((False,), f"it needs norm='batch' and a shortcut; got "
                                        f"norm={self.norm!r}, shortcut={self.shortcut!r}")
        return out

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """x: (N, H, W, 3) -> logits (N, num_classes)."""
        opts = self.options
        imagenet = self.stem == "imagenet"
        kernel, stride = (7, 2) if imagenet else (3, 1)
        x = layers.conv_norm_act(x, opts, self.width, kernel, name="conv1", bn_name="bn1",
                                 train=train, stride=stride,
                                 padding=kernel // 2)        # (N, 112, 112, 64) | (N, 32, 32, 16)
        if imagenet:
            x = layers.Pool(self.pool, 3, 2, padding=1, options=opts,
                            name="maxpool")(x)               # (N, 56, 56, 64)
        for i, blocks in enumerate(self.stage_sizes):
            for j in range(blocks):                          # (N, H/2^i, W/2^i, width 2^i e)
                x = self.block_cls(self.width * 2**i, stride=2 if i > 0 and j == 0 else 1,
                                   shortcut=self.shortcut,
                                   zero_init_residual=self.zero_init_residual,
                                   stride_in_3x3=self.stride_in_3x3, options=opts,
                                   name=f"layer{i + 1}_{j}")(x, train=train)
        x = layers.GlobalAvgPool(name="avgpool")(x)          # (N, C)
        x = layers.dropout(x, self.dropout_rate, train)
        x = layers.Dense(self.num_classes, dtype=opts.dtype, name="fc")(x)  # (N, num_classes)
        return layers.to_logits(x)


_IMAGENET_STAGES = {18: ((2, 2, 2, 2), BasicBlock), 34: ((3, 4, 6, 3), BasicBlock),
                    50: ((3, 4, 6, 3), Bottleneck), 101: ((3, 4, 23, 3), Bottleneck),
                    152: ((3, 8, 36, 3), Bottleneck)}
for _depth, (_stages, _block) in _IMAGENET_STAGES.items():
    register_model(f"resnet{_depth}", ResNet, stage_sizes=_stages, block_cls=_block)
    if _depth in (18, 34):  # Sec. 4.1's plain networks
        register_model(f"plain{_depth}", ResNet, stage_sizes=_stages, block_cls=_block,
                       shortcut="none")
# CIFAR-10 ResNets of depth 6n + 2 (Sec. 4.2) and their plain counterparts.
for _depth in (20, 32, 44, 56, 110):
    for _kind, _shortcut in (("resnet", "identity_pad"), ("plain", "none")):
        register_model(f"{_kind}{_depth}", ResNet, natural_input=CIFAR,
                       stage_sizes=((_depth - 2) // 6,) * 3, block_cls=BasicBlock, stem="cifar",
                       width=16, shortcut=_shortcut)
