"""Every `./launch.sh` command that a config docstring or a README documents still works: config
commands resolve (config file, :ARG and --config overrides, every sweep point for --sweep) without
training; `summary` commands print their table. A command whose config, argument, key or knob no
longer exists fails here."""

from __future__ import annotations

import pathlib
import re
import shlex

import pytest

from cnnjax import config as config_io
from cnnjax import summary
from cnnjax.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[1]
SOURCES = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (
    *REPO.glob("configs/*.py"), *REPO.glob("experiments/*/config.py"),
    *REPO.glob("experiments/*/README.md")))]
# A command runs to the end of its line, a closing backtick or a comment.
COMMAND = re.compile(r"\./launch\.sh ((?:configs|experiments)/[\w/]+\.py(?::[\w,]+)?"
                     r"|summary [^`#\n]*)([^`#\n]*)")


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for every config or summary command in SOURCES, each once."""
    seen, out = set(), []
    for source in SOURCES:
        for head, rest in COMMAND.findall((REPO / source).read_text()):
            command = re.sub(r"\[[^\]]*\]", "", f"{head}{rest}").replace("...", "").strip()
            if command not in seen:
                seen.add(command)
                out.append((source, command))
    return out


COMMANDS = documented_commands()


def test_the_docs_document_commands():
    configs = {c.split()[0].partition(":")[0] for _, c in COMMANDS if not c.startswith("summary")}
    assert {"configs/lenet5_mnist.py", "configs/vgg_imagenet.py", "configs/ablation_base.py",
            "experiments/relu_vs_tanh/config.py"} <= configs
    assert any(c.startswith("summary") for _, c in COMMANDS)


@pytest.mark.parametrize("source,command", COMMANDS, ids=[c for _, c in COMMANDS])
def test_documented_command_resolves(source, command, capsys):
    tokens = shlex.split(command)
    if tokens[0] == "summary":
        assert summary.main(tokens[1:]) == 0, capsys.readouterr().err
        assert "parameters" in capsys.readouterr().out
        return
    spec, rest = tokens[0], tokens[1:]
    overrides = [t[len("--config."):] for t in rest if t.startswith("--config.")]
    if "--sweep" not in rest:
        config = config_io.resolve_config(str(REPO / spec), overrides)
        assert config.model.name and config.data.source is not None
        return
    path, _, arg = spec.partition(":")
    try:
        points = config_io.load_module(str(REPO / path)).get_sweep(arg or None)
    except UserError as e:
        # A sweep at rates its tuning step picks: until then it must say so in one line, and the
        # same document must give the tuning sweep to run first.
        assert "run the tuning sweep" in str(e) and "\n" not in str(e), e
        tune = ",".join(["tune", *filter(None, arg.split(","))])
        assert f"./launch.sh {path}:{tune} --sweep" in (REPO / source).read_text(), source
        return
    assert points, f"{source}: {command} has no sweep points"
    for point in points:
        config = config_io.resolve_config(str(REPO / spec),
                                          [*overrides, *(f"{k}={v}" for k, v in point.items())])
        for key, value in point.items():
            node = config
            for part in key.split("."):
                node = node[part]
            assert node == value or list(node) == list(value)
