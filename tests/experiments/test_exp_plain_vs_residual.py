"""experiments/plain_vs_residual: the four points resolve and differ only in the model, each builds
with the parameter count of He et al.'s CIFAR networks (shortcuts of option A add none), the
dataset switch, and curves.py's arithmetic and figure on tiny sweep folders."""

from __future__ import annotations

import json

import pytest

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
def curves(experiment_module):
    return experiment_module("plain_vs_residual/curves.py")


def test_sweep_is_the_four_models(sweep_configs, config_module):
    resolved = sweep_configs("plain_vs_residual")
    assert [c.model.name for _, c in resolved] == ["plain20", "plain56", "resnet20", "resnet56"]
    # The model block records each model's knobs: only the shortcut differs (plain: none).
    assert [c.model.shortcut for _, c in resolved] == ["none", "none", "identity_pad", "identity_pad"]
    dicts = [c.to_dict() for _, c in resolved]
    for d in dicts:
        d["model"].pop("name"), d["model"].pop("shortcut")
    assert all(d == dicts[0] for d in dicts)
    c = resolved[0][1]
    assert (c.seed, c.batch_size, c.optimizer.momentum, c.optimizer.weight_decay) == (
        0, config_module.BATCH, 0.9, 1e-4)
    assert c.schedule.name == "constant"
    assert c.schedule.base_lr == pytest.approx(0.1 * config_module.BATCH / 128)
    assert c.data.source == "idx:../shared/data/fashion_mnist"
    assert c.num_steps == config_module.MAIN_STEPS
    assert c.num_steps // c.eval_every_steps == config_module.EVALS
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


def _point(root, model, train_top1, evals):
    folder = root / model
    folder.mkdir()
    (folder / "sweep_point.json").write_text(json.dumps({"overrides": {"model.name": model}}))
    lines = [json.dumps({"step": 10 * (i + 1), "train/top1": v}) for i, v in enumerate(train_top1)]
    lines += [json.dumps({"step": s, "eval/top1": v}) for s, v in evals]
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_curves_on_a_tiny_sweep(curves, tmp_path):
    _point(tmp_path, "plain20", [0.5] + [0.9] * 5, [(30, 0.85), (60, 0.88)])
    _point(tmp_path, "plain56", [0.5] + [0.8] * 5, [(30, 0.80), (60, 0.84)])
    _point(tmp_path, "resnet20", [0.9] * 6, [(30, 0.86), (60, 0.89)])
    _point(tmp_path, "resnet56", [0.5] * 3 + [0.95] * 3, [(60, 0.90)])
    runs = curves.find_runs(tmp_path)
    assert curves.final_train_error(runs["plain20"]) == pytest.approx(0.1)  # last five logs
    assert curves.final_train_error(runs["resnet56"]) == pytest.approx(1 - (0.5 * 2 + 0.95 * 3) / 5)
    text = curves.table(runs)
    assert "| plain56 | 20.00% | 20.00% | 16.00% |" in text
    assert "| resnet56 | 23.00% |  | 10.00% |" in text  # no evaluation at step 30
    assert "plain56 - plain20: training error +10.00%, final test error +4.00%" in text
    assert "resnet56 - resnet20: training error +13.00%, final test error -1.00%" in text
    # windows of 100 steps: logs at 10..60 all fall in the first
    assert curves.window_means(runs["plain20"]) == pytest.approx({100: (0.5 + 0.1 * 5) / 6})
    assert curves.window_means(runs["plain20"], width=30) == pytest.approx({30: 0.5 / 3 + 0.2 / 3,
                                                                           60: 0.1})
    assert "| plain20 | 16.7% |" in text
    curves.plot(tmp_path / "figure.png", runs, "tiny")
    assert (tmp_path / "figure.png").stat().st_size > 1000
    (tmp_path / "resnet56" / "sweep_point.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.name=resnet56"):
        curves.find_runs(tmp_path)
