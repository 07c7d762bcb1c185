"""python -m cnnjax.convert: export a run's checkpoint, import a state dict, and their errors."""

from __future__ import annotations

import ml_collections
import numpy as np
import pytest
from helpers.convert import abstract, assert_trees_equal, random_variables

from cnnjax.config import default_config, save_config
from cnnjax.convert import load_state_dict, record, save_state_dict, variables_to_torch
from cnnjax.convert.cli import main
from cnnjax.train.checkpoint import Checkpoints


def resnet20_config() -> ml_collections.ConfigDict:
    config = default_config()
    config.model.name = "resnet20"
    return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A workdir as training leaves it: config.json, checkpoints at steps 5 and 9 of resnet20
    (random values, with batch-norm statistics), and metrics.jsonl in which step 5 scored best.
    Yields (workdir, {step: variables})."""
    workdir = tmp_path_factory.mktemp("run")
    save_config(resnet20_config(), workdir)
    (workdir / "metrics.jsonl").write_text('{"step": 5, "eval/top1": 0.6}\n'
                                           '{"step": 9, "eval/top1": 0.4}\n')
    ckpts = Checkpoints(workdir / "checkpoints", use_async=False)
    saved = {}
    for step in (5, 9):
        variables = random_variables(abstract("resnet20"), seed=step)
        ckpts.save(step, {"step": np.int32(step), **variables}, {"data_step": step})
        saved[step] = variables
    ckpts.close()
    return workdir, saved


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_export_latest(run, tmp_path, capsys, suffix):
    workdir, saved = run
    out = tmp_path / f"resnet20{suffix}"
    assert main(["export", "--workdir", str(workdir), "--out", str(out)]) == 0
    assert "step 9" in capsys.readouterr().out
    state = load_state_dict(out)
    expected = variables_to_torch(saved[9], "resnet20", num_batches_tracked=9)
    assert sorted(state) == sorted(expected)
    for key in expected:
        assert np.array_equal(state[key], expected[key]), key
    # Each batch norm was updated once per training step: torch's counter is the checkpoint's step.
    counters = {k: v for k, v in state.items() if k.endswith("num_batches_tracked")}
    assert len(counters) == 19 and all(v.dtype == np.int64 and v == 9 for v in counters.values())


@pytest.mark.parametrize("step", ["5", "best"])
def test_export_a_step(run, tmp_path, step):
    """--step N and --step best (the run's best_metric, eval/top1: step 5 scored 0.6, step 9 0.4)."""
    workdir, saved = run
    out = tmp_path / "step5.npz"
    assert main(["export", "--workdir", str(workdir), "--step", step, "--out", str(out)]) == 0
    assert np.array_equal(load_state_dict(out)["fc.weight"], saved[5]["params"]["fc"]["kernel"].T)
    assert int(load_state_dict(out)["bn1.num_batches_tracked"]) == 5


def error_line(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_export_errors(run, tmp_path, capsys):
    workdir, _ = run
    # --step means what it means in eval: the same resolver, the same words.
    from cnnjax import evaluate

    with pytest.raises(ValueError) as eval_error:
        evaluate.resolve_step("7", [5, 9], [], "eval/top1", "max")
    assert error_line(["export", "--workdir", str(workdir), "--step", "7", "--out",
                       str(tmp_path / "a.npz")], capsys) == f"error: {eval_error.value}"
    for text in ("bset", ""):
        assert "'best' or 'latest'" in error_line(
            ["export", "--workdir", str(workdir), "--step", text, "--out", str(tmp_path / "a.npz")],
            capsys)
    assert "config.json" in error_line(
        ["export", "--workdir", str(tmp_path), "--out", str(tmp_path / "a.npz")], capsys)
    save_config(resnet20_config(), tmp_path)
    assert "no checkpoints" in error_line(
        ["export", "--workdir", str(tmp_path), "--out", str(tmp_path / "a.npz")], capsys)
    assert ".safetensors" in error_line(
        ["export", "--workdir", str(workdir), "--out", str(tmp_path / "a.h5")], capsys)
    assert "go with --weights" in error_line(
        ["export", "--workdir", str(workdir), "--model", "resnet20", "--out",
         str(tmp_path / "a.npz")], capsys)
    assert not (tmp_path / "a.npz").exists()


def test_import(tmp_path, capsys):
    variables = random_variables(abstract("lenet5"), seed=6)
    source = save_state_dict(variables_to_torch(variables, "lenet5"), tmp_path / "lenet.safetensors")
    out = tmp_path / "variables.npz"
    assert main(["import", str(source), "--model", "lenet5", "--knob", "dtype=bfloat16",
                 "--out", str(out)]) == 0
    assert "lenet5" in capsys.readouterr().out
    with np.load(out) as archive:
        flat = {name: archive[name] for name in archive.files}
    assert "params/c1/kernel" in flat
    written, rebuilt, buffers = record.split_imported(flat, "variables.npz")
    assert_trees_equal(rebuilt, variables)
    assert buffers == {}  # lenet5 has no batch norm
    # The record states every knob that changes the computation; dtype only runs it in bfloat16.
    assert written == {"format": 1, "model": "lenet5", "knobs": {
        "num_classes": 10, "activation": "tanh", "norm": "none", "pool": "avg"}}


def test_import_errors(tmp_path, capsys):
    variables = random_variables(abstract("lenet5"), seed=6)
    source = save_state_dict(variables_to_torch(variables, "lenet5"), tmp_path / "lenet.npz")
    assert "--out" in error_line(["import", str(source), "--model", "lenet5", "--out",
                                  str(tmp_path / "v.txt")], capsys)
    assert "unknown model 'lenet6'" in error_line(
        ["import", str(source), "--model", "lenet6", "--out", str(tmp_path / "v.npz")], capsys)
    message = error_line(
        ["import", str(source), "--model", "resnet20", "--out", str(tmp_path / "v.npz")], capsys)
    assert "'fc.weight'" in message and "10 entries (c1.bias, c1.weight, c3.bias, c3.weight" in message
    assert "KEY=VALUE" in error_line(["import", str(source), "--model", "lenet5", "--knob",
                                      "dtype", "--out", str(tmp_path / "v.npz")], capsys)


def test_models_lists_the_supported_names(capsys):
    assert main(["models"]) == 0
    names = capsys.readouterr().out.split()
    assert {"resnet50", "vgg16_bn", "alexnet_torchvision", "lenet5"} <= set(names)


def test_launch_sh_reaches_the_converter_like_the_other_tools(tmp_path, capsys):
    """`./launch.sh convert ...` is `python -m cnnjax.cli convert ...`: the same commands, output and
    one-line errors as `python -m cnnjax.convert ...`."""
    from cnnjax import cli

    assert cli.main(["convert", "models"]) == 0
    through_cli = capsys.readouterr().out
    assert main(["models"]) == 0
    assert through_cli == capsys.readouterr().out and "resnet50" in through_cli.split()
    missing = tmp_path / "missing.pth"
    assert cli.main(["convert", "import", str(missing), "--model", "resnet18",
                     "--out", str(tmp_path / "v.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "missing.pth" in err and "\n" not in err
    assert not (tmp_path / "v.npz").exists()


@pytest.mark.parametrize("paper, variant", [("alexnet", "alexnet_torchvision"),
                                            ("googlenet", "googlenet_torchvision")])
def test_torchvision_weights_into_a_paper_model_name_the_variant_in_one_line(tmp_path, capsys,
                                                                             paper, variant):
    """torchvision's AlexNet (or GoogLeNet) state dict asked into the paper-true model."""
    state = variables_to_torch(random_variables(abstract(variant), seed=1), variant)
    source = save_state_dict(state, tmp_path / f"{variant}.safetensors")
    out = tmp_path / "v.npz"
    message = error_line(["import", str(source), "--model", paper, "--out", str(out)], capsys)
    assert message == (f"error: {paper} is the paper's architecture, which torchvision's weights do "
                       f"not fit; import torchvision's {paper} weights into {variant}")
    assert not out.exists()
    # (GoogLeNet's transform_input is not in a state dict: test_convert_record covers its absence.)
    knob = ["--knob", "transform_input=True"] if variant == "googlenet_torchvision" else []
    assert main(["import", str(source), "--model", variant, *knob, "--out", str(out)]) == 0
