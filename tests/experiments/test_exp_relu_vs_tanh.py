"""experiments/relu_vs_tanh: both sweeps resolve to the preregistered design (arms x rate grid on a
separate seed; arms x seeds at the tuned rates), the models build, and analyze.py's arithmetic
(windowed error, crossings, censored ratios, the interval and the verdict) on hand-written sweeps."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import pytest
from helpers.sweeps import write_point, write_sweep

from cnnjax import models
from cnnjax.errors import UserError


@pytest.fixture
def cfg(experiment_module):
    return experiment_module("relu_vs_tanh/config.py")


@pytest.fixture
def analysis(experiment_module):
    return experiment_module("relu_vs_tanh/analyze.py")


@pytest.fixture
def rates_file(cfg, tmp_path, monkeypatch):
    """A tuned_lr.json of the tuning step's form, in place of the recorded one."""
    path = tmp_path / "tuned_lr.json"
    rates = {f"{a},{i}": r for (a, i), r in zip(
        [(a, i) for a in cfg.ACTIVATIONS for i in cfg.INITS], (0.03, 0.1, 0.01, 0.3), strict=True)}
    path.write_text(json.dumps({"rates": rates}))
    monkeypatch.setattr(cfg, "TUNED_LR_FILE", path)
    return rates


def _without(c, *keys):
    d = c.to_dict()
    for key in keys:
        head, _, tail = key.rpartition(".")
        (d[head] if head else d).pop(tail)
    return d


def test_tune_sweep_is_every_arm_at_every_rate_on_its_own_seed(module_sweep, cfg):
    configs = module_sweep(cfg, "tune")
    assert sorted((c.model.activation, c.model.weight_init, c.schedule.base_lr) for c in configs) \
        == sorted((a, i, r) for a in cfg.ACTIVATIONS for i in cfg.INITS for r in cfg.LR_GRID)
    assert {(c.seed, c.num_steps) for c in configs} == {(cfg.TUNE_SEED, cfg.TUNE_STEPS)}
    assert cfg.TUNE_SEED not in cfg.SEEDS
    rest = [_without(c, "model.activation", "model.weight_init", "schedule.base_lr") for c in configs]
    assert all(r == rest[0] for r in rest)


def test_main_sweep_is_every_arm_by_seed_at_its_tuned_rate(module_sweep, cfg, rates_file):
    configs = module_sweep(cfg)
    got = [(c.model.activation, c.model.weight_init, c.schedule.base_lr, c.seed) for c in configs]
    assert got == [(a, i, rates_file[f"{a},{i}"], s) for a in cfg.ACTIVATIONS for i in cfg.INITS
                   for s in cfg.SEEDS]
    c = configs[0]
    assert (c.num_steps, c.schedule.name, c.batch_size, c.log_every_steps) == (
        cfg.MAIN_STEPS, "constant", 128, 10)
    assert cfg.MAIN_STEPS == pytest.approx(8 * cfg.EPOCH, abs=1)
    assert (c.data.source, c.model.name) == ("idx:../shared/data/fashion_mnist", "smallcnn")
    rest = [_without(c, "model.activation", "model.weight_init", "schedule.base_lr", "seed")
            for c in configs]
    assert all(r == rest[0] for r in rest)


def test_main_sweep_without_tuned_rates_is_one_line(cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(cfg, "TUNED_LR_FILE", tmp_path / "missing.json")
    with pytest.raises(UserError, match="run the tuning sweep") as info:
        cfg.get_sweep()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("init", ["he_normal", "alexnet"])
def test_the_models_build(cfg, init):
    c = cfg.get_config()
    knobs = {k: v for k, v in c.model.to_dict().items() if k != "name"} | {"weight_init": init}
    model = models.build(c.model.name, num_classes=c.data.num_classes, **knobs)
    x = jax.ShapeDtypeStruct((2, 32, 32, c.data.channels), jnp.float32)
    assert jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0], x).shape == (2, 10)


