"""experiments/relu_vs_tanh: the config and its two sweeps resolve, the model builds, the dataset
switch, and steps_to_error.py's arithmetic on tiny records."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from cnnjax import config as config_io
from cnnjax import models


@pytest.fixture
def config_module(experiment_module):
    return experiment_module("relu_vs_tanh/config.py")


@pytest.fixture
def analysis(experiment_module):
    return experiment_module("relu_vs_tanh/steps_to_error.py")


def test_main_sweep_is_each_activation_at_its_tuned_rate(sweep_configs, config_module):
    resolved = sweep_configs("relu_vs_tanh")
    assert [(c.model.activation, c.schedule.base_lr) for _, c in resolved] == [
        ("relu", config_module.TUNED_LR["relu"]), ("tanh", config_module.TUNED_LR["tanh"])]
    a, b = (c.to_dict() for _, c in resolved)
    for d in (a, b):
        d["model"].pop("activation"), d["schedule"].pop("base_lr")
    assert a == b  # nothing else differs, the seed included
    c = resolved[0][1]
    assert (c.model.name, c.optimizer.name, c.optimizer.momentum, c.seed) == ("smallcnn", "sgd",
                                                                              0.9, 0)
    assert (c.data.source, c.data.channels, c.log_every_steps) == (
        "idx:../shared/data/fashion_mnist", 1, 10)


def test_tune_sweep_is_the_grid(sweep_configs, config_module):
    resolved = sweep_configs("relu_vs_tanh", "tune")
    assert sorted((c.model.activation, c.schedule.base_lr) for _, c in resolved) == sorted(
        (a, lr) for a in ("relu", "tanh") for lr in config_module.LR_GRID)
    assert {c.num_steps for _, c in resolved} == {config_module.TUNE_STEPS}
    assert {c.num_steps for _, c in sweep_configs("relu_vs_tanh", "smoke")} == {20}


def test_every_point_applies_as_overrides(config_module):
    for arg in (None, "tune"):
        for point in config_module.get_sweep(arg):
            config = config_module.get_config(arg)
            config_io.apply_overrides(config, [f"{k}={v}" for k, v in point.items()])
            assert config.model.activation == point["model.activation"]


def test_cifar10_switch(config_module):
    c = config_module.get_config("cifar10")
    assert (c.data.source, c.data.channels, c.data.train_transform, c.data.eval_transform) == (
        "tfds:cifar10", 3, "pad_crop_flip", "none")
    assert len(c.data.mean) == len(c.data.std) == 3
    with pytest.raises(ValueError, match="comma-separated subset"):
        config_module.get_config("mnist")


@pytest.mark.parametrize("channels", [1, 3])
def test_the_model_builds(config_module, channels):
    c = config_module.get_config("cifar10" if channels == 3 else None)
    knobs = {k: v for k, v in c.model.to_dict().items() if k != "name"}
    model = models.build(c.model.name, num_classes=c.data.num_classes, **knobs)
    x = jax.ShapeDtypeStruct((2, 32, 32, c.data.channels), jnp.float32)
    out = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0], x)
    assert out.shape == (2, 10)


def test_steps_to_error_and_ratio(analysis):
    records = [{"step": 10, "train/top1": 0.5}, {"step": 20, "train/top1": 0.74},
               {"step": 30, "train/top1": 0.80}, {"step": 40, "train/top1": 0.70},
               {"step": 50, "train/top1": 0.90}]
    steps, errors = analysis.error_curve(records)
    assert steps == [10, 20, 30, 40, 50] and errors == pytest.approx([0.5, 0.26, 0.2, 0.3, 0.1])
    assert analysis.steps_to_error(steps, errors, 0.25) == 30  # the first crossing
    assert analysis.steps_to_error(steps, errors, 0.15) == 50
    assert analysis.steps_to_error(steps, errors, 0.05) is None
    assert analysis.ratio(60, 10) == 6.0 and analysis.ratio(None, 10) is None
