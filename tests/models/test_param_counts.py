"""Exact parameter counts against the papers and torchvision (jax.eval_shape, nothing allocated)."""

from __future__ import annotations

import pytest

from cnnjax import models

IMAGENET = (1, 224, 224, 3)
CIFAR = (1, 32, 32, 3)
MNIST32 = (1, 32, 32, 1)


@pytest.mark.parametrize(("name", "knobs", "expected"), [
    # Krizhevsky et al. 2012, two towers (groups=2) and one; torchvision's single-tower variant.
    ("alexnet", {}, 60_965_224),
    ("alexnet", {"groups": 1}, 62_378_344),
    ("alexnet_torchvision", {}, 61_100_840),
    # Simonyan & Zisserman 2015 (and torchvision's vgg11/13/16/19, vgg16_bn).
    ("vgg_a", {}, 132_863_336),
    ("vgg_b", {}, 133_047_848),
    ("vgg_d", {}, 138_357_544),
    ("vgg_e", {}, 143_667_240),
    ("vgg16", {"norm": "batch"}, 138_365_992),
    # He et al. 2016, as counted by torchvision.
    ("resnet18", {}, 11_689_512),
    ("resnet34", {}, 21_797_672),
    ("resnet50", {}, 25_557_032),
    ("resnet101", {}, 44_549_160),
    ("resnet152", {}, 60_192_808),
])
def test_imagenet_counts(param_count, name, knobs, expected):
    assert param_count(models.build(name, **knobs), IMAGENET) == expected


def test_vgg_table2_rounded(param_count):
    """Table 2: A, A-LRN, B, C, D, E have 133, 133, 133, 134, 138, 144 million parameters."""
    table2 = {"vgg_a": 133, "vgg_a_lrn": 133, "vgg_b": 133, "vgg_c": 134, "vgg_d": 138,
              "vgg_e": 144}
    for name, millions in table2.items():
        assert round(param_count(models.build(name), IMAGENET) / 1e6) == millions, name


def test_vgg_aliases_are_the_configurations(param_count):
    for alias, config in [("vgg11", "vgg_a"), ("vgg13", "vgg_b"), ("vgg16", "vgg_d"),
                          ("vgg19", "vgg_e")]:
        assert (param_count(models.build(alias), IMAGENET)
                == param_count(models.build(config), IMAGENET))


def test_lenet5_from_the_layer_list(param_count):
    """C1, C3 (full connectivity), C5, F6, output: (fan_in + 1) * units each."""
    expected = ((5 * 5 * 1 + 1) * 6 + (5 * 5 * 6 + 1) * 16 + (5 * 5 * 16 + 1) * 120
                + (120 + 1) * 84 + (84 + 1) * 10)
    assert expected == 61_706
    assert param_count(models.build("lenet5", num_classes=10), MNIST32) == expected


def test_mlp_from_the_widths(param_count):
    expected = (1024 + 1) * 1024 + (1024 + 1) * 512 + (512 + 1) * 10
    assert param_count(models.build("mlp", num_classes=10), MNIST32) == expected
    wide = models.build("mlp", num_classes=10, hidden=(300,))
    assert param_count(wide, (1, 28, 28, 1)) == (784 + 1) * 300 + (300 + 1) * 10


def test_allconv_c_from_table2(param_count):
    """All-CNN-C: 3x3 convs 96, 96, 96/2, 192, 192, 192/2, 192 valid, 1x1 192, 1x1 classes
    (Springenberg et al. 2015 quote 1.4M)."""
    widths = [(3, 3, 96), (3, 96, 96), (3, 96, 96), (3, 96, 192), (3, 192, 192),
              (3, 192, 192), (3, 192, 192), (1, 192, 192), (1, 192, 10)]
    expected = sum(k * k * cin * cout + cout for k, cin, cout in widths)
    assert param_count(models.build("allconv", num_classes=10), CIFAR) == expected
    # Model C: the two strided convolutions become max pools.
    base = models.build("allconv", num_classes=10, pool="max")
    assert param_count(base, CIFAR) == expected - (9 * 96 * 96 + 96) - (9 * 192 * 192 + 192)


def _cifar_resnet_count(n: int, classes: int = 10, shortcuts: bool = True) -> int:
    """He et al. 2016, Sec. 4.2: conv 3x3 16, then 2n 3x3 convs per stage at 16, 32, 64
    filters, a BN (scale + shift) after every conv, option-A shortcuts (no parameters), FC."""
    del shortcuts  # option A and no shortcut have the same parameters
    total = 3 * 3 * 3 * 16 + 2 * 16
    cin = 16
    for width in (16, 32, 64):
        for _ in range(2 * n):
            total += 3 * 3 * cin * width + 2 * width
            cin = width
    return total + 64 * classes + classes


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110])
def test_cifar_resnets(param_count, depth):
    n = (depth - 2) // 6
    expected = _cifar_resnet_count(n)
    assert param_count(models.build(f"resnet{depth}", num_classes=10), CIFAR) == expected
    assert param_count(models.build(f"plain{depth}", num_classes=10), CIFAR) == expected
    if depth == 20:
        assert round(expected / 1e4) == 27  # "0.27M"
    if depth == 110:
        assert round(expected / 1e5) == 17  # "1.7M"


def test_plain_imagenet_nets_lack_only_the_projections(param_count):
    """plain18/34 = resnet18/34 minus the three 1x1 projection convs and their BNs."""
    projections = sum(cin * cout + 2 * cout for cin, cout in [(64, 128), (128, 256), (256, 512)])
    for depth in (18, 34):
        assert (param_count(models.build(f"plain{depth}"), IMAGENET)
                == param_count(models.build(f"resnet{depth}"), IMAGENET) - projections)


