"""Weight files that say what they are: the record `convert import` writes, the knobs it fixes when
the weights are loaded (convert, eval --weights), torch's buffers kept through import and export, and
.npz files imported before records. Shapes only (jax.eval_shape): nothing here compiles a model."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.convert import abstract, assert_trees_equal, build, random_variables

from cnnjax import cli
from cnnjax.convert import (
    load_state_dict,
    load_weights,
    mapping,
    read_weights,
    record,
    save_state_dict,
    variables_to_torch,
)
from cnnjax.convert.cli import main

GOOGLENET = "googlenet_torchvision"


def error_line(run, argv, capsys) -> str:
    """The one stderr line of a command that must exit 2."""
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.fixture(scope="module")
def googlenet_state() -> dict:
    """torchvision GoogLeNet's state dict (without aux heads, as its pretrained model is used) with
    random values and 10 classes: nothing in it says whether transform_input is on."""
    template = abstract(GOOGLENET, num_classes=10)
    variables = random_variables(template, seed=11)
    variables["params"] = {k: v for k, v in variables["params"].items() if not k.startswith("aux")}
    variables["batch_stats"] = {k: v for k, v in variables["batch_stats"].items()
                                if not k.startswith("aux")}
    return variables_to_torch(variables, GOOGLENET)


def test_a_state_dict_that_cannot_tell_transform_input_is_refused_naming_the_flag(
        tmp_path, capsys, googlenet_state):
    source = save_state_dict(googlenet_state, tmp_path / "googlenet.safetensors")
    out = tmp_path / "g.npz"
    message = error_line(main, ["import", str(source), "--model", GOOGLENET, "--out", str(out)],
                         capsys)
    assert "--knob transform_input=True or --knob transform_input=False" in message
    assert not out.exists()
    with pytest.raises(ValueError, match="transform_input"):
        load_weights(source, GOOGLENET)


@pytest.mark.parametrize("transform_input", [False, True])
def test_the_import_records_the_knobs_and_loading_uses_them(tmp_path, capsys, googlenet_state,
                                                           transform_input):
    source = save_state_dict(googlenet_state, tmp_path / "googlenet.safetensors")
    out = tmp_path / "g.npz"
    assert main(["import", str(source), "--model", GOOGLENET, "--knob",
                 f"transform_input={transform_input}", "--out", str(out)]) == 0
    assert f"transform_input={transform_input}" in capsys.readouterr().out
    written, _, _ = record.split_imported(load_state_dict(out), str(out))
    assert written["model"] == GOOGLENET
    assert written["knobs"]["transform_input"] is transform_input
    assert written["knobs"]["num_classes"] == 10 and written["knobs"]["aux_heads"] is False

    module, variables = load_weights(out)  # no model name, no knobs: the record has them
    assert module == build(GOOGLENET, 10).clone(transform_input=transform_input, aux_heads=False)
    assert_trees_equal(variables, load_weights(source, GOOGLENET,
                                               transform_input=transform_input)[1])
    # The same knob again is no contradiction; the precision is free to choose.
    assert load_weights(out, GOOGLENET, transform_input=transform_input,
                        dtype="bfloat16")[0].dtype == "bfloat16"


def test_a_knob_or_model_contradicting_the_record_is_one_line_at_eval(tmp_path, capsys,
                                                                     googlenet_state):
    """eval --weights reads the record before any data: the contradiction is its only error."""
    source = save_state_dict(googlenet_state, tmp_path / "googlenet.safetensors")
    out = tmp_path / "g.npz"
    assert main(["import", str(source), "--model", GOOGLENET, "--knob", "transform_input=False",
                 "--out", str(out)]) == 0
    data = ["--data", f"folder:{tmp_path / 'no-such-images'}"]
    message = error_line(cli.main, ["eval", "--weights", str(out), "--knob",
                                    "transform_input=True", *data], capsys)
    assert message == (f"error: {out} holds {GOOGLENET} with transform_input=False (recorded at "
                       f"import); --knob transform_input=True contradicts it: drop the flag")
    message = error_line(cli.main, ["eval", "--weights", str(out), "--model", "resnet18", *data],
                         capsys)
    assert f"holds {GOOGLENET} weights" in message and "--model resnet18" in message
    message = error_line(cli.main, ["eval", "--weights", str(out), "--knob", "num_classes=1000",
                                    *data], capsys)
    assert "num_classes=10 (recorded at import)" in message


def test_num_batches_tracked_round_trips_through_import_and_export(tmp_path, capsys):
    """torch -> import -> export gives torch's state dict back bit for bit, batch norms' counters
    included (each a different count, as a model whose layers were frozen at different times)."""
    names = [k for k, e in mapping.entries(abstract("resnet20"), mapping.spec_for("resnet20")).items()
             if e.path is None]
    counts = {name: 1000 + 7 * i for i, name in enumerate(names)}
    state = variables_to_torch(random_variables(abstract("resnet20"), seed=12), "resnet20", counts)
    source = save_state_dict(state, tmp_path / "r20.safetensors")
    imported = tmp_path / "r20.npz"
    assert main(["import", str(source), "--model", "resnet20", "--out", str(imported)]) == 0
    for suffix in (".safetensors", ".npz"):
        exported = tmp_path / f"back{suffix}"
        assert main(["export", "--weights", str(imported), "--out", str(exported)]) == 0
        back = load_state_dict(exported)
        assert sorted(back) == sorted(state)
        for key, value in state.items():
            assert back[key].dtype == value.dtype and np.array_equal(back[key], value), key
    assert {k: int(back[k]) for k in names} == counts and len(names) == 19


def test_an_npz_imported_before_records_still_loads(tmp_path, capsys, googlenet_state):
    """The old import wrote the variables alone: the model comes from --model, and knobs a state
    dict cannot tell from --knob; re-importing it writes a record."""
    variables = random_variables(abstract("lenet5"), seed=13)
    legacy = tmp_path / "lenet5_old.npz"
    np.savez(legacy, **record.flatten(variables))
    module, loaded = load_weights(legacy, "lenet5")
    assert module.num_classes == 10
    assert_trees_equal(loaded, variables)
    assert "pass --model NAME" in error_line(
        cli.main, ["eval", "--weights", str(legacy), "--data", "folder:/nonexistent"], capsys)

    old_googlenet = tmp_path / "googlenet_old.npz"
    old = read_weights(googlenet_state, GOOGLENET, transform_input=False).variables
    np.savez(old_googlenet, **record.flatten(old))
    with pytest.raises(ValueError, match="pass --knob transform_input=True or"):
        load_weights(old_googlenet, GOOGLENET)
    renewed = tmp_path / "googlenet_new.npz"
    assert main(["import", str(old_googlenet), "--model", GOOGLENET, "--knob",
                 "transform_input=False", "--out", str(renewed)]) == 0
    module, loaded = load_weights(renewed)
    assert module.transform_input is False and module.num_classes == 10
    assert_trees_equal(loaded, old)
    # Export reads it as every tool does: the model and the knob a state dict cannot tell are
    # asked for, then it exports as the re-imported file does.
    message = error_line(main, ["export", "--weights", str(old_googlenet), "--out",
                                str(tmp_path / "x.safetensors")], capsys)
    assert "does not record its model" in message and "pass --model NAME" in message
    assert not (tmp_path / "x.safetensors").exists()
    for source, extra in ((old_googlenet, ["--model", GOOGLENET, "--knob", "transform_input=False"]),
                          (renewed, [])):
        out = tmp_path / f"{source.stem}.safetensors"
        assert main(["export", "--weights", str(source), *extra, "--out", str(out)]) == 0
        assert_trees_equal(read_weights(out, GOOGLENET, transform_input=False).variables, old)


@pytest.mark.parametrize("text", ["not json", '["a list"]', '{"model": "lenet5"}',
                                  '{"format": 99, "model": "lenet5", "knobs": {}}'])
def test_a_damaged_record_is_one_line(tmp_path, text):
    variables = random_variables(abstract("lenet5"), seed=14)
    path = tmp_path / "bad.npz"
    np.savez(path, **{record.RECORD_KEY: np.array(text), **record.flatten(variables)})
    with pytest.raises(ValueError) as info:
        load_weights(path)
    assert "bad.npz" in str(info.value) and "\n" not in str(info.value)
