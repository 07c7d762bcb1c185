"""experiments/pooling_vs_strided: the four points resolve, differ only in pool and seed, and
their models build with the parameter difference of the two stride-2 convolutions."""

from __future__ import annotations

import pytest

from cnnjax import config as config_io
from cnnjax import models


@pytest.fixture
def config_module(experiment_module):
    return experiment_module("pooling_vs_strided/config.py")


def test_sweep_is_pool_by_seed(sweep_configs, config_module):
    resolved = sweep_configs("pooling_vs_strided")
    assert [(c.model.pool, c.seed) for _, c in resolved] == [
        ("max", 0), ("max", 1), ("strided_conv", 0), ("strided_conv", 1)]
    dicts = [c.to_dict() for _, c in resolved]
    for d in dicts:
        d["model"].pop("pool"), d.pop("seed")
    assert all(d == dicts[0] for d in dicts)
    c = resolved[0][1]
    assert (c.model.name, c.model.activation, c.num_steps, c.schedule.base_lr) == (
        "smallcnn", "relu", config_module.MAIN_STEPS, 0.01)
    assert {c.num_steps for _, c in sweep_configs("pooling_vs_strided", "smoke")} == {20}


def test_points_apply_as_overrides_and_cifar10_switch(config_module):
    for point in config_module.get_sweep():
        config = config_module.get_config()
        config_io.apply_overrides(config, [f"{k}={v}" for k, v in point.items()])
        assert (config.model.pool, config.seed) == (point["model.pool"], point["seed"])
    assert config_module.get_config("cifar10").data.source == "tfds:cifar10"
    with pytest.raises(ValueError, match="comma-separated subset"):
        config_module.get_config("tune")


def test_strided_models_add_the_two_stride_convolutions(config_module, param_count):
    c = config_module.get_config()
    knobs = {k: v for k, v in c.model.to_dict().items() if k not in ("name", "pool")}
    shape = (1, 32, 32, c.data.channels)
    counts = {pool: param_count(models.build("smallcnn", num_classes=10, pool=pool, **knobs),
                                shape) for pool in ("max", "strided_conv")}
    w1, w2 = c.model.widths[1], c.model.widths[3]
    assert counts["strided_conv"] - counts["max"] == (9 * w1 + 1) * w1 + (9 * w2 + 1) * w2
