"""cnnjax.models.introspect: multiply-adds against the papers and hand counts, receptive fields
against ops.receptive_field and published values, parameters per row."""

from __future__ import annotations

import time

import flax.linen as nn
import jax.numpy as jnp
import pytest

from cnnjax import models, ops
from cnnjax.models import introspect, layers
from cnnjax.models.vgg import CONFIGS

IMAGENET = (224, 224, 3)


@pytest.fixture(scope="module")
def vgg16():
    return introspect.summarize(models.build("vgg16"), IMAGENET)


def _row(summary, name):
    return next(r for r in summary.rows if r.name == name)


def test_vgg16_macs_from_table1(vgg16):
    """Sum over configuration D's layers of H*W*Cout*9*Cin, plus the three FC layers: 15.5 G
    (Simonyan & Zisserman's 15.5 billion multiply-adds for VGG-16 is also He et al.'s)."""
    size, cin, total = 224, 3, 0
    for v in CONFIGS["D"]:
        if v == "M":
            size //= 2
        else:
            total += size * size * v * 9 * cin
            cin = v
    total += 7 * 7 * 512 * 4096 + 4096 * 4096 + 4096 * 1000
    assert vgg16.macs == total
    assert round(total / 1e9, 1) == 15.5


@pytest.mark.parametrize(("name", "knobs", "low", "high"), [
    ("vgg19", {}, 19.55, 19.65),             # 19.6 G (He et al. 2016, Table / Fig. 3)
    ("resnet34", {}, 3.55, 3.7),             # 3.6 G (He et al. 2016, Sec. 3.4)
    ("resnet50", {}, 3.8, 4.12),             # torchvision's v1.5: 4.1 G
    ("resnet50", {"stride_in_3x3": False}, 3.8, 3.9),  # the paper's 3.8 G (Table 1)
    ("googlenet", {}, 1.45, 1.65),           # "1.5 billion multiply-adds" (Sec. 1)
])
def test_paper_multiply_adds(name, knobs, low, high):
    macs = introspect.summarize(models.build(name, **knobs), IMAGENET).macs
    assert low <= macs / 1e9 <= high


def test_lenet5_macs_by_hand():
    rows = {r.name: r for r in introspect.summarize(models.build("lenet5", num_classes=10),
                                                 (32, 32, 1)).rows}
    assert rows["c1"].macs == 28 * 28 * 6 * 5 * 5 * 1
    assert rows["c3"].macs == 10 * 10 * 16 * 5 * 5 * 6
    assert rows["c5"].macs == 120 * 5 * 5 * 16
    assert rows["f6"].macs == 120 * 84
    assert rows["output"].macs == 84 * 10
    assert rows["s2"].macs == 0  # pooling is not counted


def test_grouped_convs_count_per_group():
    """AlexNet conv2 with two towers: 27*27*256 outputs each see 5*5*48 inputs."""
    summary = introspect.summarize(models.build("alexnet"), IMAGENET)
    assert summary.rows[4].output_shape == (27, 27, 256)  # conv, LRN, pool, ..., conv2
    assert _row(summary, "features_4").macs == 27 * 27 * 256 * 5 * 5 * 48


def test_vgg16_receptive_fields_follow_the_chain(vgg16):
    """Every row of a plain chain agrees with ops.receptive_field over its layers; conv5_3 sees
    196 pixels and pool5 212, with jump 32 (Araujo et al. 2019, Table 1)."""
    chain = []
    for row in vgg16.rows:
        if row.kind == "Conv":
            chain.append(ops.LayerGeometry(3, 1, 1, 1))
        elif row.kind == "Pool":
            chain.append(ops.LayerGeometry(2, 2, 1, 0))
        else:
            assert row.field is None  # the classifier sees everything
            continue
        expected = ops.receptive_field(chain)[-1]
        assert row.field == (expected.size, expected.size), row.name
        assert row.jump == (expected.jump, expected.jump), row.name
    assert _row(vgg16, "features_28").field == (196, 196)
    assert _row(vgg16, "features_30").field == (212, 212)
    assert _row(vgg16, "features_30").jump == (32, 32)


