"""experiments/dilation/run.py: field sizes against closed forms, coverage against numpy
convolutions of the stacked dilated kernels."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def run(experiment_module):
    return experiment_module("dilation/run.py")


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 6])
def test_field_sizes_match_closed_forms(run, depth):
    one, two, exp = (run.field_sizes(run.dilations(s, depth))[-1] for s in run.SCHEMES)
    assert (one, two, exp) == (1 + 2 * depth, 1 + 4 * depth, 2 ** (depth + 1) - 1)


def _support_by_convolution(dils, kernel=3):
    """Nonzero taps of the composed 1-D kernel: each layer's all-ones kernel dilated by d."""
    total = np.ones(1)
    for d in dils:
        taps = np.zeros((kernel - 1) * d + 1)
        taps[::d] = 1.0
        total = np.convolve(total, taps)
    return set(np.flatnonzero(total).tolist()), total.size


@pytest.mark.parametrize("dils", [[1], [2], [2, 2], [2, 2, 2], [1, 2, 4, 8], [3, 1], [1, 1, 1]])
def test_support_and_coverage_against_numpy(run, dils):
    offsets, size = _support_by_convolution(dils)
    assert run.support(dils) == offsets
    assert run.field_sizes(dils)[-1] == size
    assert run.coverage(dils) == pytest.approx(len(offsets) / size)


def test_constant_dilation_two_sees_even_offsets_only(run):
    assert run.support([2, 2, 2]) == set(range(0, 13, 2))


def test_rows_have_equal_parameters_at_equal_depth(run):
    table = run.rows(4)
    for depth in range(1, 5):
        assert {r["weights_per_channel_pair"] for r in table if r["layers"] == depth} == {9 * depth}


def test_bad_scheme_and_depth(run):
    with pytest.raises(ValueError, match="scheme must be one of"):
        run.dilations("dilation 3", 2)
    with pytest.raises(ValueError, match="layers must be >= 1"):
        run.dilations(run.SCHEMES[0], 0)
