"""The pure sweep helpers: products and zips of axes, point names, finished/unfinished, sbatch text."""

import itertools
import math
import os
import pathlib
import signal
import stat
import subprocess
import sys
import time

import ml_collections
import pytest

from cnnjax import config as config_io
from cnnjax.sweep import chain, points, product, slurm, status, zip_
from cnnjax.sweep.status import FINISHED, NEW, PARTIAL


def test_product_is_every_combination_with_the_last_axis_fastest():
    points = product(**{"model.activation": ["relu", "tanh"]}, seed=[0, 1, 2])
    expected = [{"model.activation": a, "seed": s}
                for a, s in itertools.product(["relu", "tanh"], [0, 1, 2])]
    assert points == expected


def test_zip_pairs_axes_and_product_of_a_zip_keeps_the_pairs():
    pairs = zip_(**{"model.activation": ["relu", "tanh"], "schedule.base_lr": [0.1, 0.05]})
    assert pairs == [{"model.activation": "relu", "schedule.base_lr": 0.1},
                     {"model.activation": "tanh", "schedule.base_lr": 0.05}]
    points = product(pairs, seed=[0, 1, 2])
    assert len(points) == 6
    assert {(p["model.activation"], p["schedule.base_lr"]) for p in points} == {
        ("relu", 0.1), ("tanh", 0.05)}
    assert [p["seed"] for p in points] == [0, 1, 2, 0, 1, 2]


def test_chain_concatenates_and_accepts_a_single_dict():
    points = chain(product(seed=[0, 1]), {"model.norm": "batch"})
    assert points == [{"seed": 0}, {"seed": 1}, {"model.norm": "batch"}]


@pytest.mark.parametrize("make, message", [
    (lambda: zip_(a=[1, 2], b=[1, 2, 3]), "one length"),
    (lambda: product(a=[]), "no values"),
    (lambda: product(a="relu"), "list of values"),
    (lambda: product(zip_(a=[1]), a=[2]), "two of the combined axes"),
    (lambda: chain([1, 2]), "override dicts"),
    (lambda: points.check_points([]), "no points"),
    (lambda: points.check_points([{"seed": 0}, {"seed": 0}]), "repeats point 0"),
    (lambda: points.check_points([{1: 0}]), "dotted config keys"),
])
def test_bad_sweeps_raise_one_line(make, message):
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert "\n" not in str(info.value)


def test_override_values_read_back_to_the_same_values_through_config_io():
    config = ml_collections.ConfigDict({"flag": False, "n": 1, "lr": 0.5, "name": "a",
                                        "shape": (1, 1), "maybe": None})
    values = {"flag": True, "n": 7, "lr": 1e-3, "name": "relu/x y", "shape": (3, 4), "maybe": 2.5}
    args = points.override_args(values)
    config_io.apply_overrides(config, [a[len("--config."):] for a in args])
    assert config.to_dict() == values


def test_point_names_are_deterministic_safe_and_distinct():
    point = {"model.activation": "relu", "seed": 0}
    assert points.point_name(point) == "model.activation=relu,seed=0"
    assert points.point_name(dict(point)) == points.point_name(point)
    assert points.point_name({}) == "default"
    odd = {"data.source": "folder:/data/x y", "data.mean": (0.5, 0.25), "flag": True}
    name = points.point_name(odd)
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._,=+-")
    assert "flag=true" in name
    long = {"k": "x" * 500}
    long2 = {"k": "x" * 499 + "y"}
    assert len(points.point_name(long)) <= points.MAX_NAME_LENGTH
    assert points.point_name(long) != points.point_name(long2)
    # '/' and ' ' both sanitise to '_': the two names would collide, so they get distinct suffixes
    clash = [{"k": "a/b"}, {"k": "a b"}, {"k": "c"}]
    names = points.point_names(clash)
    assert len(set(names)) == 3 and names[2] == "k=c"
    assert names == points.point_names(clash)
    # names that differ only in case would share a folder on a case-insensitive file system
    names = points.point_names([{"k": "A"}, {"k": "a"}])
    assert len({n.casefold() for n in names}) == 2 and all(n.startswith("k=") for n in names)


def test_two_points_never_share_a_folder():
    """Whatever the names, a list where two of them (ignoring case) coincide is refused."""
    assert points.check_unique_names(["a", "b"]) == ["a", "b"]
    with pytest.raises(ValueError, match="sweep points 1 and 2 would both train in the folder 'B'"):
        points.check_unique_names(["a", "b", "B"])


def test_train_command_has_base_then_point_overrides():
    command = points.train_command("py", "c.py:smoke", "sw/p", ["num_steps=4"],
                                       {"seed": 1, "model.activation": "relu"})
    assert command == ["py", "-m", "cnnjax.cli", "train", "c.py:smoke", "--workdir", "sw/p",
                       "--config.num_steps=4", "--config.seed=1", "--config.model.activation=relu"]


def _records(steps_per_epoch: int, last: int) -> list[dict]:
    """What the training loop logs: 'train/epoch' = step / steps_per_epoch at each logged step."""
    return [{"step": s, "train/epoch": s / steps_per_epoch, "train/loss": 1.0}
            for s in range(1, last + 1)]


@pytest.mark.parametrize("steps_per_epoch", [1, 3, 7, 10, 12, 469])
@pytest.mark.parametrize("num_epochs", [0.05, 0.3, 1.0, 2.5, 3.7, 12.0])
def test_an_epoch_based_run_is_finished_exactly_at_the_loops_last_step(steps_per_epoch, num_epochs):
    total = max(math.ceil(num_epochs * steps_per_epoch), 1)  # cnnjax.train.loop.run_length
    assert status.is_finished(_records(steps_per_epoch, total), -1, num_epochs)
    assert not status.is_finished(_records(steps_per_epoch, total - 1), -1, num_epochs)


