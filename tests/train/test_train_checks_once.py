"""The training path checks its config once and builds its model once before the first step; a model
knob value the module refuses is one line with nothing written, while any other exception of the
model (a bug) keeps its traceback."""

from __future__ import annotations

import pathlib

import pytest

from cnnjax import cli, models
from cnnjax.config import load_config, validate
from cnnjax.train.loop import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "helpers" / "tiny_config.py")


def counting(monkeypatch, module, name: str) -> list:
    """Wraps module.name so that each call appends to the returned list."""
    calls, real = [], getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return calls


def test_the_command_line_checks_the_config_once_and_builds_the_model_once(tmp_path, monkeypatch):
    # _check_run opens every config_problems call (the full check of values and relations);
    # models.build is how every part of cnnjax builds a model. Before cnnjax.config: 5 and 3.
    checks = counting(monkeypatch, validate, "_check_run")
    builds = counting(monkeypatch, models, "build")
    workdir = tmp_path / "w"
    assert cli.main(["train", TINY, "--workdir", str(workdir), "--config.num_steps=1"]) == 0
    assert (workdir / "config.json").is_file()
    assert (len(checks), len(builds)) == (1, 1)


def test_a_knob_value_the_model_refuses_is_one_line_and_writes_nothing(tmp_path, capsys):
    workdir = tmp_path / "w"
    assert cli.main(["train", TINY, "--workdir", str(workdir), "--config.model.dropout_rate=1.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dropout_rate must be a number in [0, 1)" in err
    assert not workdir.exists()


@pytest.mark.parametrize("error", [TypeError, ValueError])
def test_a_bug_in_the_model_keeps_its_traceback(tmp_path, monkeypatch, error):
    def broken(*args, **kwargs):
        raise error("a bug in the model: unsupported operand")

    config = load_config(TINY)
    config.num_steps = 1
    monkeypatch.setattr(models, "build", broken)
    workdir = tmp_path / "w"
    for run in (lambda: train_and_evaluate(config, workdir),
                lambda: cli.main(["train", TINY, "--workdir", str(workdir), "--config.num_steps=1"])):
        with pytest.raises(error) as info:
            run()
        assert type(info.value) is error, info.value  # not turned into a one-line config error
    assert not workdir.exists()
