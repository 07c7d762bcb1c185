"""experiments/conv_impl: the sweep's two points and compare.py's arithmetic on tiny records."""

from __future__ import annotations

import pytest


@pytest.fixture
def compare(experiment_module):
    return experiment_module("conv_impl/compare.py")


def test_sweep_differs_only_in_conv_impl(sweep_configs):
    (pa, a), (pb, b) = sweep_configs("conv_impl")
    assert (pa, pb) == ({"model.conv_impl": "xla", "seed": 0},
                        {"model.conv_impl": "explicit", "seed": 0})
    da, db = a.to_dict(), b.to_dict()
    assert da["model"].pop("conv_impl") == "xla" and db["model"].pop("conv_impl") == "explicit"
    assert da == db
    assert (a.num_epochs, a.model.name, a.log_every_steps) == (2.0, "lenet5", 50)


def test_smoke_points_resolve(sweep_configs):
    assert {c.num_steps for _, c in sweep_configs("conv_impl", "smoke")} == {30}


def test_aligned_and_max_difference(compare):
    a = [{"step": 50, "train/loss": 1.0}, {"step": 100, "train/loss": 0.5},
         {"step": 150, "train/loss": 0.25}]
    b = [{"step": 50, "train/loss": 1.0}, {"step": 150, "train/loss": 0.5}]
    pairs = compare.aligned(a, b, "train/loss")
    assert pairs == [(50, 1.0, 1.0), (150, 0.25, 0.5)]
    assert compare.max_abs_difference(pairs) == 0.25
    assert compare.max_abs_difference([]) == 0.0


def test_median_steps_per_sec_skips_the_first_interval(compare):
    records = [{"step": s, "train/steps_per_sec": v}
               for s, v in [(50, 1.0), (100, 10.0), (150, 30.0), (200, 20.0)]]
    assert compare.median_steps_per_sec(records) == 20.0
    with pytest.raises(ValueError, match="at least two"):
        compare.median_steps_per_sec(records[:1])