def test_resnet_norm_none_adds_conv_biases(param_count):
    """Without BN every conv gets a bias and loses its BN's 2 x channels."""
    with_bn = param_count(models.build("resnet20", num_classes=10), CIFAR)
    without = param_count(models.build("resnet20", num_classes=10, norm="none"), CIFAR)
    bn_channels = 16 + 6 * 16 + 6 * 32 + 6 * 64
    assert without == with_bn - 2 * bn_channels + bn_channels


# GoogLeNet, Szegedy et al. 2015, Table 1: for each Inception module the input depth and the
# #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj columns, and its output depth.
TABLE1_INCEPTION = [
    # name, #1x1, #3x3red, #3x3, #5x5red, #5x5, proj, output depth column
    ("3a", 64, 96, 128, 16, 32, 32, 256),
    ("3b", 128, 128, 192, 32, 96, 64, 480),
    ("4a", 192, 96, 208, 16, 48, 64, 512),
    ("4b", 160, 112, 224, 24, 64, 64, 512),
    ("4c", 128, 128, 256, 24, 64, 64, 512),
    ("4d", 112, 144, 288, 32, 64, 64, 528),
    ("4e", 256, 160, 320, 32, 128, 128, 832),
    ("5a", 256, 160, 320, 32, 128, 128, 832),
    ("5b", 384, 192, 384, 48, 128, 128, 1024),
]


def _conv(k: int, cin: int, cout: int) -> int:
    return k * k * cin * cout + cout


def _googlenet_table1_count(classes: int = 1000, aux: bool = True) -> int:
    """Sum over Table 1's rows, weights and biases: conv 7x7/2 64; conv 1x1 64 (#3x3 reduce of
    the 'convolution 3x3/1' row) and 3x3 192; the nine Inception modules; linear 1024 -> classes.
    Auxiliary heads (Sec. 5): 1x1 conv 128, FC 4*4*128 -> 1024, FC 1024 -> classes, on 4a
    (512 channels) and 4d (528)."""
    total = _conv(7, 3, 64) + _conv(1, 64, 64) + _conv(3, 64, 192)
    depth = 192
    outputs = {}
    for name, n1, r3, n3, r5, n5, proj, out_depth in TABLE1_INCEPTION:
        total += (_conv(1, depth, n1) + _conv(1, depth, r3) + _conv(3, r3, n3)
                  + _conv(1, depth, r5) + _conv(5, r5, n5) + _conv(1, depth, proj))
        depth = n1 + n3 + n5 + proj
        assert depth == out_depth, name  # the table's own consistency
        outputs[name] = depth
    total += 1024 * classes + classes
    if aux:
        for name in ("4a", "4d"):
            total += _conv(1, outputs[name], 128) + (4 * 4 * 128 * 1024 + 1024) + (
                1024 * classes + classes)
    return total


@pytest.mark.parametrize("aux", [True, False])
def test_googlenet_matches_table1(param_count, aux):
    expected = _googlenet_table1_count(aux=aux)
    assert param_count(models.build("googlenet", aux_heads=aux), IMAGENET) == expected
    assert expected == (13_378_280 if aux else 6_998_552)  # the numbers the docstring quotes


def _googlenet_torchvision_count(classes: int = 1000, aux: bool = True) -> int:
    """Table 1 as torchvision builds it: every convolution without bias but with a batch norm
    (scale and shift), 3x3 instead of 5x5 in the third branch; aux heads as above."""
    def conv_bn(k: int, cin: int, cout: int) -> int:
        return k * k * cin * cout + 2 * cout

    total = conv_bn(7, 3, 64) + conv_bn(1, 64, 64) + conv_bn(3, 64, 192)
    depth, outputs = 192, {}
    for name, n1, r3, n3, r5, n5, proj, out_depth in TABLE1_INCEPTION:
        total += (conv_bn(1, depth, n1) + conv_bn(1, depth, r3) + conv_bn(3, r3, n3)
                  + conv_bn(1, depth, r5) + conv_bn(3, r5, n5) + conv_bn(1, depth, proj))
        depth = outputs[name] = out_depth
    total += 1024 * classes + classes
    if aux:
        for name in ("4a", "4d"):
            total += conv_bn(1, outputs[name], 128) + (4 * 4 * 128 * 1024 + 1024) + (
                1024 * classes + classes)
    return total


@pytest.mark.parametrize("aux, published", [(False, 6_624_904), (True, 13_004_888)])
def test_googlenet_torchvision_has_torchvisions_counts(param_count, aux, published):
    """torchvision's documented 6,624,904 parameters (its pretrained GoogLeNet, no aux heads) and
    13,004,888 with them, also derived from Table 1 with torchvision's changes."""
    assert _googlenet_torchvision_count(aux=aux) == published
    model = models.build("googlenet_torchvision", aux_heads=aux)
    assert param_count(model, IMAGENET) == published


def test_naive_inception_grows_channels(variables_of):
    """Fig. 2a: without reductions each module's output depth is n1 + n3 + n5 + its input's."""
    v = variables_of(models.build("googlenet", aux_heads=False, naive_inception=True),
                     (1, 224, 224, 3))["params"]
    depth = 192
    for name, n1, _, n3, _, n5, _, _ in TABLE1_INCEPTION:
        branch3 = v[f"inception{name}"]["branch3"]["conv"]["kernel"]
        assert branch3.shape == (5, 5, depth, n5), name
        depth = n1 + n3 + n5 + depth
    assert v["fc"]["kernel"].shape == (depth, 1000)