def test_alexnet_receptive_fields():
    """conv1 11, pool1 19, conv2 51, pool2 67, conv3-5 99, 131, 163, pool5 195 (jump 32)."""
    summary = introspect.summarize(models.build("alexnet_torchvision"), IMAGENET)
    fields = [r.field[0] for r in summary.rows if r.field]
    assert fields == [11, 19, 51, 67, 99, 131, 163, 195]
    assert summary.rows[-4].jump == (32, 32)


def test_branches_keep_their_own_fields():
    """In ResNet-18's layer2_0 the projection (1x1/2) sees what the block's input sees (43),
    the residual path two 3x3 convs more (67); the sum sees the wider."""
    summary = introspect.summarize(models.build("resnet18"), IMAGENET)
    stem = ops.receptive_field([(7, 2, 1, 3), (3, 2, 1, 1)] + [(3, 1, 1, 1)] * 4)[-1]
    assert stem.size == 43
    assert _row(summary, "layer2_0/downsample_0").field == (43, 43)
    assert _row(summary, "layer2_0/downsample_0").jump == (8, 8)
    assert _row(summary, "layer2_0/conv2").field == (67, 67)
    assert _row(summary, "layer2_1/conv1").field == (83, 83)  # 67 + 2 * 8
    assert _row(summary, "fc").field is None


def test_option_a_shortcut_subsamples():
    """resnet20 (option A shortcuts, a strided slice where the maps shrink): the 3x3 stem and
    six 3x3 convs see 15 pixels; layer2_0's 3x3/2 and 3x3 convs 17 and 21 with jump 2; the
    next conv 25."""
    summary = introspect.summarize(models.build("resnet20", num_classes=10), (32, 32, 3))
    assert _row(summary, "layer1_2/conv2").field == (15, 15)
    assert _row(summary, "layer2_0/conv1").field == (17, 17)
    assert _row(summary, "layer2_0/conv2").field == (21, 21)
    assert _row(summary, "layer2_0/conv2").jump == (2, 2)
    assert _row(summary, "layer2_1/conv1").field == (25, 25)
    assert _row(summary, "layer2_1/conv1").jump == (2, 2)


def test_rows_account_for_every_parameter():
    summary = introspect.summarize(models.build("resnet50"), IMAGENET)
    assert sum(r.params for r in summary.rows) == summary.params == 25_557_032
    # Running mean and variance: as many as the BN scales and shifts.
    assert summary.state == sum(r.params for r in summary.rows if r.kind == "BatchNorm")
    assert sum(r.macs for r in summary.rows) == summary.macs
    assert [r.output_shape for r in summary.rows][-1] == (1000,)


def test_explicit_models_are_read_as_xla(vgg16):
    summary = introspect.summarize(models.build("vgg16", conv_impl="explicit"), IMAGENET)
    assert summary.macs == vgg16.macs


def test_dense_layer_comparison():
    assert introspect.dense_layer_weights((224, 224, 3)) == 150_528 * 1024 == 154_140_672


def test_vgg19_is_summarised_in_seconds():
    start = time.perf_counter()
    summary = introspect.summarize(models.build("vgg19"), IMAGENET)
    assert summary.params == 143_667_240
    assert time.perf_counter() - start < 30  # nothing allocated: ~1 s on an idle CPU


class _SliceNet(nn.Module):
    """conv 3x3 -> every second pixel -> conv 3x3: the second conv sees 3 + 2 * 2 = 7 pixels
    with jump 2; a 1x1 conv after a 2-pixel padding still sees 7."""

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = layers.Conv(4, 3, name="a")(x)
        x = x[:, ::2, ::2, :]
        x = layers.Conv(4, 3, name="b")(x)
        x = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
        return layers.Conv(4, 1, name="c")(x)


def test_strided_slices_and_padding():
    summary = introspect.summarize(_SliceNet(), (16, 16, 3))
    assert [(r.name, r.field, r.jump) for r in summary.rows] == [
        ("a", (3, 3), (1, 1)), ("b", (7, 7), (2, 2)), ("c", (7, 7), (2, 2))]
    # VALID convs: 16 -> 14, sliced to 7 -> 5, padded to 9.
    assert summary.macs == (14 * 14 * 4 * 27) + (5 * 5 * 4 * 36) + (9 * 9 * 4 * 4)
