"""experiments/lrn, pooling_vs_strided and googlenet_aux: both sweeps resolve to the preregistered
design (the arms x the rate grid on a separate seed; the arms x the seeds at the tuned rates, nothing
else differing), the models build with the parameters each arm should have, and compare_arms.py's
picks, intervals and verdicts on hand-written sweeps (against scipy's paired t interval)."""

from __future__ import annotations

import json

import pytest
from helpers.sweeps import write_point, write_sweep
from scipy import stats as scipy_stats

from cnnjax import config as config_io
from cnnjax import models
from cnnjax.errors import UserError

NAMES = ("lrn", "pooling_vs_strided", "googlenet_aux")


@pytest.fixture
def analysis(experiment_module):
    return experiment_module("compare_arms.py")


def _cfg(experiment_module, name):
    return experiment_module(f"{name}/config.py")


def _value(c, key):
    head, _, tail = key.rpartition(".")
    return c[head][tail] if head else c[tail]


def _rest(c, *keys):
    d = c.to_dict()
    for key in keys:
        head, _, tail = key.rpartition(".")
        (d[head] if head else d).pop(tail)
    return d


@pytest.fixture
def rates(experiment_module, tmp_path, monkeypatch):
    """Each experiment's tuned_lr.json replaced by one giving its arms two different rates."""
    def make(name):
        cfg = _cfg(experiment_module, name)
        path = tmp_path / f"{name}_tuned_lr.json"
        chosen = {str(arm): rate for arm, rate in zip(cfg.ARMS, cfg.LR_GRID[:2], strict=True)}
        path.write_text(json.dumps({"rates": chosen}))
        monkeypatch.setattr(cfg, "TUNED_LR_FILE", path)
        return cfg, chosen
    return make


@pytest.mark.parametrize("name", NAMES)
def test_tune_sweep_is_the_arms_by_the_grid_on_the_tuning_seed(module_sweep, experiment_module, name):
    cfg = _cfg(experiment_module, name)
    configs = module_sweep(cfg, "tune")
    assert sorted((str(_value(c, cfg.ARM_KEY)), c.schedule.base_lr) for c in configs) == sorted(
        (str(a), r) for a in cfg.ARMS for r in cfg.LR_GRID)
    assert {(c.seed, c.num_steps, c.schedule.name) for c in configs} == {
        (cfg.TUNE_SEED, cfg.TUNE_STEPS, "cosine")}
    assert cfg.TUNE_SEED not in cfg.SEEDS
    rest = [_rest(c, cfg.ARM_KEY, "schedule.base_lr") for c in configs]
    assert all(r == rest[0] for r in rest)


@pytest.mark.parametrize("name", NAMES)
def test_main_sweep_is_the_arms_by_the_seeds_at_the_tuned_rates(module_sweep, rates, name):
    cfg, chosen = rates(name)
    configs = module_sweep(cfg)
    assert [(str(_value(c, cfg.ARM_KEY)), c.schedule.base_lr, c.seed) for c in configs] == [
        (str(a), chosen[str(a)], s) for a in cfg.ARMS for s in cfg.SEEDS]
    assert {(c.num_steps, c.eval_every_steps, c.schedule.name) for c in configs} == {
        (cfg.MAIN_STEPS, cfg.MAIN_STEPS, "cosine")}  # decayed to the end; tested at the last step
    rest = [_rest(c, cfg.ARM_KEY, "schedule.base_lr", "seed") for c in configs]
    assert all(r == rest[0] for r in rest)
    assert {c.num_steps for c in module_sweep(cfg, "smoke")} == {20}


@pytest.mark.parametrize("name", NAMES)
def test_main_sweep_waits_for_its_rates_in_one_line(experiment_module, tmp_path, monkeypatch, name):
    cfg = _cfg(experiment_module, name)
    monkeypatch.setattr(cfg, "TUNED_LR_FILE", tmp_path / "missing.json")
    with pytest.raises(UserError, match="run the tuning sweep") as info:
        cfg.get_sweep()
    assert "\n" not in str(info.value)
    (tmp_path / "missing.json").write_text("{not json")
    with pytest.raises(UserError, match="not a tuning record"):
        cfg.get_sweep()
    (tmp_path / "missing.json").write_text(json.dumps({"rates": {str(cfg.ARMS[0]): 0.1}}))
    with pytest.raises(UserError, match=f"no rate for arm '{cfg.ARMS[1]}'"):
        cfg.get_sweep()


@pytest.mark.parametrize("name", NAMES)
def test_bad_arg_is_refused(experiment_module, name):
    with pytest.raises(ValueError, match="comma-separated subset"):
        _cfg(experiment_module, name).get_config("mnist")
    assert _cfg(experiment_module, name).get_config("cifar10").data.channels == 3


def _counts(cfg, param_count):
    counts = {}
    for arm in cfg.ARMS:
        config = cfg.get_config()
        config_io.apply_overrides(config, [f"{cfg.ARM_KEY}={arm}"])
        knobs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
        model = models.build(config.model.name, num_classes=config.data.num_classes, **knobs)
        counts[str(arm)] = param_count(model, (1, 32, 32, config.data.channels))
    return counts, config


