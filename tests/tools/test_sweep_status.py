"""`./launch.sh sweep status`: each point's state and reason from its folder and from Slurm (here a
stand-in for squeue), without training anything."""

import json
import pathlib
import socket
import subprocess
import sys

import pytest

from cnnjax import cli
from cnnjax.sweep import status
from cnnjax.sweep.status import FAILED, FINISHED, PENDING, RUNNING, Facts


@pytest.mark.parametrize("facts, state, reason", [
    (Facts(exit_code=0, finished=True, last_step=8, num_steps=8), FINISHED, "step 8 of 8"),
    # an older sweep without exit_code files: the metrics decide
    (Facts(finished=True, last_step=8, num_steps=8, started=True), FINISHED, "step 8 of 8"),
    (Facts(exit_code=3, last_step=4, last_line="error: loss is nan at step 6"), FAILED,
     "diverged (exit status 3), last logged step 4: error: loss is nan at step 6"),
    # today's trainer reports divergence as a user error; its message still names it
    (Facts(exit_code=2, last_step=4, last_line="error: loss is inf at step 5; stopped"), FAILED,
     "diverged (exit status 2), last logged step 4: error: loss is inf at step 5; stopped"),
    (Facts(exit_code=2, last_line="error: unknown activation 'x'"), FAILED,
     "user error (exit status 2) before logging any metrics: error: unknown activation 'x'"),
    (Facts(exit_code=1, last_step=2, last_line="KeyError: 'a'"), FAILED,
     "crashed (exit status 1), last logged step 2: KeyError: 'a'"),
    (Facts(exit_code=75, last_step=2, last_line="saved"), FAILED,
     "preempted (its checkpoint is saved: run the sweep again to resume it) (exit status 75), "
     "last logged step 2: saved"),
    (Facts(exit_code=-9, last_step=2), FAILED,
     "killed by SIGKILL (exit status -9), last logged step 2 (its log is empty)"),
    (Facts(exit_code=137, last_step=2, last_line="x"), FAILED,
     "killed by SIGKILL (exit status 137), last logged step 2: x"),
    (Facts(exit_code=0, last_step=4, num_steps=8, metrics_cut=True, last_line="bye"), FAILED,
     "exited with status 0 short of its last step (step 4 of 8); metrics.jsonl ends in a cut line: "
     "bye"),
    (Facts(exit_code=0, last_line="bye"), FAILED, "exited with status 0 but wrote no metrics: bye"),
    (Facts(pid=12, host="h", alive=True, last_step=3, num_steps=8), RUNNING, "pid 12 on h, step 3 of 8"),
    (Facts(pid=12, host="h", alive=False, started=True, last_step=3, num_steps=8, last_line="step 3"),
     FAILED, "stopped without an exit status (killed?) short of its last step, last logged step 3: "
     "step 3"),
    (Facts(), PENDING, "not started"),
    (Facts(slurm_task="7_1", slurm_state="PENDING", slurm_reason="Priority", slurm_queried=True),
     PENDING, "queued as Slurm task 7_1 (Priority)"),
    (Facts(slurm_task="7_1", slurm_state="RUNNING", slurm_queried=True, started=True, last_step=2),
     RUNNING, "Slurm task 7_1 running, step 2"),
    # the exit status of an earlier attempt does not hide that the point runs again
    (Facts(exit_code=2, slurm_task="7_1", slurm_state="RUNNING", slurm_queried=True), RUNNING,
     "Slurm task 7_1 running, no metrics yet"),
    (Facts(slurm_task="7_1", slurm_queried=True, started=True, last_step=2, last_line="step 2",
           slurm_line="slurmstepd: error: *** JOB 8 ON n CANCELLED AT 2026 DUE TO TIME LIMIT ***"),
     FAILED, "Slurm task 7_1 left the queue without an exit status (killed by a time limit, scancel "
     "or a node failure?), last logged step 2: slurmstepd: error: *** JOB 8 ON n CANCELLED AT 2026 "
     "DUE TO TIME LIMIT ***"),
    (Facts(slurm_task="7_1", slurm_state="TIMEOUT", slurm_queried=True, started=True, last_step=2,
           last_line="step 2"), FAILED,
     "Slurm task 7_1 ended timeout without an exit status, last logged step 2: step 2"),
    (Facts(slurm_task="7_1", slurm_queried=True), FAILED,
     "Slurm task 7_1 left the queue without starting (its log is empty)"),
    (Facts(slurm_task="7_1", slurm_queried=False, started=True), RUNNING,
     "submitted as Slurm task 7_1; squeue did not answer, so unconfirmed (no metrics yet)"),
])
def test_decide_names_the_state_and_why(facts, state, reason):
    assert status.decide(facts) == (state, reason)


def _point(root: pathlib.Path, name: str, steps: list[int] | None, exit_code: int | None,
           log: str | None, num_steps: int = 8) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "sweep_point.json").write_text(json.dumps({"name": name, "overrides": {},
                                                         "num_steps": num_steps, "num_epochs": 1}))
    if steps is not None:
        (folder / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in steps))
    if exit_code is not None:
        (folder / "exit_code").write_text(f"{exit_code}\n")
    if log is not None:
        (folder / "log.txt").write_text(log)


