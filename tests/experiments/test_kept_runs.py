"""Runs kept in experiments/NAME/runs/ are what they claim to be.

An experiment too long for one sitting (plain_vs_residual: about 7 hours of a 2-core CPU) trains in
experiments/NAME/runs/, and each point's records are committed once it has finished, so that its
runs outlive the machine they trained on: a sweep into that folder on a fresh clone skips them, and
the analysis reads them. Each kept folder must be a point of NAME's sweep, trained with the config
that point resolves to now, to its last step; git keeps its records, never its checkpoints.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import pytest

from cnnjax import config as config_io
from cnnjax.sweep import plan, points, status
from cnnjax.train.metrics import read_metrics
from cnnjax.train.workdir import read_saved_config

REPO = pathlib.Path(__file__).resolve().parents[2]
GIT = shutil.which("git") is not None and (REPO / ".git").exists()


def kept_folders() -> list[pathlib.Path]:
    """The committed run folders (in a checkout that is training, the runs under way are not kept
    yet); without git, every run folder there is."""
    if not GIT:
        return sorted(p.parent for p in REPO.glob("experiments/*/runs/*/config.json"))
    listed = subprocess.run(["git", "ls-files", "--", "experiments/*/runs/*/config.json"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    return sorted((REPO / p).parent for p in listed)


KEPT = kept_folders()
IGNORED = ("checkpoints/0/x", "tensorboard/events", "run.lock", "running.json")


def kept_run_problems(folder: pathlib.Path, config_file: pathlib.Path) -> list[str]:
    """What is wrong with the kept run in `folder` of the sweep of `config_file`, one line each."""
    point = json.loads((folder / "sweep_point.json").read_text())["overrides"]
    sweep = plan.load_points(str(config_file))
    if point not in sweep:
        return [f"{folder.name}: not a point of {config_file}'s sweep"]
    problems = []
    if points.point_name(point) != folder.name:
        problems.append(f"{folder.name}: the point's folder is {points.point_name(point)}")
    # the point's config as the sweep resolves it (its override formatting and checks)
    now = plan.validated_config(config_io.load_config(str(config_file)), [], point, 0, folder.name)
    now = json.loads(json.dumps(now.to_dict(), default=list))
    saved = read_saved_config(folder)
    if saved != now:
        changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        problems.append(f"{folder.name}: trained with another config ({', '.join(changed)} differ)")
    if not status.is_finished(read_metrics(folder), int(now["num_steps"]), float(now["num_epochs"])):
        problems.append(f"{folder.name}: its metrics stop before the last step")
    return problems


@pytest.mark.parametrize("folder", KEPT, ids=[f"{p.parts[-3]}/{p.name}" for p in KEPT])
def test_kept_run_is_a_finished_point_of_its_sweep(folder, shared_data):
    assert kept_run_problems(folder, folder.parents[1] / "config.py") == []


def test_a_kept_run_of_another_recipe_or_cut_short_is_caught(tmp_path, shared_data):
    config_file = REPO / "experiments" / "plain_vs_residual" / "config.py"
    point = {"model.name": "resnet20", "seed": 1}
    folder = tmp_path / points.point_name(point)
    folder.mkdir()
    (folder / "sweep_point.json").write_text(json.dumps({"overrides": point}))
    config = config_io.resolve_config(str(config_file), ["model.name=resnet20", "seed=1"])
    config.schedule.base_lr = 0.05
    (folder / "config.json").write_text(json.dumps(config.to_dict(), default=list))
    last = config.num_steps - 20
    (folder / "metrics.jsonl").write_text(json.dumps({"step": last, "train/loss": 0.1}) + "\n")
    problems = kept_run_problems(folder, config_file)
    assert problems == [f"{folder.name}: trained with another config (schedule differ)",
                        f"{folder.name}: its metrics stop before the last step"]
    (folder / "sweep_point.json").write_text(json.dumps({"overrides": {**point, "seed": 7}}))
    assert kept_run_problems(folder, config_file) == [
        f"{folder.name}: not a point of {config_file}'s sweep"]


@pytest.mark.skipif(not GIT, reason="not a git checkout: .gitignore is git's")
def test_git_keeps_a_runs_records_not_its_checkpoints():
    run = "experiments/plain_vs_residual/runs/model.name=plain20,seed=0"
    for name in IGNORED:
        assert subprocess.run(["git", "check-ignore", "-q", "--no-index", f"{run}/{name}"],
                              cwd=REPO).returncode == 0, name
    for name in ("metrics.jsonl", "config.json", "environment.json", "sweep_point.json", "log.txt",
                 "exit_code"):
        assert subprocess.run(["git", "check-ignore", "-q", "--no-index", f"{run}/{name}"],
                              cwd=REPO).returncode == 1, name
