"""`./launch.sh sweep status`: each point's state and reason from its folder and from Slurm (here a
stand-in for squeue), without training anything."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

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
    assert [line.split()[1:3] for line in out[1:-1]] == [
        ["a", "finished"], ["b", "FAILED"], ["c", "FAILED"], ["d", "running"], ["e", "pending"],
        ["f", "FAILED"]]
    assert out[2].endswith(f"[log: {sweep_dir / 'b' / 'log.txt'}]")
    # these records have no 'time' (an older trainer): nothing to estimate from, and it says so
    assert out[4].endswith("step 2 of 8 | 25%, ETA ? (nothing to estimate from yet)")
    assert out[-1] == "left: ?, 1 at a time (as many as run now); 3 failed not counted"
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


# ---------------------------------------------------------------------------------------------------
# Progress and ETA
# ---------------------------------------------------------------------------------------------------

# Two attempts of an 8-step run that logs every 2 steps and evaluates at 4 and 8: the first stopped
# after step 6, the second resumed from the checkpoint at step 4 (times in seconds).
TWO_ATTEMPTS = [
    {"step": 0, "time": 100.0, "compile_seconds": 5.0},
    {"step": 2, "time": 104.0, "train/loss": 2.0, "train/epoch": 0.125},
    {"step": 4, "time": 108.0, "train/loss": 2.0, "train/epoch": 0.25},
    {"step": 4, "time": 110.0, "eval/top1": 0.5},
    {"step": 6, "time": 114.0, "train/loss": 2.0, "train/epoch": 0.375},
    {"step": 4, "time": 1000.0, "compile_seconds": 3.0},
    {"step": 6, "time": 1006.0, "train/loss": 2.0, "train/epoch": 0.375},
    {"step": 8, "time": 1012.0, "train/loss": 2.0, "train/epoch": 0.5},
    {"step": 8, "time": 1020.0, "eval/top1": 0.5},
]


def test_speed_and_wall_time_come_from_the_records_times_attempt_by_attempt():
    assert [len(a) for a in status.attempts(TWO_ATTEMPTS)] == [5, 4]
    # latest attempt, steps 4 -> 8 (the evaluation at 8 included, the compile before 4 not):
    # (1020 - 1000) / 4
    assert status.seconds_per_step(TWO_ATTEMPTS) == 5.0
    assert status.seconds_per_step(TWO_ATTEMPTS, window=1) == (1020 - 1006) / 2  # steps 6 -> 8
    # each attempt from the start of its compile to its last record: (114 - 100 + 5) + (1020 - 1000 + 3)
    assert status.wall_seconds(TWO_ATTEMPTS) == 19 + 23
    # a resumed attempt that has only compiled yet: the attempt before it gives the speed, 14 s / 6
    assert status.seconds_per_step(TWO_ATTEMPTS[:6]) == (114 - 100) / 6
    untimed = [{k: v for k, v in r.items() if k != "time"} for r in TWO_ATTEMPTS]
    assert status.seconds_per_step(untimed) is None and status.wall_seconds(untimed) is None
    # a clock set back gives no speed (not a negative one); times that are no number are no times
    assert status.seconds_per_step([{"step": 0, "time": 50.0}, {"step": 2, "time": 40.0}]) is None
    odd = [{"step": 0, "time": float("nan")}, {"step": 2, "time": "x"}, {"step": 4, "time": True}]
    assert status.seconds_per_step(odd) is None and status.wall_seconds(odd) is None
    # epoch-based: 8 steps are 0.5 epochs, so 16 steps per epoch and 2 epochs end at step 32
    g = status.measure(TWO_ATTEMPTS, -1, 2.0)
    assert (g.step, g.total, g.unit, g.length, g.steps_per_unit) == (8, 32, "epoch", 2.0, 16)
    assert g.heard == 1020.0
    assert status.measure(TWO_ATTEMPTS, 8, 1.0).total == 8


def test_a_point_counts_as_stalled_after_three_of_its_longest_gaps_and_never_before_the_floor():
    assert status.silence_limit(TWO_ATTEMPTS) == status.SILENCE_FLOOR  # 3 x 8 s is under the floor
    # step 10 at 150 s, step 20 at 200 s and its evaluation until 450 s: the gap is 450 - 150
    slow = [{"step": 0, "time": 0.0, "compile_seconds": 1.0}, {"step": 10, "time": 150.0},
            {"step": 20, "time": 200.0}, {"step": 20, "time": 450.0}]
    assert status.silence_limit(slow) == 3 * 300.0
    g = status.Progress(heard=500.0, silence_limit=900.0)
    assert status.stalled_for(g, 1400.0) is None and status.stalled_for(g, 1401.0) == 901.0


@pytest.mark.parametrize("running, pending, slots, left", [
    # slots free at 10 and 30: 20 runs 10-30, then 20 runs 30-50 and 5 runs 30-35
    ([30.0, 10.0], [20.0, 20.0, 5.0], 2, 50.0),
    ([30.0], [20.0, 20.0, 5.0], 1, 30 + 20 + 20 + 5),
    ([], [10.0, 10.0, 10.0], 2, 20.0),
    ([], [], 3, 0.0),
])
def test_time_left_fills_the_first_free_slot_in_sweep_order(running, pending, slots, left):
    assert status.time_left(running, pending, slots) == left


def _state(name: str, state: str, overrides: dict | None = None, **progress) -> status.PointState:
    return status.PointState(0, name, overrides or {}, pathlib.Path(name), state, "", None,
                             status.Progress(**progress))


NOW = 10_000.0


def test_eta_of_each_state():
    fin = _state("fin", FINISHED, step=800, total=800, wall=400.0, length=800)  # 0.5 s/step
    run = _state("run", RUNNING, step=300, total=800, sec_per_step=0.7, heard=NOW - 10,
                 length=800, steps_per_unit=1)
    stale = _state("stale", RUNNING, step=300, total=800, sec_per_step=0.1, heard=NOW - 1000,
                   length=800, steps_per_unit=1)
    new = _state("new", PENDING, length=800)
    starting = _state("starting", RUNNING, heard=NOW, length=800)
    failed = _state("failed", FAILED, step=300, total=800, wall=200.0, length=800)
    states = [fin, run, stale, new, starting, failed]

    def eta(p):
        return status.eta(p, states, NOW)

    assert eta(fin) == status.Eta(0.0, "trained in 6m40s")
    assert eta(run) == status.Eta(500 * 0.7, "37%, ETA 5m50s at 0.7 s/step")  # 300/800 floored
    assert eta(stale) == status.Eta(None, "37%, silent for 16m40s (stopped or suspended?), ETA ?")
    # the median of the finished point's 0.5 and the running ones' 0.7 and 0.1 s/step (the stalled
    # one's speed before it stopped), times 800 steps
    assert eta(new) == status.Eta(0.5 * 800, "needs ~6m40s (from 3 points of this sweep)")
    assert eta(starting) == status.Eta(0.5 * 800, "ETA ~6m40s (from 3 points of this sweep)")
    assert eta(failed) == status.Eta(None, "")
    assert status.eta(new, [new, failed], NOW) == status.Eta(None, "ETA ? (nothing to estimate "
                                                                  "from yet)")
    # running 350 s and a pending 400 s on 2 slots, the stalled point counted as 0
    assert status.sweep_left([fin, run, stale, new, failed], NOW, 2) == (
        "left: at least 6m40s (1 with ETA ?), 2 at a time (the sweep's --parallel); 1 failed not "
        "counted")
    # three run now, more than the recorded --parallel 2 (an earlier run's): three slots
    assert status.sweep_left(states, NOW, 2) == (
        "left: at least 6m40s (1 with ETA ?), 3 at a time (as many as run now); 1 failed not counted")
    # 350 + 480 one after the other (0.6 s/step: the median of 0.5 and 0.7)
    assert status.sweep_left([fin, run, new], NOW, None) == (
        "left: ~13m50s, 1 at a time (as many as run now)")
    assert status.sweep_left([fin, new], NOW, None) == "left: ~6m40s, one at a time (none runs now)"
    assert status.sweep_left([fin, failed], NOW, 2) == ""


def test_a_pending_point_is_estimated_from_points_of_its_own_model_where_there_are_any():
    lenet = _state("l", FINISHED, {"model.name": "lenet5"}, wall=100.0, length=1000)
    resnet = _state("r", FINISHED, {"model.name": "resnet20"}, wall=2000.0, length=1000)
    epochs = _state("e", FINISHED, {"model.name": "resnet20"}, wall=50.0, length=2,
                    unit="epoch")  # another unit: never compared with steps
    todo = _state("t", PENDING, {"model.name": "resnet20"}, length=500)
    other = _state("o", PENDING, {"model.name": "vgg11"}, length=500)
    states = [lenet, resnet, epochs, todo, other]
    assert status.eta(todo, states, NOW) == status.Eta(1000.0, "needs ~16m40s (from 1 point like it)")
    # no vgg11 point ran: the median of lenet5's 0.1 and resnet20's 2 s/step
    assert status.eta(other, states, NOW) == status.Eta(1.05 * 500, "needs ~8m45s (from 2 points "
                                                                    "of other models, a rough guess)")


def _timed_point(root: pathlib.Path, name: str, times: list[tuple[int, float, dict]],
                 log_time: float | None, exit_code: int | None = None, pid: int | None = None):
    """A point of 8 steps whose metrics.jsonl holds (step, time, fields) records and whose log was
    last written at log_time."""
    _point(root, name, None, exit_code, "step ...\n" if log_time is not None else None)
    folder = root / name
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "time": t, **extra}) + "\n" for s, t, extra in times))
    if log_time is not None:
        os.utime(folder / "log.txt", (log_time, log_time))
    if pid is not None:
        (folder / "running.json").write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))


def test_report_shows_progress_and_eta_per_point_and_the_time_left(tmp_path):
    root = tmp_path / "sweep"
    now = time.time()
    me = os.getpid()  # a live process of this host: the 'running' points
    _timed_point(root, "fin", [(0, now - 500, {"compile_seconds": 10.0}), (4, now - 420, {}),
                               (8, now - 340, {}), (8, now - 330, {"eval/top1": 0.5})],
                 now - 330, exit_code=0)  # (-330) - (-500) + 10 = 180 s, 22.5 s/step
    _timed_point(root, "run", [(0, now - 100, {"compile_seconds": 5.0}), (2, now - 60, {}),
                               (4, now - 20, {})], now - 20, pid=me)  # 80 s / 4 steps
    _timed_point(root, "stale", [(0, now - 2000, {"compile_seconds": 5.0}), (2, now - 1960, {}),
                                 (4, now - 1920, {})], now - 1920, pid=me)
    _timed_point(root, "crash", [(0, now - 900, {"compile_seconds": 5.0}), (2, now - 890, {})],
                 now - 890, exit_code=1)
    _point(root, "new", None, None, None)
    (root / "sweep.json").write_text(json.dumps({"parallel": 2, "points": [
        {"name": n, "overrides": {}} for n in ("fin", "run", "stale", "crash", "new")]}))
    states = status.read_sweep(root)
    text = status.report(states, root, now=now, parallel=status.recorded_parallel(root))
    host = socket.gethostname()
    width = len("stale")
    assert text.splitlines() == [
        f"sweep {root}: 5 points: 1 finished, 1 failed, 2 running, 1 pending",
        f"[1/5] {'fin':<{width}}  finished  step 8 of 8 | trained in 3m00s",
        f"[2/5] {'run':<{width}}  running   pid {me} on {host}, step 4 of 8 | 50%, ETA 1m20s at "
        "20 s/step",
        f"[3/5] stale  running   pid {me} on {host}, step 4 of 8 | 50%, silent for 32m00s (stopped "
        "or suspended?), ETA ?",
        f"[4/5] {'crash':<{width}}  FAILED    crashed (exit status 1), last logged step 2: step ... "
        f"[log: {root / 'crash' / 'log.txt'}]",
        # the median of 22.5, 20, 20 (the stalled point's before it stopped) and 5 s/step (the
        # crashed one's), times 8 steps
        f"[5/5] {'new':<{width}}  pending   not started | needs ~2m40s (from 4 points of this sweep)",
        # 'run' ends in 80 s, 'new' takes the stalled point's slot (counted as free now): 160 s
        "left: at least 2m40s (1 with ETA ?), 2 at a time (the sweep's --parallel); 1 failed not "
        "counted",
    ]


def test_a_point_without_a_folder_is_estimated_from_the_length_in_sweep_json(tmp_path):
    """A fresh clone of committed runs has the finished points' folders and sweep.json, but no
    folder for the points still to run: their length comes from sweep.json."""
    root = tmp_path / "sweep"
    now = time.time()
    _timed_point(root, "fin", [(0, now - 500, {"compile_seconds": 10.0}), (4, now - 420, {}),
                               (8, now - 340, {})], now - 340, exit_code=0)  # 170 s, 21.25 s/step
    planned = [{"name": "fin", "overrides": {}, "num_steps": 8, "num_epochs": 1},
               {"name": "long", "overrides": {"k": 1}, "num_steps": 16, "num_epochs": 1}]
    (root / "sweep.json").write_text(json.dumps({"points": planned}))
    long = status.read_sweep(root)[1]
    assert (long.state, long.reason, long.progress.length) == (PENDING, "not started", 16.0)
    assert status.eta(long, status.read_sweep(root), now).text == (
        "needs ~5m40s (from 1 point of this sweep)")  # 21.25 s/step x 16
    # a sweep.json written before it held the lengths: no length, and it says so
    (root / "sweep.json").write_text(json.dumps({"points": [
        {k: p[k] for k in ("name", "overrides")} for p in planned]}))
    states = status.read_sweep(root)
    assert states[1].progress.length == 0.0
    assert status.eta(states[1], states, now).text == "ETA ? (its length is not recorded)"
