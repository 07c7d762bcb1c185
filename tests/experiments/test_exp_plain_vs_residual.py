"""experiments/plain_vs_residual: the eight points resolve and differ only in model and seed, each builds
with the parameter count of He et al.'s CIFAR networks (shortcuts of option A add none), the
dataset switch, and analyze.py's rules and figure on hand-written sweep folders."""

from __future__ import annotations

import math

import pytest
from helpers.sweeps import write_point, write_sweep
from scipy import stats as scipy_stats

from cnnjax import config as config_io
from cnnjax import models


def cifar_resnet_count(depth: int, channels: int, classes: int = 10) -> int:
    """6n+2 layers (Sec. 4.2): 3x3 conv 16 with BN, three stages of n two-conv blocks of 16, 32,
    64 filters (no conv biases, BN scale and shift per conv), FC from 64."""
    n = (depth - 2) // 6
    total = 9 * channels * 16 + 2 * 16
    cin = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += 9 * cin * width + 2 * width + 9 * width * width + 2 * width
            cin = width
    return total + 64 * classes + classes


@pytest.fixture
def config_module(experiment_module):
    return experiment_module("plain_vs_residual/config.py")


@pytest.fixture
def analysis(experiment_module):
    return experiment_module("plain_vs_residual/analyze.py")


def test_sweep_is_one_run_per_plain_net_three_per_resnet_depth_20_first(sweep_configs,
                                                                         config_module):
    resolved = sweep_configs("plain_vs_residual")
    assert [(c.model.name, c.seed) for _, c in resolved] == [
        ("plain20", 0), ("resnet20", 0), ("resnet20", 1), ("resnet20", 2),
        ("plain56", 0), ("resnet56", 0), ("resnet56", 1), ("resnet56", 2)]
    # The model block records each model's knobs: only the shortcut differs (plain: none).
    assert [c.model.shortcut for _, c in resolved][:2] == ["none", "identity_pad"]
    assert [c.model.shortcut for _, c in resolved][4:6] == ["none", "identity_pad"]
    dicts = [c.to_dict() for _, c in resolved]
    for d in dicts:
        d["model"].pop("name"), d["model"].pop("shortcut"), d.pop("seed")
    assert all(d == dicts[0] for d in dicts)
    c = resolved[0][1]
    assert (c.batch_size, c.optimizer.momentum, c.optimizer.weight_decay) == (128, 0.9, 1e-4)
    # He et al.: 0.1, divided by 10 at 32k and 48k of 64k steps, i.e. at 50% and 75%
    assert (c.schedule.name, c.schedule.base_lr, c.schedule.decay_factor) == ("piecewise", 0.1, 0.1)
    assert [b / c.num_steps for b in c.schedule.boundaries] == [0.5, 0.75]
    assert c.num_steps == config_module.MAIN_STEPS == pytest.approx(20 * config_module.EPOCH, abs=1)
    assert c.data.source == "idx:../shared/data/fashion_mnist"
    assert {c.num_steps for _, c in sweep_configs("plain_vs_residual", "smoke")} == {20}


@pytest.mark.parametrize("depth", [20, 56])
def test_models_build_with_he_et_al_parameter_counts(config_module, param_count, depth):
    counts = {}
    for kind in ("plain", "resnet"):
        config = config_module.get_config()
        config_io.apply_overrides(config, [f"model.name={kind}{depth}"])
        model = models.build(config.model.name, num_classes=config.data.num_classes)
        counts[kind] = param_count(model, (1, 32, 32, config.data.channels))
    # option A shortcuts are identities padded with zeros: no parameters
    assert counts["plain"] == counts["resnet"] == cifar_resnet_count(depth, channels=1)
    # Table 6's "0.27M" and "0.85M" on 3-channel CIFAR-10
    assert cifar_resnet_count(depth, channels=3) == {20: 269_722, 56: 853_018}[depth]


def test_cifar10_switch_and_bad_arg(config_module):
    c = config_module.get_config("cifar10")
    assert (c.data.source, c.data.channels, c.data.train_transform) == ("tfds:cifar10", 3, "pad_crop_flip")
    with pytest.raises(ValueError, match="comma-separated subset"):
        config_module.get_config("plain20")


