"""experiments/googlenet_aux: the points resolve and differ only in aux_heads and seed, the
models build with and without the heads' parameters, the dataset switch, and seed_stats.py's
arithmetic and figure on tiny sweep folders."""

from __future__ import annotations

import json
import statistics

import pytest

from cnnjax import config as config_io
from cnnjax import models


@pytest.fixture
def config_module(experiment_module):
    return experiment_module("googlenet_aux/config.py")


@pytest.fixture
def stats(experiment_module):
    return experiment_module("googlenet_aux/seed_stats.py")


def test_sweep_is_aux_heads_by_seeds(sweep_configs, config_module):
    resolved = sweep_configs("googlenet_aux")
    assert len(config_module.SEEDS) >= 2
    assert [(c.model.aux_heads, c.seed) for _, c in resolved] == [
        (a, s) for a in (False, True) for s in config_module.SEEDS]
    dicts = [c.to_dict() for _, c in resolved]
    for d in dicts:
        d["model"].pop("aux_heads"), d.pop("seed")
    assert all(d == dicts[0] for d in dicts)
    c = resolved[0][1]
    assert (c.model.name, c.model.norm, c.loss.aux_weight, c.batch_size) == (
        "googlenet_small", "batch", 0.3, 64)
    assert (c.schedule.name, c.schedule.base_lr, c.eval_every_steps) == (
        "cosine", 0.05, config_module.MAIN_STEPS)
    assert (c.data.source, c.data.channels) == ("idx:../shared/data/fashion_mnist", 1)
    assert {c.num_steps for _, c in resolved} == {config_module.MAIN_STEPS}
    assert {c.num_steps for _, c in sweep_configs("googlenet_aux", "smoke")} == {20}


def test_points_build_and_the_heads_add_parameters(config_module, param_count):
    counts = {}
    for point in config_module.get_sweep():
        config = config_module.get_config()
        config_io.apply_overrides(config, [f"{k}={v}" for k, v in point.items()])
        knobs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
        model = models.build(config.model.name, num_classes=config.data.num_classes, **knobs)
        counts[config.model.aux_heads] = param_count(model, (1, 32, 32, config.data.channels))
    # with batch norm the convolutions drop their biases and gain a scale and a shift
    assert counts[False] < counts[True]


def test_cifar10_switch_and_bad_arg(config_module):
    c = config_module.get_config("cifar10")
    assert (c.data.source, c.data.channels, c.model.name) == ("tfds:cifar10", 3, "googlenet_small")
    with pytest.raises(ValueError, match="comma-separated subset"):
        config_module.get_config("tune")


def _point(root, name, overrides, top1s, eval_top1, eval_loss=0.5):
    folder = root / name
    folder.mkdir()
    (folder / "sweep_point.json").write_text(json.dumps({"overrides": overrides}))
    lines = [json.dumps({"step": 10 * (i + 1), "train/top1": v}) for i, v in enumerate(top1s)]
    lines.append(json.dumps({"step": 10 * len(top1s), "eval/top1": eval_top1,
                             "eval/loss": eval_loss}))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_seed_stats_on_a_tiny_sweep(stats, tmp_path):
    _point(tmp_path, "a", {"model.aux_heads": False, "seed": 0}, [0.5] * 5 + [0.8] * 5, 0.90)
    _point(tmp_path, "b", {"model.aux_heads": False, "seed": 1}, [0.7] * 5, 0.88)
    _point(tmp_path, "c", {"model.aux_heads": True, "seed": 0}, [0.6] * 5, 0.91, 0.4)
    _point(tmp_path, "d", {"model.aux_heads": "true", "seed": 1}, [0.6] * 5, 0.90, 0.6)
    runs = stats.find_runs(tmp_path)
    assert sorted(runs) == [False, True] and sorted(runs[True]) == [0, 1]
    assert stats.train_error(runs[False][0]) == pytest.approx(0.2)  # the last five logs count
    text = stats.table(runs)
    assert "10.00% / 12.00% | 11.00% +- 1.41%" in text
    assert "9.00% / 10.00% | 9.50% +- 0.71%" in text
    assert "0.5000 +- 0.1414" in text  # the main head's test loss with the heads
    # paired: seed 0 -1 point, seed 1 -2 points
    assert "-1.00% / -2.00%; mean -1.50% +- 0.71%" in text
    assert stats.mean_and_spread([0.3]) == (0.3, 0.0)
    assert stats.mean_and_spread([0.1, 0.2])[1] == pytest.approx(statistics.stdev([0.1, 0.2]))
    stats.plot(tmp_path / "figure.png", runs, "tiny")
    assert (tmp_path / "figure.png").stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="run the sweep"):
        stats.find_runs(tmp_path / "a")
