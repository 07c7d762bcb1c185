"""A sweep point that training would refuse is refused when the sweep is planned - with --dry-run,
--slurm --dry-run and a real local sweep alike - before anything is written or submitted, in one line
naming the point (its index and name)."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

from cnnjax import cli

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "helpers" / "tiny_config.py"
MODES = {"dry run": ["--dry-run"], "slurm dry run": ["--slurm", "--dry-run"], "local run": []}


def sweep_file(tmp_path: pathlib.Path, points: list[dict]) -> str:
    path = tmp_path / "sw.py"
    path.write_text(textwrap.dedent(f"""
        from cnnjax.config import load_config

        def get_config(arg=None):
            return load_config({str(TINY)!r})

        def get_sweep():
            return {points!r}
        """))
    return str(path)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("point, expected", [
    ({"schedule.base_lr": -0.1},
     "sweep point 1 (schedule.base_lr=-0.1): config.schedule.base_lr=-0.1 is not accepted"),
    ({"data.source": "idx:no/such/folder"},
     "sweep point 1 (data.source=idx_no_such_folder): config.data.source: idx source: directory "
     "'no/such/folder' does not exist"),
    ({"model.dropout_rate": 1.5},  # found by the model itself: it is built (nothing allocated)
     "sweep point 1 (model.dropout_rate=1.5): config.model: "),
])
def test_a_point_training_would_refuse_is_refused_at_planning(tmp_path, capsys, monkeypatch, mode,
                                                              point, expected):
    monkeypatch.chdir(tmp_path)  # the missing folder is relative; nothing may appear here either
    config = sweep_file(tmp_path, [{"seed": 0}, point])
    out_dir = tmp_path / "out"
    assert cli.main(["train", config, "--sweep", "--workdir", str(out_dir), *MODES[mode]]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {expected}") and err.count("\n") == 1, err
    assert not out_dir.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["sw.py"]


def test_every_refused_point_is_named_at_once(tmp_path, capsys, monkeypatch):
    """Three bad points among good ones: three lines, one per point in the sweep's order, so that
    one planning shows everything to fix; nothing written."""
    monkeypatch.chdir(tmp_path)
    config = sweep_file(tmp_path, [{"seed": 0}, {"schedule.base_lr": -0.1}, {"seed": 1},
                                   {"data.source": "idx:no/such/folder"},
                                   {"model.dropout_rate": 1.5}])
    assert cli.main(["train", config, "--sweep", "--dry-run", "--workdir", str(tmp_path / "o")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "sweep point 1 (schedule.base_lr=-0.1)", "sweep point 3 (data.source=idx_no_such_folder)",
        "sweep point 4 (model.dropout_rate=1.5)"], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sw.py"]