@pytest.fixture
def sweep_dir(tmp_path) -> pathlib.Path:
    """Six points of a Slurm sweep (job 41 ran points 0-4, job 42 reruns point 5): finished,
    diverged, failed at model build, running, pending, and killed without an exit status."""
    root = tmp_path / "sweep"
    _point(root, "a", [4, 8], 0, "done: 8 steps\nsrun: error: nothing\n")
    _point(root, "b", [4], 2, "error: loss is nan at step 6\nsrun: error: n: task 0: Exited with "
           "exit code 2\n")
    _point(root, "c", None, 2, "error: lenet5: activation must be one of 'relu', 'tanh'; got 'x'\n")
    _point(root, "d", [2], None, "step 2/8\n")
    _point(root, "e", None, None, None)
    _point(root, "f", [2, 4], None, "step 4/8\n")
    (root / "slurm").mkdir()
    (root / "slurm" / "42_5.out").write_text("slurmstepd: error: *** JOB 43 ON n CANCELLED AT x "
                                             "DUE TO TIME LIMIT ***\n")
    (root / "slurm" / "jobs.jsonl").write_text(
        json.dumps({"job": "41", "indices": [0, 1, 2, 3, 4, 5]}) + "\n"
        + json.dumps({"job": "42", "indices": [5]}) + "\n" + '{"job": "4')  # a cut last line
    (root / "sweep.json").write_text(json.dumps({"config": "c.py", "points": [
        {"name": n, "overrides": {"k": i}} for i, n in enumerate("abcdef")]}))
    return root


def fake_squeue(tasks):
    """What squeue says: 41_3 runs, 41_4 waits; nothing else is queued (42_5 has left)."""
    assert sorted(tasks) == ["41_0", "41_1", "41_2", "41_3", "41_4", "42_5"]
    return {"41_3": ("RUNNING", "None"), "41_4": ("PENDING", "Resources")}, True


def test_read_sweep_combines_folders_and_slurm(sweep_dir):
    states = status.read_sweep(sweep_dir, slurm_lookup=fake_squeue)
    assert [(p.name, p.state) for p in states] == [
        ("a", FINISHED), ("b", FAILED), ("c", FAILED), ("d", RUNNING), ("e", PENDING), ("f", FAILED)]
    reasons = {p.name: p.reason for p in states}
    assert reasons["b"] == "diverged (exit status 2), last logged step 4: error: loss is nan at step 6"
    assert reasons["c"].endswith("before logging any metrics: error: lenet5: activation must be one "
                                 "of 'relu', 'tanh'; got 'x'")
    assert reasons["d"] == "Slurm task 41_3 running, step 2 of 8"
    assert reasons["e"] == "queued as Slurm task 41_4 (Resources)"
    assert reasons["f"].startswith("Slurm task 42_5 left the queue without an exit status")
    assert reasons["f"].endswith("DUE TO TIME LIMIT ***")
    assert [p.overrides for p in states] == [{"k": i} for i in range(6)]


def test_status_command_prints_every_point_and_fails_on_a_failure(sweep_dir, capsys, monkeypatch):
    from cnnjax.sweep import slurm

    monkeypatch.setattr(slurm, "task_states", fake_squeue)
    assert cli.main(["sweep", "status", str(sweep_dir)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"sweep {sweep_dir}: 6 points: 1 finished, 3 failed, 1 running, 1 pending"
    assert [line.split()[1:3] for line in out[1:]] == [
        ["a", "finished"], ["b", "FAILED"], ["c", "FAILED"], ["d", "running"], ["e", "pending"],
        ["f", "FAILED"]]
    assert out[2].endswith(f"[log: {sweep_dir / 'b' / 'log.txt'}]")
    for name in "bcf":
        (sweep_dir / name / "exit_code").write_text("0\n")
        (sweep_dir / name / "metrics.jsonl").write_text('{"step": 8}\n')
    assert cli.main(["sweep", "status", str(sweep_dir)]) == 0  # running and pending are no failure


def test_a_local_point_is_running_while_its_process_lives(tmp_path):
    root = tmp_path / "sweep"
    _point(root, "a", [2], None, "step 2\n")
    (root / "sweep.json").write_text(json.dumps({"points": [{"name": "a", "overrides": {}}]}))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (root / "a" / "running.json").write_text(json.dumps({"pid": child.pid,
                                                             "host": socket.gethostname()}))
        (state,) = status.read_sweep(root)
        assert (state.state, state.reason) == (RUNNING, f"pid {child.pid} on "
                                               f"{socket.gethostname()}, step 2 of 8")
    finally:
        child.kill()
        child.wait()
    (state,) = status.read_sweep(root)
    assert state.state == FAILED and state.reason.startswith("stopped without an exit status")


def test_status_of_a_folder_that_is_no_sweep_is_one_line(tmp_path, capsys):
    assert cli.main(["sweep", "status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "has no readable sweep.json, so it is not a sweep folder" in err and err.count("\n") == 1
    assert cli.main(["sweep", "status", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_sweep_summarize_is_summarize(tmp_path, capsys):
    root = tmp_path / "sweep"
    _point(root, "a", [8], 0, "done\n")
    (root / "a" / "metrics.jsonl").write_text('{"step": 8, "eval/top1": 0.5}\n')
    (root / "sweep.json").write_text(json.dumps({"points": [{"name": "a", "overrides": {}}]}))
    assert cli.main(["sweep", "summarize", str(root)]) == 0
    first = capsys.readouterr().out
    assert cli.main(["summarize", str(root)]) == 0
    assert capsys.readouterr().out == first
    assert "| a | finished | 8 | 50.00 |" in first  # eval/top1 0.5 logged: 50% (in_percent)


def test_last_line_skips_what_srun_adds_after_the_training(tmp_path):
    from cnnjax.sweep import files

    log = tmp_path / "log.txt"
    log.write_text("step 1\nerror: boom\n\nsrun: error: n: task 0: Exited with exit code 2\n")
    assert files.last_line(log) == "error: boom"
    log.write_text("srun: error: only srun\n")
    assert files.last_line(log) == "srun: error: only srun"
    assert files.last_line(tmp_path / "missing") == ""
