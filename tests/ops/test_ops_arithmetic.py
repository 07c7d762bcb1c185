"""conv_output_size, resolve_padding and receptive_field against paper numbers."""

from __future__ import annotations

import pytest

from cnnjax import ops
from cnnjax.ops import LayerGeometry


@pytest.mark.parametrize(("args", "expected"), [
    ((227, 11, 4, 0), 55),          # AlexNet conv1 (with the 227 input that makes Fig. 2 work)
    ((55, 3, 2, 0), 27),            # AlexNet overlapping max pool 3/2
    ((224, 7, 2, 3), 112),          # ResNet stem
    ((112, 3, 2, 1), 56),           # ResNet max pool
    ((32, 5, 1, 0), 28),            # LeNet-5 C1
    ((5, 3, 2, 1), 3),              # Dumoulin & Visin 2016, Fig. 2.6
    ((7, 3, 1, 0, 2), 3),           # Dumoulin & Visin 2016, Fig. 2.10 (dilation 2)
    ((10, 3, 3, (2, 0)), 4),        # asymmetric (lo, hi)
    ((9, 4, 2, "SAME"), 5),
    ((9, 4, 1, "FULL", 2), 15),     # (4 - 1) 2 + 1 = 7: 9 + 12 - 7 + 1
])
def test_conv_output_size(args, expected):
    assert ops.conv_output_size(*args) == expected


def test_resolve_padding_forms():
    assert ops.resolve_padding("valid", (3, 3)) == ((0, 0), (0, 0))
    assert ops.resolve_padding("SAME", (3, 4)) == ((1, 1), (1, 2))
    assert ops.resolve_padding("SAME", (3,), 1, 2, (8,)) == ((0, 1),)
    assert ops.resolve_padding("FULL", (3, 2), (2, 1)) == ((4, 4), (1, 1))
    assert ops.resolve_padding(2, (3, 3)) == ((2, 2), (2, 2))
    assert ops.resolve_padding(((1, 0), (0, 2)), (3, 3)) == ((1, 0), (0, 2))
    assert ops.resolve_padding((1, 2), (3,)) == ((1, 2),)


@pytest.mark.parametrize(("bad", "match"), [
    ("REFLECT", "VALID"), (-1, "non-negative"), (((1, 0),), "2 \\(lo, hi\\) pairs"),
    (((1, -1), (0, 0)), "non-negative"), (1.5, "int"),
])
def test_resolve_padding_rejects(bad, match):
    with pytest.raises(ValueError, match="padding") as info:
        ops.resolve_padding(bad, (3, 3))
    assert info.match(match)


def test_same_with_stride_needs_input_size():
    with pytest.raises(ValueError, match="input size"):
        ops.resolve_padding("SAME", (3, 3), 1, 2)


def test_conv_output_size_rejects_oversized_kernel():
    with pytest.raises(ValueError, match="exceeds"):
        ops.conv_output_size(4, 3, dilation=2)


def test_receptive_field_of_stacked_3x3_convs():
    # Simonyan & Zisserman 2015, Sec. 2.3: two 3x3 convs see 5x5, three see 7x7.
    rf = ops.receptive_field([LayerGeometry(3, padding=1)] * 3)
    assert [r.size for r in rf] == [3, 5, 7]
    assert all(r.jump == 1 and r.start == 0.0 for r in rf)


def test_receptive_field_of_alexnet_conv1_and_pool():
    rf = ops.receptive_field([(11, 4), (3, 2)])
    assert (rf[0].size, rf[0].jump, rf[0].start) == (11, 4, 5.0)
    assert (rf[1].size, rf[1].jump, rf[1].start) == (19, 8, 9.0)


def test_receptive_field_with_dilation_stride_and_padding():
    rf = ops.receptive_field([LayerGeometry(7, 2, 1, 3), LayerGeometry(3, 2, 1, 1),
                              LayerGeometry(3, 1, 2, 2)])
    assert [(r.size, r.jump, r.start) for r in rf] == [(7, 2, 0.0), (11, 4, 0.0), (27, 4, 0.0)]


def test_receptive_field_rejects_bad_layers():
    with pytest.raises(ValueError, match=r"layers\[1\]"):
        ops.receptive_field([(3,), (0, 1)])
