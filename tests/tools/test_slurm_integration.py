"""Sweeps submitted to a real Slurm cluster with --slurm: a two-point sweep whose array tasks both
train (a second submission finds nothing left to do), and a sweep with a point that fails at model
build and one that diverges, which `sweep status` and `summarize` report as failed.

Runs only where `sbatch` is installed and the cluster answers (on a single machine, as root:
/work/shared/tools/local-slurm start); skips with the reason otherwise.
"""

import csv
import pathlib
import shutil
import subprocess
import textwrap
import time

import pytest
from helpers.data import write_cut_idx

from cnnjax import cli
from cnnjax.train.metrics import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "helpers" / "tiny_config.py"


def slurm_problem() -> str | None:
    """Why Slurm cannot be used here, or None when sbatch exists and a node is up."""
    if shutil.which("sbatch") is None or shutil.which("squeue") is None:
        return "Slurm is not installed (no sbatch/squeue on PATH)"
    try:
        states = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                                timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo did not answer ({type(e).__name__})"
    up = {"idle", "mix", "alloc", "comp"}
    if states.returncode != 0 or not up & set(states.stdout.split()):
        return f"no Slurm node is up (sinfo: {(states.stdout + states.stderr).strip()[:200]!r})"
    return None


def wait_for(job: str, seconds: float = 600) -> None:
    """Returns once the array job has left the queue; cancels it and fails the test after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        queue = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True)
        if queue.returncode == 0 and not queue.stdout.strip():
            return
        time.sleep(2)
    subprocess.run(["scancel", job])
    pytest.fail(f"array job {job} did not finish within {seconds:.0f} s")


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_slurm_array_sweep_trains_every_point(tmp_path, capsys):
    problem = slurm_problem()
    if problem:
        pytest.skip(problem)
    config = tmp_path / "tiny_sweep.py"
    config.write_text(textwrap.dedent(f"""
        from cnnjax.sweep import product
        from cnnjax import config as config_io

        def get_config(arg=None):
            c = config_io.load_config({str(TINY)!r})
            c.num_steps, c.eval_every_steps, c.checkpoint_every_steps = 2, 2, 2
            return c

        def get_sweep():
            return product(seed=[0, 1])
        """))
    sweep_dir = tmp_path / "sweep"
    args = ["train", str(config), "--sweep", "--slurm", "--workdir", str(sweep_dir)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    job = out.split("submitted array job ")[1].split(":")[0]
    wait_for(job)
    for seed in (0, 1):
        point = sweep_dir / f"seed={seed}"
        log = (point / "log.txt").read_text()
        assert f"array task {seed} of job {job}" in log
        assert max(r["step"] for r in read_metrics(point)) == 2, log[-2000:]
        assert (sweep_dir / "slurm" / f"{job}_{seed}.out").exists()
    assert cli.main(args) == 0
    assert "all 2 points have finished; nothing to submit" in capsys.readouterr().out


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_slurm_sweep_with_failing_points_is_reported_as_failed(tmp_path, capsys):
    """The issue's sweep: one point fails in its job (IDX files whose headers promise images they do
    not hold: a missing folder or a knob the model refuses is refused before submission), one
    diverges. The submission itself succeeds; `sweep status` and `summarize` then name both."""
    problem = slurm_problem()
    if problem:
        pytest.skip(problem)
    cut = write_cut_idx(tmp_path / "cut_idx")
    config = tmp_path / "failing_sweep.py"
    config.write_text(textwrap.dedent(f"""
        from cnnjax.sweep import chain
        from cnnjax import config as config_io

        def get_config(arg=None):
            c = config_io.load_config({str(TINY)!r})
            c.num_steps, c.eval_every_steps, c.checkpoint_every_steps = 2, 2, 2
            c.model.activation = "relu"
            return c

        def get_sweep():
            return chain({{"seed": 0}}, {{"data.source": "idx:{cut}"}},
                         {{"schedule.base_lr": 1e12}})
        """))
    sweep_dir = tmp_path / "sweep"
    assert cli.main(["train", str(config), "--sweep", "--slurm", "--workdir", str(sweep_dir)]) == 0
    job = capsys.readouterr().out.split("submitted array job ")[1].split(":")[0]
    wait_for(job)

    assert cli.main(["sweep", "status", str(sweep_dir)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("3 points: 1 finished, 2 failed, 0 running, 0 pending"), out
    good, bogus, diverged = out[1:]
    assert "seed=0" in good and "finished  step 2 of 2" in good
    assert "FAILED    user error (exit status 2) before logging any metrics: error: " in bogus
    assert f"{cut}/train-images-idx3-ubyte: header promises (16, 32, 32)" in bogus
    # exit status 3 from a trainer with its own divergence code, 2 and 'loss is nan' before that
    assert "FAILED    diverged (exit status " in diverged and "loss is nan" in diverged

    assert cli.main(["summarize", str(sweep_dir)]) == 1
    out = capsys.readouterr().out
    assert "2 of 3 points FAILED:" in out
    with (sweep_dir / "results.csv").open() as f:
        rows = {r["point"]: r for r in csv.DictReader(f)}
    assert len(rows) == 3, rows
    missing = next(name for name in rows if "cut_idx" in name)
    assert rows["seed=0"]["status"] == "finished" and rows["seed=0"]["last_step"] == "2"
    assert rows[missing]["status"].startswith("failed: user error")
    assert rows[missing]["last_step"] == ""
    assert rows["schedule.base_lr=1000000000000.0"]["status"].startswith("failed: diverged")
