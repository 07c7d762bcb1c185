"""Every command is discoverable: ./launch.sh with no arguments, --help and help list every command of
cnnjax.cli.COMMANDS (the one table) with its description; every command's --help exits 0 with
examples; a misspelt command, subcommand or benchmark is one line naming the closest one, exit 2."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from cnnjax import cli

REPO = pathlib.Path(__file__).resolve().parents[1]


def launch(*args: str, cwd: pathlib.Path = REPO) -> subprocess.CompletedProcess:
    """./launch.sh with this interpreter (CNNJAX_PYTHON: no venv bootstrap)."""
    env = {**os.environ, "CNNJAX_PYTHON": sys.executable}
    return subprocess.run(["bash", str(REPO / "launch.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def listed_commands(text: str) -> dict[str, str]:
    """{command as listed: its description} from the usage listing (lines '  NAME  description')."""
    rows = [line.strip().split(None, 1) for line in text.splitlines() if line.startswith("  ")]
    return {row[0]: row[1] for row in rows if len(row) == 2}


def test_no_arguments_help_and_dash_dash_help_list_every_command():
    expected = {("CONFIG.py[:ARG]" if name == "train" else name): c.description
                for name, c in cli.COMMANDS.items()}
    assert {"train", "test", "bench", "eval", "predict", "summary", "summarize", "sweep", "convert",
            "visualize", "help"} <= set(cli.COMMANDS)
    bare = launch()
    assert bare.returncode == 2 and bare.stdout == ""
    assert listed_commands(bare.stderr) == expected
    for args in (("--help",), ("help",), ("-h",)):
        out = launch(*args)
        assert out.returncode == 0, out.stderr
        assert listed_commands(out.stdout) == expected
        assert "later issue" not in out.stdout


def test_launch_sh_keeps_no_list_of_its_own():
    # the listing comes from cli.COMMANDS only: launch.sh names just the commands it runs itself
    text = (REPO / "launch.sh").read_text()
    others = [n for n, c in cli.COMMANDS.items() if c.module]
    assert others and not [n for n in others if f" {n} " in text or f"{n}|" in text or f"|{n}" in text]


def help_text(argv: list[str], capsys) -> str:
    """stdout of cnnjax.cli.main(argv) for a --help, which exits 0 (argparse) or returns 0."""
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


TOOL_HELPS = [[name, "--help"] for name, c in cli.COMMANDS.items() if c.module] + [
    ["train", "--help"], ["bench", "--help"], ["test", "--help"], ["help", "eval"],
    ["sweep", "status", "--help"], ["sweep", "summarize", "--help"],
    ["convert", "export", "--help"], ["convert", "import", "--help"]]


@pytest.mark.parametrize("argv", TOOL_HELPS, ids=" ".join)
def test_every_command_has_help_with_examples(argv, capsys):
    text = help_text(argv, capsys)
    # the lines under the 'examples:' heading, up to the next blank line
    block = text.partition("\nexample")[2].split("\n\n")[0]
    example_lines = [line.strip() for line in block.splitlines()[1:]]
    assert example_lines and all(line.startswith(("./launch.sh", "python -m cnnjax"))
                                 for line in example_lines), text
    if argv[0] in ("convert", "sweep") and len(argv) > 2:  # a subcommand's own examples
        assert all(argv[1] in line for line in example_lines), text


def test_train_help_tells_of_overrides_and_sweeps(capsys):
    text = help_text(["train", "--help"], capsys)
    assert "--config.KEY=VALUE" in text and "--sweep" in text
    sweep = help_text(["sweep", "--help"], capsys)
    assert "sweep status" in sweep and "sweep summarize" in sweep


def test_bench_lists_the_benchmark_scripts(capsys):
    names = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py"))
    assert names and cli.benchmarks() == names
    assert ", ".join(names) in help_text(["bench", "--help"], capsys)
    out = launch("bench")
    assert out.returncode == 2 and ", ".join(names) in out.stderr


@pytest.mark.parametrize("args, guess", [
    (("evl",), "'eval'"),
    (("sumary", "lenet5"), "'summary'"),
    (("sweep", "stat", "DIR"), "'status'"),
    (("convert", "exprt", "--workdir", "w", "--out", "x.pth"), "'export'"),
    (("bench", "opz"), "'ops'"),
])
def test_a_misspelt_name_says_which_was_meant_in_one_line(args, guess, tmp_path):
    out = launch(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert f"did you mean {guess}?" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing read as a config, nothing written


def test_sweep_still_takes_a_config_file_without_the_flag(tmp_path, capsys):
    # `sweep CONFIG.py` (with or without :ARG) is a sweep run, not a misspelt subcommand
    missing = tmp_path / "nope.py"
    for spec in (str(missing), f"{missing}:arg"):
        assert cli.main(["sweep", spec, "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert "subcommand" not in err and "nope.py" in err


@pytest.mark.parametrize("argv, says", [
    (["summarize"], "./launch.sh summarize: the following arguments are required: sweep_dir"),
    (["sweep", "status"], "./launch.sh sweep status: the following arguments are required"),
    (["summarize", "d", "--mode", "avg"], "argument --mode: invalid choice: 'avg'"),
    (["eval"], "./launch.sh eval: one of the arguments --workdir --weights is required"),
    (["convert"], "./launch.sh convert: the following arguments are required: command"),
    (["train", "c.py", "--workdir"], "argument --workdir: expected one argument"),
])
def test_a_usage_error_is_one_line_naming_the_help(argv, says, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and says in err, err
    assert err.rstrip().endswith("--help)")