def _write(root, runs: dict[tuple[str, int], tuple[float, float]], unfinished=()):
    """Points whose train/top1 is constant at 1 - train error and whose last eval/top1 is 1 - test
    error (percent), over 2 epochs of logs."""
    pts = []
    for (model, seed), (train, test) in runs.items():
        overrides = {"model.name": model, "seed": seed}
        name = f"{model},{seed}"
        records = [{"step": s, "train/top1": 1 - train / 100} for s in range(20, 940, 20)]
        records.append({"step": 920, "eval/top1": 1 - test / 100})
        cut = (model, seed) in unfinished  # stopped (killed) halfway
        write_point(root, name, records[:len(records) // 2] if cut else records, overrides,
                    num_steps=920, exit_code=None if cut else 0)
        pts.append((name, overrides))
    write_sweep(root, pts)


def test_analysis_degradation_and_deeper_resnet(analysis, tmp_path):
    runs = {("plain20", 0): (2.0, 8.0), ("plain56", 0): (6.0, 10.0),
            ("resnet20", 0): (1.0, 7.6), ("resnet56", 0): (0.4, 7.0),
            ("resnet20", 1): (1.2, 7.8), ("resnet20", 2): (0.8, 7.7),
            ("resnet56", 1): (0.5, 7.1), ("resnet56", 2): (0.3, 6.9)}
    _write(tmp_path / "sweep", runs)
    text = analysis.analyze(tmp_path / "sweep", tmp_path)
    # pooled s.d. of the ResNets' training errors: sqrt((0.08 + 0.02) / 4) = 0.158; bound 2.77 s
    sd = math.sqrt((0.08 + 0.02) / 4)
    assert f"training error, plain56 - plain20 (seed 0): +4.00 points (noise bound " \
           f"{1.96 * math.sqrt(2) * sd:.2f}" in text
    assert text.count("**reproduced**") == 3  # training and test degradation, deeper ResNet
    ref = scipy_stats.ttest_ind([7.0, 7.1, 6.9], [7.6, 7.8, 7.7], equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert f"[{ci.low:+.2f}, {ci.high:+.2f}]" in text
    assert (tmp_path / "figure.png").stat().st_size > 0


def test_analysis_reports_what_is_pending(analysis, tmp_path):
    _write(tmp_path / "sweep", {("plain20", 0): (2.0, 8.0), ("plain56", 0): (6.0, 10.0)},
           unfinished={("plain56", 0)})
    text = analysis.analyze(tmp_path / "sweep", tmp_path)
    assert "Not finished yet: plain56,0" in text and "| plain56 | pending |" in text
    assert "Degradation: pending" in text and "Deeper ResNet: pending" in text


def test_degradation_waits_for_the_preregistered_spread(analysis, tmp_path):
    """The rule's s.d. pools 3 + 3 ResNet seeds (4 df): with resnet20's alone (2 df) the verdict
    is pending, and says where the interim spread puts it."""
    _write(tmp_path / "sweep", {("plain20", 0): (2.0, 8.0), ("plain56", 0): (6.0, 10.0),
                                ("resnet20", 0): (1.0, 7.6), ("resnet20", 1): (1.2, 7.8),
                                ("resnet20", 2): (0.8, 7.7)})
    text = analysis.analyze(tmp_path / "sweep", tmp_path)
    lines = [line for line in text.splitlines() if line.startswith("- Degradation")]
    assert len(lines) == 2 and all(line.endswith(
        ": **pending** (the s.d. has 2 of its 4 degrees of freedom until every ResNet seed has "
        "run; by it so far: **reproduced**)") for line in lines), lines
    assert "noise bound 0.55 = 2.77 x 0.20" in lines[0]  # s.d. of 1.0, 1.2, 0.8


def test_out_folder_is_created_or_refused_in_one_line(analysis, tmp_path, capsys):
    """--out names a folder that need not exist yet; one that cannot be made (a file is in the
    way) is refused with one line, exit 2, before any analysis."""
    _write(tmp_path / "sweep", {("plain20", 0): (2.0, 8.0)})
    new = tmp_path / "new" / "deeper"
    assert analysis.main([str(tmp_path / "sweep"), "--out", str(new)]) == 0
    assert (new / "results.md").read_text().startswith("| model |")
    capsys.readouterr()
    (tmp_path / "a_file").write_text("")
    assert analysis.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "a_file" / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "a_file" in err, err