def test_lrn_adds_no_parameters(experiment_module, param_count):
    counts, _ = _counts(_cfg(experiment_module, "lrn"), param_count)
    assert counts["none"] == counts["lrn"]


def test_strided_convolutions_add_their_two_layers(experiment_module, param_count):
    counts, c = _counts(_cfg(experiment_module, "pooling_vs_strided"), param_count)
    w1, w2 = c.model.widths[1], c.model.widths[3]
    assert counts["strided_conv"] - counts["max"] == (9 * w1 + 1) * w1 + (9 * w2 + 1) * w2


def test_aux_heads_add_parameters(experiment_module, param_count):
    counts, c = _counts(_cfg(experiment_module, "googlenet_aux"), param_count)
    assert counts["False"] < counts["True"] and c.model.norm == "batch"


# ---- compare_arms.py on hand-written sweeps ------------------------------------------------------

def _lrn_sweep(root, errors: dict[str, list[float]], *, finished: bool = True):
    pts = []
    for arm, values in errors.items():
        for seed, error in enumerate(values):
            overrides = {"model.norm": arm, "schedule.base_lr": 0.03, "seed": seed}
            name = f"{arm},{seed}"
            records = [{"step": 10, "train/loss": 1.0, "train/top1": 0.5},
                       {"step": 20, "eval/top1": 1 - error / 100}]
            write_point(root, name, records, overrides, num_steps=20 if finished else 40)
            pts.append((name, overrides))
    write_sweep(root, pts)


def test_main_analysis_paired_interval_and_verdict(experiment_module, analysis, tmp_path):
    cfg = _cfg(experiment_module, "lrn")
    none = [9.0, 9.4, 8.8, 9.1, 9.3, 9.2]
    lrn = [8.6, 9.1, 8.5, 8.9, 8.8, 8.7]
    _lrn_sweep(tmp_path / "sweep", {"none": none, "lrn": lrn})
    text = analysis.analyze_main(cfg, tmp_path / "sweep", tmp_path)
    ref = scipy_stats.ttest_rel(lrn, none).confidence_interval(0.95)
    assert f"[{ref.low:+.2f}, {ref.high:+.2f}]" in text and "paired over seeds [0, 1, 2, 3, 4, 5]" in text
    assert "**reproduced**" in text  # LRN lowers the error: the paper's direction
    assert (tmp_path / "figure.png").stat().st_size > 0


def test_main_analysis_equivalence_within_the_margin(experiment_module, analysis, tmp_path):
    cfg = _cfg(experiment_module, "lrn")
    none = [9.0, 9.4, 8.8, 9.1, 9.3, 9.2]
    lrn = [9.05, 9.38, 8.83, 9.08, 9.31, 9.22]
    _lrn_sweep(tmp_path / "sweep", {"none": none, "lrn": lrn})
    assert "**equivalent**" in analysis.analyze_main(cfg, tmp_path / "sweep", tmp_path)


def test_main_analysis_refuses_an_unfinished_sweep(experiment_module, analysis, tmp_path):
    _lrn_sweep(tmp_path / "sweep", {"none": [9.0], "lrn": [8.0]}, finished=False)
    code = analysis.main(["lrn", "main", str(tmp_path / "sweep"), "--out", str(tmp_path)])
    assert code == 2 and not (tmp_path / "results.md").exists()


def test_tune_analysis_picks_the_lowest_final_loss(experiment_module, analysis, tmp_path,
                                                   monkeypatch):
    cfg = _cfg(experiment_module, "pooling_vs_strided")
    monkeypatch.setattr(cfg, "TUNED_LR_FILE", tmp_path / "tuned_lr.json")
    root = tmp_path / "tune"
    pts = []
    final = {("max", 0.01): 0.30, ("max", 0.03): 0.20, ("max", 0.1): 0.25,
             ("strided_conv", 0.01): 0.22, ("strided_conv", 0.03): 0.21, ("strided_conv", 0.1): None}
    for (arm, rate), loss in final.items():
        overrides = {"model.pool": arm, "schedule.base_lr": rate}
        name = f"{arm},{rate}"
        # ten logs: only the last (a tenth of them) is scored, so the early 9.0s must not count
        records = [{"step": 10 * i, "train/loss": 9.0} for i in range(1, 10)]
        records.append({"step": 100, "train/loss": loss if loss is not None else float("nan")})
        write_point(root, name, records, overrides, num_steps=100, exit_code=0 if loss else 3)
        pts.append((name, overrides))
    write_sweep(root, pts)
    analysis.analyze_tune(cfg, root, tmp_path)
    assert json.loads((tmp_path / "tuned_lr.json").read_text())["rates"] == {
        "max": 0.03, "strided_conv": 0.03}
    assert "**0.2000**" in (tmp_path / "tune_results.md").read_text()