def test_error_curve_is_windowed_and_crossings_are_first(analysis):
    records = [{"step": 10 * (i + 1), "train/top1": v} for i, v in enumerate(
        [0.5, 0.7, 0.9, 0.9, 0.9, 0.9, 0.95])]
    steps, errors = analysis.error_curve(records, window=3)
    # 1 - mean of the last three logs (fewer at the start)
    assert errors == pytest.approx([0.5, 0.4, 0.3, 1 - 2.5 / 3, 0.1, 0.1, 1 - 2.75 / 3])
    assert analysis.steps_to(steps, errors, 0.3) == 30
    assert analysis.steps_to(steps, errors, 0.1) == 50
    assert analysis.steps_to(steps, errors, 0.05) is None


def _curve(drop_every: int, steps: int = 400) -> list[dict]:
    """train/top1 rising 0.01 per `drop_every` steps from 0.705, logged every 10 steps (half a
    point off every threshold, so that rounding cannot move a crossing)."""
    return [{"step": s, "train/top1": min(0.705 + 0.01 * (s // drop_every), 0.995)}
            for s in range(10, steps + 1, 10)]


def _write(tmp_path, cfg, speeds: dict[tuple[str, int], int], steps: int = 400):
    root = tmp_path / "sweep"
    pts = []
    for (activation, seed), every in speeds.items():
        overrides = {"model.activation": activation, "model.weight_init": "he_normal",
                     "schedule.base_lr": 0.03, "seed": seed}
        name = f"{activation},{seed}"
        write_point(root, name, _curve(every, steps), overrides, num_steps=steps)
        pts.append((name, overrides))
    write_sweep(root, pts)
    return root


def test_main_analysis_ratios_interval_and_verdict(cfg, analysis, tmp_path, monkeypatch):
    monkeypatch.setattr(analysis.cfg, "WINDOW", 1)
    monkeypatch.setattr(analysis.cfg, "THRESHOLDS", (0.25, 0.2))
    # ReLU gains 1 point every 10 steps, tanh every 20, 30 or 40: at 25% error (top1 0.75, five
    # points up) ReLU needs 50 steps, tanh 100, 150, 200; at 20%: 100 against 200, 300, 400.
    root = _write(tmp_path, cfg, {("relu", 0): 10, ("relu", 1): 10, ("relu", 2): 10,
                                  ("tanh", 0): 20, ("tanh", 1): 30, ("tanh", 2): 40}, steps=400)
    text = analysis.analyze_main(root, tmp_path)
    rows = [r for r in text.splitlines() if r.startswith("| he_normal")]
    assert "| 50 / 50 / 50 | 100 / 150 / 200 |" in rows[0]
    logs = [math.log(2), math.log(3), math.log(4)]
    mean = sum(logs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 2)
    half = 4.302653 * sd / math.sqrt(3)  # t(0.975, 2 df)
    assert f"{math.exp(mean):.2f}x" in rows[0]
    assert f"{math.exp(mean - half):.2f}x - {math.exp(mean + half):.2f}x" in rows[0]
    assert "judged at 20%" in text and "**reproduced**" in text
    assert (tmp_path / "figure.png").stat().st_size > 0 and (tmp_path / "results.md").is_file()


def test_a_tanh_run_that_never_gets_there_is_a_lower_bound(cfg, analysis, tmp_path, monkeypatch):
    monkeypatch.setattr(analysis.cfg, "WINDOW", 1)
    monkeypatch.setattr(analysis.cfg, "THRESHOLDS", (0.2,))
    root = _write(tmp_path, cfg, {("relu", 0): 10, ("tanh", 0): 100}, steps=400)
    text = analysis.analyze_main(root, tmp_path)
    assert "| 100 | >400 | >=4.00x |" in text


def _stuck(steps: int = 400) -> list[dict]:
    return [{"step": s, "train/top1": 0.1} for s in range(10, steps + 1, 10)]


def test_relu_that_never_learns_judged_at_25_percent_with_upper_bounds(cfg, analysis, tmp_path,
                                                                       monkeypatch):
    """ReLU stuck at chance in every seed, tanh at 25% error after 50-70 steps: the ratios are upper
    bounds (ReLU counted at its last step, 400) and still below 1, so the verdict stands."""
    monkeypatch.setattr(analysis.cfg, "WINDOW", 1)
    monkeypatch.setattr(analysis.cfg, "THRESHOLDS", (0.25, 0.2))
    root = tmp_path / "sweep"
    pts = []
    for seed, every in enumerate((10, 12, 14)):
        for activation, records in (("relu", _stuck()), ("tanh", _curve(every))):
            overrides = {"model.activation": activation, "model.weight_init": "he_normal",
                         "schedule.base_lr": 0.03, "seed": seed}
            write_point(root, f"{activation},{seed}", records, overrides, num_steps=400)
            pts.append((f"{activation},{seed}", overrides))
    write_sweep(root, pts)
    text = analysis.analyze_main(root, tmp_path)
    assert "| he_normal | 25% | >400 / >400 / >400 | 50 / 60 / 70 | <=" in text
    assert "judged at 25%" in text and "**contradicted**" in text


def test_bounds_never_fake_a_verdict(analysis):
    """A lower-bound ratio cannot contradict, an upper-bound one cannot reproduce, and bounds both
    ways leave it inconclusive: rows built from fabricated runs."""
    from cnnjax.sweep.compare import Run

    def run(records):
        return Run("r", {}, records, "finished")

    relu_fast = {s: run(_curve(10)) for s in range(3)}
    tanh_never = {s: run(_stuck()) for s in range(3)}
    row = analysis.ratio_row("he_normal", 0.25, relu_fast, tanh_never)
    assert row["bound"] == ">=" and row["verdict"] == "reproduced"
    row = analysis.ratio_row("he_normal", 0.25, tanh_never, relu_fast)  # swapped: ReLU never
    assert row["bound"] == "<=" and row["verdict"] == "contradicted"
    mixed_relu = {0: run(_stuck()), 1: run(_curve(10)), 2: run(_curve(10))}
    mixed_tanh = {0: run(_curve(10)), 1: run(_stuck()), 2: run(_stuck())}
    row = analysis.ratio_row("he_normal", 0.25, mixed_relu, mixed_tanh)
    assert row["bound"] == "" and row["verdict"] == "inconclusive"
    assert "ratio" not in analysis.ratio_row("he_normal", 0.25, tanh_never, tanh_never)


def test_unfinished_sweep_is_refused(cfg, analysis, tmp_path):
    root = tmp_path / "sweep"
    overrides = {"model.activation": "relu", "model.weight_init": "he_normal",
                 "schedule.base_lr": 0.03, "seed": 0}
    write_point(root, "p", _curve(10, 100), overrides, num_steps=400, exit_code=None)
    write_sweep(root, [("p", overrides)])
    assert analysis.main(["main", str(root), "--out", str(tmp_path)]) == 2


def test_tune_analysis_picks_the_fastest_rate_per_arm(cfg, analysis, tmp_path, monkeypatch):
    monkeypatch.setattr(analysis.cfg, "TUNED_LR_FILE", tmp_path / "tuned_lr.json")
    root = tmp_path / "tune"
    pts = []
    for activation, init in [(a, i) for a in cfg.ACTIVATIONS for i in cfg.INITS]:
        for rate, every in zip(cfg.LR_GRID, (40, 10, 20, 30), strict=True):
            overrides = {"model.activation": activation, "model.weight_init": init,
                         "schedule.base_lr": rate}
            name = f"{activation},{init},{rate}"
            diverged = activation == "tanh" and rate == 0.03
            write_point(root, name, _curve(every, 200), overrides, num_steps=200,
                        exit_code=3 if diverged else 0)
            pts.append((name, overrides))
    write_sweep(root, pts)
    text = analysis.analyze_tune(root, tmp_path)
    rates = json.loads((tmp_path / "tuned_lr.json").read_text())["rates"]
    # 0.03 learns fastest, except where it diverged (tanh): then 0.1
    assert rates == {f"{a},{i}": 0.03 if a == "relu" else 0.1
                     for a in cfg.ACTIVATIONS for i in cfg.INITS}
    assert "failed" in text
