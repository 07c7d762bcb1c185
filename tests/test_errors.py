"""User errors are one line (exit status 2); every other exception keeps its traceback; the
project's own errors all derive from UserError; CNNJAX_TRACEBACK=1 shows user errors' tracebacks."""

import ast
import pathlib

import jax.numpy as jnp
import pytest

from cnnjax import cli, errors
from cnnjax.config import ConfigError
from cnnjax.convert.io import ConvertError
from cnnjax.data.config import DataError
from cnnjax.models import ModelError
from cnnjax.ops.errors import OpError
from cnnjax.summary import _UsageError
from cnnjax.train.checkpoint import CheckpointMismatchError

PACKAGE = pathlib.Path(errors.__file__).parent
LENET = str(PACKAGE.parent / "configs" / "lenet5_mnist.py")


@pytest.mark.parametrize("cls", [ConfigError, ModelError, DataError, OpError, ConvertError,
                                 CheckpointMismatchError, _UsageError])
def test_project_errors_are_user_errors(cls):
    assert issubclass(cls, errors.UserError)
    assert errors.is_user_error(cls("x"))


def test_what_counts_as_the_users():
    assert errors.is_user_error(FileNotFoundError("f"))
    assert errors.is_user_error(errors.TrainingDivergedError("nan"))
    assert not errors.is_user_error(ValueError("a bare ValueError is a bug"))
    assert not errors.is_user_error(KeyError("k"))
    with pytest.raises(Exception) as info:  # JAX's own ValueError/TypeError: a bug, not the user's
        jnp.reshape(jnp.zeros(6), (4, 4))
    assert not errors.is_user_error(info.value)


def test_no_bare_value_error_is_raised_in_cnnjax():
    """Every error cnnjax raises for bad input is a UserError subclass: no `raise ValueError(...)`."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                    and getattr(node.exc.func, "id", None) == "ValueError"):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


def test_a_user_error_is_one_line_and_status_2(capsys, monkeypatch):
    monkeypatch.delenv(errors.TRACEBACK_ENV, raising=False)
    assert cli.main(["train", LENET, "--config.model.activation=nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err


def test_cnnjax_traceback_shows_the_traceback_of_user_errors(capsys, monkeypatch):
    monkeypatch.setenv(errors.TRACEBACK_ENV, "1")
    assert cli.main(["train", LENET, "--config.model.activation=nope"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "complete_model" not in err.splitlines()[-1]
    assert err.splitlines()[-1].startswith("error: ") and "activation must be one of" in err


def test_any_other_exception_keeps_its_traceback(monkeypatch):
    def broken(argv):
        raise ValueError("an internal bug")

    monkeypatch.setattr(cli, "train", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        cli.main(["train", LENET])
