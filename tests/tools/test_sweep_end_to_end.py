"""A two-point sweep that really trains (two processes side by side), a re-run that skips both, and
summarize on the finished sweep."""

import csv
import json
import pathlib
import textwrap

import pytest
from helpers.data import write_cut_idx

from cnnjax import cli
from cnnjax.train.metrics import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "helpers" / "tiny_config.py"


def write_config(folder: pathlib.Path) -> str:
    path = folder / "tiny_sweep.py"
    path.write_text(textwrap.dedent(f"""
        from cnnjax.sweep import product
        from cnnjax import config as config_io

        def get_config(arg=None):
            c = config_io.load_config({str(TINY)!r})
            c.num_steps, c.eval_every_steps, c.checkpoint_every_steps = 2, 2, 2
            return c

        def get_sweep():
            return product(seed=[0, 1])
        """))
    return str(path)


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_two_point_sweep_runs_then_skips_then_summarizes(tmp_path, capsys):
    config = write_config(tmp_path)
    sweep_dir = tmp_path / "sweep"
    assert cli.main(["train", config, "--sweep", "--parallel", "2", "--workdir", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "2 points in" in out and "(0 finished, 0 to resume, 2 new)" in out
    assert "sweep done: 2 run (2 finished, 0 failed), 0 skipped as already finished" in out
    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    assert sweep["parallel"] == 2  # for status's ETA, with each point's length
    assert [(p["name"], p["num_steps"]) for p in sweep["points"]] == [("seed=0", 2), ("seed=1", 2)]
    for seed in (0, 1):
        point = sweep_dir / f"seed={seed}"
        records = read_metrics(point)
        assert max(r["step"] for r in records) == 2, (point / "log.txt").read_text()[-2000:]
        assert json.loads((point / "config.json").read_text())["seed"] == seed
        assert json.loads((point / "sweep_point.json").read_text())["overrides"] == {"seed": seed}
        assert "done: 2 steps" in (point / "log.txt").read_text()
        assert f"[{seed + 1}/2] seed={seed}: finished in" in out
    logs = {seed: (sweep_dir / f"seed={seed}" / "log.txt").read_text() for seed in (0, 1)}

    assert cli.main(["train", config, "--sweep", "--parallel", "2", "--workdir", str(sweep_dir)]) == 0
    out = capsys.readouterr().out
    assert "(2 finished, 0 to resume, 0 new)" in out
    assert "sweep done: 0 run (0 finished, 0 failed), 2 skipped as already finished" in out
    assert {s: (sweep_dir / f"seed={s}" / "log.txt").read_text() for s in (0, 1)} == logs

    assert cli.main(["summarize", str(sweep_dir)]) == 0
    with (sweep_dir / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["seed"] for r in rows] == ["0", "1"]
    for row in rows:
        records = read_metrics(sweep_dir / row["point"])
        last_eval = [r for r in records if "eval/top1" in r][-1]
        # shown in percent, rounded to 10 decimals (summarize.in_percent): within 1e-9 of 100x
        assert float(row["final eval/top1 (%)"]) == pytest.approx(100 * last_eval["eval/top1"],
                                                                   rel=0, abs=1e-9)
        assert int(row["last_step"]) == 2


def test_a_local_sweep_with_a_failing_point_exits_1_and_names_it(tmp_path, capsys):
    """IDX files whose headers promise images the files do not hold pass the config check (it reads
    only the headers) but fail in the point's run: the sweep says so as the point ends and again in
    its closing lines, and `sweep status` agrees. (A missing data folder is refused at planning.)"""
    cut = write_cut_idx(tmp_path / "cut_idx")  # 16 examples of 32x32 announced, none stored
    config = tmp_path / "bad_sweep.py"
    config.write_text(textwrap.dedent(f"""
        from cnnjax.config import load_config

        def get_config(arg=None):
            c = load_config({str(TINY)!r})
            c.model.activation = "relu"
            return c

        def get_sweep():
            return [{{"data.source": "idx:{cut}"}}]
        """))
    sweep_dir = tmp_path / "sweep"
    assert cli.main(["train", str(config), "--sweep", "--workdir", str(sweep_dir)]) == 1
    out = capsys.readouterr().out
    name = f"data.source=idx_{str(cut).strip('/').replace('/', '_')}"
    log = sweep_dir / name / "log.txt"
    reason = ("user error (exit status 2) before logging any metrics: error: "
              f"{cut}/train-images-idx3-ubyte: header promises (16, 32, 32)")
    assert f"[1/1] {name}: FAILED after" in out and reason in out, out
    assert "sweep done: 1 run (0 finished, 1 failed)" in out
    assert f"  FAILED {name}: {reason}" in out and f"[see {log}]" in out
    assert cli.main(["sweep", "status", str(sweep_dir)]) == 1
    assert reason in capsys.readouterr().out
