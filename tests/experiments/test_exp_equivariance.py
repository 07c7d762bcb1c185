"""experiments/equivariance/run.py: shifts, crops and the two measurements on tiny inputs, against
scipy's correlation and functions whose (non-)equivariance is known."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal


@pytest.fixture
def run(experiment_module):
    return experiment_module("equivariance/run.py")


def _valid_correlate(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """(N, H, W, 1) -> (N, H-k+1, W-k+1, 1) by scipy, the independent reference."""
    return np.stack([signal.correlate2d(img[..., 0], kernel, mode="valid")[..., None]
                     for img in x])


def test_shift_image_matches_a_loop(run):
    x = np.arange(2 * 4 * 5 * 1, dtype=np.float32).reshape(2, 4, 5, 1)
    for dy, dx in [(0, 0), (1, 0), (0, -2), (-1, 3), (3, -4)]:
        out = run.shift_image(x, dy, dx, fill=-1.0)
        for i in range(4):
            for j in range(5):
                si, sj = i - dy, j - dx
                want = x[:, si, sj] if 0 <= si < 4 and 0 <= sj < 5 else -1.0
                np.testing.assert_array_equal(out[:, i, j], want)


def test_shift_image_rejects_bad_input(run):
    with pytest.raises(ValueError, match="N, H, W, C"):
        run.shift_image(np.zeros((4, 4)), 1, 0)
    with pytest.raises(ValueError, match="smaller than the image"):
        run.shift_image(np.zeros((1, 4, 4, 1)), 4, 0)


def test_crop_and_relative_error(run):
    x = np.arange(36.0).reshape(1, 6, 6, 1)
    np.testing.assert_array_equal(run.crop(x, 2)[0, ..., 0], [[14, 15], [20, 21]])
    with pytest.raises(ValueError, match="margin"):
        run.crop(x, 3)
    assert run.relative_error(np.array([3.0, 4.0]), np.array([3.0, 0.0])) == 4 / 3
    assert run.relative_error(x, x) == 0.0


def test_convolution_is_equivariant_and_a_position_ramp_is_not(run):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 16, 16, 1))
    kernel = rng.normal(size=(3, 3))
    conv = lambda v: _valid_correlate(v, kernel)  # noqa: E731
    for s in range(4):
        assert run.equivariance_error(conv, x, s) < 1e-12
    ramp = np.arange(16.0)[None, :, None, None]
    assert run.equivariance_error(lambda v: v * ramp, x, 1) > 0.05


def test_pooling_is_equivariant_only_for_multiples_of_its_stride(run):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 16, 16, 1))
    pool = lambda v: v.reshape(v.shape[0], 8, 2, 8, 2, 1).max(axis=(2, 4))  # noqa: E731
    assert run.equivariance_error(pool, x, 2, jump=2) < 1e-12
    assert run.equivariance_error(pool, x, 4, jump=2) < 1e-12
    assert run.equivariance_error(pool, x, 1, jump=2) > 0.1


def test_global_sum_is_invariant_and_identity_is_not(run):
    x = np.zeros((2, 12, 12, 1))
    x[:, 4:8, 4:8] = np.random.default_rng(2).uniform(size=(2, 4, 4, 1))
    total = lambda v: v.sum(axis=(1, 2))  # noqa: E731 - content stays inside for shifts <= 4
    assert run.invariance_change(total, x, 3) < 1e-12
    assert run.invariance_change(lambda v: v, x, 0) == 0.0
    assert run.invariance_change(lambda v: v, x, 4) == pytest.approx(np.sqrt(2))


def test_changed_fraction(run):
    x = np.zeros((4, 8, 8, 1))
    x[:2, 3, 3] = 1.0  # two images whose 'class' is whether pixel (3, 3) is lit
    predict = lambda v: (v[:, 3, 3, 0] > 0).astype(int)  # noqa: E731
    assert run.changed_fraction(predict, x, 0) == 0.0
    assert run.changed_fraction(predict, x, 1) == 0.5
