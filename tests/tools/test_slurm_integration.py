"""A two-point sweep submitted to a real Slurm cluster with --slurm: both array tasks train, and a
second submission finds nothing left to do.

Runs only where `sbatch` is installed and the cluster answers (on a single machine, as root:
/work/shared/tools/local-slurm start); skips with the reason otherwise.
"""

import pathlib
import shutil
import subprocess
import textwrap
import time

import pytest

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


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_slurm_array_sweep_trains_every_point(tmp_path, capsys):
    problem = slurm_problem()
    if problem:
        pytest.skip(problem)
    config = tmp_path / "tiny_sweep.py"
    config.write_text(textwrap.dedent(f"""
        from cnnjax.sweeps_lib import product
        from cnnjax.train import config_io

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
    deadline = time.time() + 600
    while time.time() < deadline:
        queue = subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True)
        if queue.returncode == 0 and not queue.stdout.strip():
            break
        time.sleep(2)
    else:
        subprocess.run(["scancel", job])
        pytest.fail(f"array job {job} did not finish within 10 minutes")
    for seed in (0, 1):
        point = sweep_dir / f"seed={seed}"
        log = (point / "log.txt").read_text()
        assert f"array task {seed} of job {job}" in log
        assert max(r["step"] for r in read_metrics(point)) == 2, log[-2000:]
        assert (sweep_dir / "slurm" / f"{job}_{seed}.out").exists()
    assert cli.main(args) == 0
    assert "all 2 points have finished; nothing to submit" in capsys.readouterr().out