def test_point_status_new_partial_finished():
    assert status.point_status([], False, 8, 1.0) == NEW
    assert status.point_status([], True, 8, 1.0) == PARTIAL
    assert status.point_status([{"step": 4}], False, 8, 1.0) == PARTIAL
    assert status.point_status([{"step": 4}, {"step": 8}], True, 8, 1.0) == FINISHED
    # a step-based run ignores epochs; an eval-only record at the last step counts
    assert status.point_status([{"step": 8, "eval/top1": 0.5}], True, 8, 100.0) == FINISHED


def test_array_spec_compresses_ranges_and_throttles():
    assert slurm.array_spec([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert slurm.array_spec([3]) == "3"
    assert slurm.array_spec([2, 0, 1], throttle=2) == "0-2%2"
    with pytest.raises(ValueError):
        slurm.array_spec([])


def test_sbatch_script_runs_the_command_of_its_array_index_through_srun(tmp_path):
    """Executes the script with bash and a stand-in srun that records its arguments."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    srun = fake_bin / "srun"
    srun.write_text('#!/bin/bash\necho "srun-args: $*"\nshift\nexec "$@"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    logs = [str(tmp_path / f"p{i}" / "log.txt") for i in range(3)]
    commands = [[sys.executable, "-c", f"print('point', {i}, 'it''s')"] for i in range(3)]
    text = slurm.sbatch_script(job_name="cnnjax-x", array="0-2%2",
                                    output_pattern=str(tmp_path / "slurm" / "%A_%a.out"),
                                    cwd=str(tmp_path), commands=commands, logs=logs,
                                    header=["a comment"])
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert "#SBATCH --array=0-2%2" in lines and "#SBATCH --job-name=cnnjax-x" in lines
    # sbatch reads #SBATCH lines only before the first command
    first_command = next(i for i, l in enumerate(lines) if l and not l.startswith("#"))
    assert all(not l.startswith("#SBATCH") for l in lines[first_command:])
    script = tmp_path / "sweep.sbatch"
    script.write_text(text)
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "1",
           "SLURM_ARRAY_JOB_ID": "77"}
    subprocess.run(["bash", str(script)], env=env, check=True, timeout=60)
    log = pathlib.Path(logs[1]).read_text()
    assert "array task 1 of job 77" in log
    assert "srun-args: --kill-on-bad-exit=1" in log
    assert "point 1 its" in log
    assert not pathlib.Path(logs[0]).exists() and not pathlib.Path(logs[2]).exists()
    assert (tmp_path / "p1" / "exit_code").read_text() == "0\n"
    bad = subprocess.run(["bash", str(script)], env={**env, "SLURM_ARRAY_TASK_ID": "9"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no sweep point with index 9" in bad.stderr


def _script(tmp_path: pathlib.Path, program: str) -> tuple[pathlib.Path, dict]:
    """A one-point array script whose point runs `program`, and the environment of task 0 (a
    stand-in srun that just runs the command)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    srun = fake_bin / "srun"
    srun.write_text('#!/bin/bash\nshift\nexec "$@"\n')
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    script = tmp_path / "sweep.sbatch"
    script.write_text(slurm.sbatch_script(
        job_name="x", array="0", output_pattern="o", cwd=str(tmp_path),
        commands=[[sys.executable, "-c", program]], logs=[str(tmp_path / "p0" / "log.txt")]))
    env = {**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "0",
           "SLURM_ARRAY_JOB_ID": "5"}
    return script, env


def test_sbatch_script_records_a_failing_points_exit_status_and_replaces_a_stale_one(tmp_path):
    script, env = _script(tmp_path, "import sys; print('error: loss is nan'); sys.exit(3)")
    (tmp_path / "p0").mkdir()
    (tmp_path / "p0" / "exit_code").write_text("0\n")  # from an earlier attempt
    done = subprocess.run(["bash", str(script)], env=env, timeout=60)
    assert done.returncode == 3
    assert (tmp_path / "p0" / "exit_code").read_text() == "3\n"
    assert "error: loss is nan" in (tmp_path / "p0" / "log.txt").read_text()


def test_sbatch_script_outlives_slurms_sigterm_to_record_the_exit_status(tmp_path):
    """scancel and time limits send SIGTERM to every process of the task: the training saves and
    exits (here with 75), and the script must still be there to write that status down."""
    program = ("import signal, sys, time\n"
               "signal.signal(signal.SIGTERM, lambda *a: sys.exit(75))\n"
               "print('rea' + 'dy', flush=True)\n"
               "time.sleep(60)\n")
    script, env = _script(tmp_path, program)
    task = subprocess.Popen(["bash", str(script)], env=env, start_new_session=True)
    log = tmp_path / "p0" / "log.txt"  # its first line is the command, which spells 'rea' + 'dy'
    deadline = time.time() + 60
    while time.time() < deadline and not (log.exists() and "ready\n" in log.read_text()):
        time.sleep(0.05)
    os.killpg(task.pid, signal.SIGTERM)  # what Slurm does: every process of the task
    assert task.wait(timeout=60) == 75
    assert (tmp_path / "p0" / "exit_code").read_text() == "75\n"
    assert log.read_text().splitlines()[-1].endswith("array task 0: SIGTERM from Slurm (scancel or "
                                                     "time limit)")
