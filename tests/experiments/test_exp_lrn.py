"""experiments/lrn: the six points resolve and differ only in norm and seed, the models build
(LRN adds no parameters), and seed_stats.py's arithmetic on tiny sweep folders."""

from __future__ import annotations

import json
import statistics

import pytest

from cnnjax import config as config_io
from cnnjax import models


@pytest.fixture
def config_module(experiment_module):
    return experiment_module("lrn/config.py")


@pytest.fixture
def stats(experiment_module):
    return experiment_module("lrn/seed_stats.py")


def test_sweep_is_norm_by_three_seeds(sweep_configs, config_module):
    resolved = sweep_configs("lrn")
    assert [(c.model.norm, c.seed) for _, c in resolved] == [
        (n, s) for n in ("none", "lrn") for s in (0, 1, 2)]
    dicts = [c.to_dict() for _, c in resolved]
    for d in dicts:
        d["model"].pop("norm"), d.pop("seed")
    assert all(d == dicts[0] for d in dicts)
    assert {c.num_steps for _, c in resolved} == {config_module.MAIN_STEPS}
    assert {c.num_steps for _, c in sweep_configs("lrn", "smoke")} == {20}


def test_points_apply_as_overrides_and_models_build(config_module, param_count):
    counts = set()
    for point in config_module.get_sweep():
        config = config_module.get_config()
        config_io.apply_overrides(config, [f"{k}={v}" for k, v in point.items()])
        knobs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
        model = models.build(config.model.name, num_classes=config.data.num_classes, **knobs)
        counts.add(param_count(model, (1, 32, 32, config.data.channels)))
    assert len(counts) == 1  # LRN has no parameters
    assert config_module.get_config("cifar10").data.channels == 3


def _point(root, name, overrides, top1s):
    folder = root / name
    folder.mkdir()
    (folder / "sweep_point.json").write_text(json.dumps({"overrides": overrides}))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"step": 100 * (i + 1), "eval/top1": v}) + "\n" for i, v in enumerate(top1s)))


def test_seed_stats_on_a_tiny_sweep(stats, tmp_path):
    _point(tmp_path, "a", {"model.norm": "none", "seed": 0}, [0.5, 0.90])
    _point(tmp_path, "b", {"model.norm": "none", "seed": 1}, [0.88])
    _point(tmp_path, "c", {"model.norm": "lrn", "seed": 0}, [0.91])
    errors = stats.final_errors(tmp_path)
    assert errors["none"] == pytest.approx({0: 0.10, 1: 0.12})  # the last evaluation counts
    assert errors["lrn"] == pytest.approx({0: 0.09})
    mean, sd = stats.mean_and_spread([0.10, 0.12])
    assert mean == pytest.approx(0.11) and sd == pytest.approx(statistics.stdev([0.10, 0.12]))
    assert stats.mean_and_spread([0.3]) == (0.3, 0.0)
    text = stats.table(errors)
    assert "11.00% +- 1.41%" in text and "lrn - none: -2.00%" in text
    with pytest.raises(FileNotFoundError, match="run the sweep"):
        stats.final_errors(tmp_path / "a")
