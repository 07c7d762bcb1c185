"""The sweep tool without training: plans, dry runs, validation, device slots, the local runner on
stand-in commands, and the Slurm script it writes. (test_tools_end_to_end.py trains for real.)"""

import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cnnjax import cli
from cnnjax.sweep import devices, local, plan, points, status

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "helpers" / "tiny_config.py"


def sweep_config(tmp_path: pathlib.Path, points: list[dict] | str, name: str = "sw.py") -> str:
    """A config file: the tiny test config plus get_sweep() returning `points`."""
    body = points if isinstance(points, str) else f"def get_sweep():\n    return {points!r}\n"
    path = tmp_path / name
    path.write_text(textwrap.dedent(f"""
        from cnnjax import config as config_io

        def get_config(arg=None):
            c = config_io.load_config({str(TINY)!r})
            c.model.activation = "tanh"
            return c

        """) + body)
    return str(path)


def write_metrics(workdir: pathlib.Path, steps: list[int]) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "metrics.jsonl").open("w") as f:
        for s in steps:
            f.write(json.dumps({"step": s, "train/loss": 1.0, "train/epoch": s / 16}) + "\n")


POINTS = [{"model.activation": "relu", "seed": 0}, {"model.activation": "tanh", "seed": 1},
          {"model.activation": "relu", "seed": 2}]


def test_dry_run_prints_one_command_per_point_with_its_status_and_runs_nothing(tmp_path, capsys):
    config = sweep_config(tmp_path, POINTS)
    out_dir = tmp_path / "out"
    write_metrics(out_dir / "model.activation=relu,seed=0", [2, 4, 6, 8])  # finished (num_steps 8)
    write_metrics(out_dir / "model.activation=tanh,seed=1", [2, 4])       # stopped half way
    status = cli.main(["train", config, "--sweep", "--dry-run", "--workdir", str(out_dir),
                       "--config.num_steps=8"])
    assert status == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("3 points in " + str(out_dir) + " (1 finished, 1 to resume, 1 new)")
    commands = [line for line in out if line.startswith("[")]
    assert [c.split()[0] for c in commands] == ["[finished]", "[partial]", "[new]"]
    for line, point in zip(commands, POINTS, strict=True):
        name = points.point_name(point)
        assert f"--workdir {out_dir / name} --config.num_steps=8" in line
        assert f"--config.model.activation={point['model.activation']}" in line
        assert f"--config.seed={point['seed']}" in line
        assert line.endswith(f">> {out_dir / name / 'log.txt'} 2>&1")
    assert not (out_dir / "sweep.json").exists()
    assert not (out_dir / "model.activation=relu,seed=2").exists()


@pytest.mark.parametrize("points, extra, message", [
    ([{"seed": 0}, {"model.actvation": "relu"}], [],
     "sweep point 1 (model.actvation=relu): model 'lenet5' has no knob 'actvation'; valid knobs"),
    ([{"seed": "zero"}], [], "sweep point 0 (seed=zero): --config.seed: cannot read 'zero' as a int"),
    ([{"seed": 0}], ["--config.batch_sise=3"], "unknown config key 'batch_sise'"),
    ("def get_sweep():\n    return []\n", [], "get_sweep() returned no points"),
    ("X = 1\n", [], "defines no get_sweep()"),
    ([{"seed": 0}], ["--parallel", "0"], "--parallel must be at least 1"),
    ([{"seed": 0}], ["--slurm-args", "-p x"], "--slurm-args needs --slurm"),
    ([{"seed": 0}], ["--bogus"], "unrecognised argument '--bogus'"),
])
def test_invalid_sweeps_fail_in_one_line_before_anything_runs(tmp_path, capsys, points, extra,
                                                               message):
    config = sweep_config(tmp_path, points)
    out_dir = tmp_path / "out"
    assert cli.main(["train", config, "--sweep", "--workdir", str(out_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out_dir.exists()


def test_device_slots_share_out_gpus_and_cpu_cores():
    gpus = ["0", "1", "2", "3"]
    slots = devices.device_slots(2, 0, gpus, [0, 1])
    assert [s.env for s in slots] == [{"CUDA_VISIBLE_DEVICES": "0,1"},
                                      {"CUDA_VISIBLE_DEVICES": "2,3"}]
    slots = devices.device_slots(3, 1, gpus, [0, 1])
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1", "2"]
    assert devices.device_slots(1, 0, gpus, [0, 1]) == [devices.Slot({})]
    with pytest.raises(ValueError, match="needs 6 GPUs; 4 are visible"):
        devices.device_slots(3, 2, gpus, [0, 1])
    cpu = devices.device_slots(2, 0, [], [0, 1, 2, 3, 4])
    assert [sorted(s.cpus) for s in cpu] == [[0, 1], [2, 3]]
    cpu = devices.device_slots(2, 2, [], [0, 1], xla_flags="--xla_dump_to=/tmp/x")
    assert cpu[0].env["XLA_FLAGS"] == ("--xla_dump_to=/tmp/x "
                                       "--xla_force_host_platform_device_count=2")
    assert [sorted(s.cpus) for s in cpu] == [[0], [1]]
    assert all(s.cpus is None for s in devices.device_slots(3, 0, [], [0, 1]))
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 5"}) == ["2", "5"]
    assert devices.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []


def _fake_run(tmp_path: pathlib.Path, index: int, code: str) -> plan.PointRun:
    """A point whose 'training' is a short Python program (no jax), finished when it logs step 4."""
    workdir = tmp_path / f"p{index}"
    program = textwrap.dedent(f"""
        import json, os, sys
        print("cpus", sorted(os.sched_getaffinity(0)), "cuda", os.environ.get("CUDA_VISIBLE_DEVICES"))
        {code}
        with open(os.path.join({str(workdir)!r}, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({{"step": 4, "eval/top1": 0.25}}) + "\\n")
        """)
    return plan.PointRun(index, f"p{index}", {"i": index}, workdir, [sys.executable, "-c", program],
                          status.NEW, 4, 1.0)


def test_run_local_runs_side_by_side_reports_failures_and_keeps_going(tmp_path, capsys):
    runs = [_fake_run(tmp_path, 0, "pass"),
            _fake_run(tmp_path, 1, "sys.exit('boom: bad data')"),
            _fake_run(tmp_path, 2, "pass"),
            _fake_run(tmp_path, 3, "sys.exit(0)")]  # exits cleanly without reaching its last step
    write_metrics(tmp_path / "p2", [4])
    runs[2].status = status.FINISHED  # skipped: its program never runs
    slots = [devices.Slot({"CUDA_VISIBLE_DEVICES": "7"}), devices.Slot({"CUDA_VISIBLE_DEVICES": "8"})]
    failed = local.run_local(runs, slots, poll_seconds=0.02)
    assert [run.name for run, _ in failed] == ["p1", "p3"]
    assert failed[0][1].startswith("crashed (exit status 1) before logging any metrics: boom")
    assert failed[1][1].startswith("exited with status 0 but wrote no metrics: cpus")
    out = capsys.readouterr().out
    lines = {line.split("]")[1].split(":")[0].strip(): line for line in out.splitlines()
             if "finished" in line or "FAILED" in line}
    assert "finished in" in lines["p0"] and "eval/top1 25.00%" in lines["p0"]
    # each failure: what happened, the exit status, where it stopped, and its log's last line
    assert "FAILED after" in lines["p1"]
    assert ("crashed (exit status 1) before logging any metrics: boom: bad data [see "
            f"{tmp_path / 'p1' / 'log.txt'}]") in lines["p1"]
    assert "exited with status 0 but wrote no metrics" in lines["p3"]
    assert "p2" not in lines
    # the exit status of every attempt is recorded for `sweep status`; nothing is left 'running'
    assert [(tmp_path / f"p{i}" / "exit_code").read_text() for i in (0, 1, 3)] == ["0\n", "1\n",
                                                                                 "0\n"]
    assert not any((tmp_path / f"p{i}" / "running.json").exists() for i in range(4))
    log0 = (tmp_path / "p0" / "log.txt").read_text()
    assert "cuda 7" in log0 or "cuda 8" in log0
    assert (tmp_path / "p2" / "log.txt").exists() is False


def test_run_local_pins_cpu_slots_to_their_own_cores(tmp_path, capsys):
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs two CPU cores to pin two points apart")
    slots = devices.device_slots(2, 0, [], cores)
    runs = [_fake_run(tmp_path, i, "import time; time.sleep(0.3)") for i in range(2)]
    assert local.run_local(runs, slots, poll_seconds=0.02) == []
    seen = set()
    for run in runs:
        line = next(l for l in run.log.read_text().splitlines() if l.startswith("cpus"))
        seen.add(line.split(" cuda")[0])
    assert seen == {f"cpus {sorted(s.cpus)}" for s in slots}


def test_slurm_dry_run_writes_the_array_script_for_unfinished_points_only(tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = sweep_config(tmp_path, POINTS)
    write_metrics(tmp_path / "out" / "model.activation=tanh,seed=1", [8])
    status = cli.main(["train", "sw.py:x", "--sweep", "--slurm", "--dry-run", "--parallel", "2",
                       "--workdir", "out", "--slurm-args", "--partition=main --time=10",
                       "--config.num_steps=8"])
    assert status == 0
    script = (tmp_path / "out" / "sweep.sbatch").read_text()
    assert script in capsys.readouterr().out
    assert "#SBATCH --array=0,2%2\n" in script
    assert f"#SBATCH --output={tmp_path}/out/slurm/%A_%a.out\n" in script
    assert "# Submitted with: sbatch --partition=main --time=10 " in script
    assert f"\ncd {tmp_path}\n" in script
    assert (tmp_path / "out" / "slurm").is_dir()
    for i, point in enumerate(POINTS):
        name = points.point_name(point)
        line = next(l for l in script.splitlines() if l.startswith(f"  {i}) "))
        assert f"LOG={tmp_path}/out/{name}/log.txt;" in line
        assert (f"CMD=({sys.executable} -m cnnjax.cli train {config}:x --workdir "
                f"{tmp_path}/out/{name} --config.num_steps=8 "
                f"--config.model.activation={point['model.activation']} "
                f"--config.seed={point['seed']})") in line
    assert 'srun --kill-on-bad-exit=1 "${CMD[@]}"' in script
    assert not (tmp_path / "out" / "sweep.json").exists()


def test_slurm_with_everything_finished_submits_nothing(tmp_path, capsys):
    config = sweep_config(tmp_path, [{"seed": 0}])
    write_metrics(tmp_path / "out" / "seed=0", [8])
    assert cli.main(["train", config, "--sweep", "--slurm", "--workdir", str(tmp_path / "out"),
                     "--config.num_steps=8"]) == 0
    assert "all 1 points have finished; nothing to submit" in capsys.readouterr().out


def test_sigterm_to_the_sweep_asks_running_points_to_save_and_stop(tmp_path):
    """The tool, run as its own process on a point that traps SIGTERM like the training loop does:
    terminating the tool must reach the point, which 'saves' and exits, and the tool reports it."""
    point = textwrap.dedent(f"""
        import pathlib, signal, sys, time
        def save(signum, frame):
            pathlib.Path({str(tmp_path / 'saved')!r}).write_text("saved")
            sys.exit(0)
        signal.signal(signal.SIGTERM, save)
        print("rea" + "dy", flush=True)
        time.sleep(60)
        """)
    driver = textwrap.dedent(f"""
        import pathlib, sys
        from cnnjax.sweep import devices, local, plan
        run = plan.PointRun(0, "p0", {{}}, pathlib.Path({str(tmp_path / 'p0')!r}),
                            [sys.executable, "-c", {point!r}], "new", 4, 1.0)
        try:
            local.run_local([run], [devices.Slot({{}})], poll_seconds=0.02)
        except KeyboardInterrupt:
            sys.exit(130)
        """)
    tool = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    log = tmp_path / "p0" / "log.txt"  # its first line is the command, which spells "rea" + "dy"
    deadline = time.time() + 60
    while time.time() < deadline and not (log.exists() and "ready" in log.read_text()):
        time.sleep(0.05)
    tool.send_signal(signal.SIGTERM)
    out, _ = tool.communicate(timeout=60)
    assert tool.returncode == 130
    assert (tmp_path / "saved").read_text() == "saved"
    assert "p0: interrupted; run the sweep again to resume it" in out


@pytest.mark.parametrize("spec, folder", [
    ("configs/resnet_cifar.py", "workdirs/resnet_cifar_sweep"),
    ("configs/resnet_cifar.py:plain56", "workdirs/resnet_cifar_plain56_sweep"),
    ("configs/lenet5_activation_sweep.py", "workdirs/lenet5_activation_sweep"),  # "_sweep" once
])
def test_default_sweep_folder_names_the_config_and_its_arg(spec, folder):
    assert plan.default_sweep_dir(spec) == pathlib.Path(folder)


def test_a_folder_holding_another_sweeps_point_is_refused_before_anything_runs(tmp_path, capsys):
    """A point must never resume in (or be skipped as finished because of) another point's folder."""
    config = sweep_config(tmp_path, [{"seed": 0}])
    out_dir = tmp_path / "out"
    (out_dir / "seed=0").mkdir(parents=True)
    (out_dir / "seed=0" / "sweep_point.json").write_text(json.dumps({"overrides": {"seed": "0"}}))
    write_metrics(out_dir / "seed=0", [8])
    assert cli.main(["train", config, "--sweep", "--workdir", str(out_dir)]) == 2
    err = capsys.readouterr().err
    assert (f"sweep point 0 (seed=0) would train in {out_dir / 'seed=0'}, which holds the point "
            "{'seed': '0'}; give this sweep its own --workdir") in err and err.count("\n") == 1
    assert not (out_dir / "sweep.json").exists()

    other = sweep_config(tmp_path, [{"seed": 0}], name="other.py")
    (out_dir / "sweep.json").write_text(json.dumps({"config": other, "points": []}))
    assert cli.main(["train", config, "--sweep", "--dry-run", "--workdir", str(out_dir)]) == 2
    assert f"{out_dir} holds a sweep of {other}, not of {config}" in capsys.readouterr().err


def test_a_rerun_of_the_same_sweep_is_not_a_collision(tmp_path, capsys):
    config = sweep_config(tmp_path, [{"data.synthetic_shape": (32, 32, 1), "seed": 1}])  # a tuple
    out_dir = tmp_path / "out"
    args = ["train", config, "--sweep", "--slurm", "--dry-run", "--workdir", str(out_dir)]
    plan_ = plan.make_plan(config, [], out_dir)
    plan.write_records(plan_, out_dir, config, [])
    assert cli.main(args) == 0
    assert (out_dir / "sweep.sbatch").exists()


def _driver(runs: list[plan.PointRun], slots: int = 1) -> str:
    """A Python program that runs `runs` (as PointRun fields) with the local runner, as a sweep does."""
    fields = [(r.index, r.name, r.overrides, str(r.workdir), r.command, r.status, r.num_steps,
               r.num_epochs) for r in runs]
    return textwrap.dedent(f"""
        import pathlib
        from cnnjax.sweep import devices, local, plan
        runs = [plan.PointRun(i, n, o, pathlib.Path(w), c, s, k, e) for i, n, o, w, c, s, k, e
                in {fields!r}]
        local.run_local(runs, [devices.Slot({{}})] * {slots}, poll_seconds=0.02)
        """)


def test_a_niced_sweep_runs_every_point_and_its_threads_at_that_niceness(tmp_path):
    """`nice -n N ./launch.sh CONFIG --sweep` is enough: the runner starts its points with the
    niceness it has, and the threads a point starts (XLA's) inherit it from the point."""
    report = tmp_path / "niceness"
    run = _fake_run(tmp_path, 0, textwrap.dedent(f"""
        import threading
        seen = []
        thread = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, 0)))
        thread.start(); thread.join()
        open({str(report)!r}, "w").write(f"{{os.nice(0)}} {{seen[0]}}")
        """).replace("\n", "\n        "))
    subprocess.run(["nice", "-n", "7", sys.executable, "-c", _driver([run])], cwd=REPO, check=True,
                   capture_output=True, timeout=60)
    expected = min(os.nice(0) + 7, 19)  # nice adds to this test's own niceness, up to 19
    assert report.read_text() == f"{expected} {expected}"


# A stand-in for the training: it resumes from its newest 'checkpoint' (a step folder, as
# cnnjax.train.workdir.has_checkpoints reads them), logs steps to 4 as the loop does (a compile
# record first) and, on its first attempt only when BLOCK is in its folder, stops at step 2 until
# killed. That the real training resumes from its checkpoint after kill -9 is
# tests/train/test_faults.py::test_kill_9_right_after_a_commit_resumes_bit_identical.
WAITING = "step 2: waiting to be killed"
TRAINER = textwrap.dedent("""
    import json, pathlib, sys, time
    w = pathlib.Path(sys.argv[1])
    ckpts = w / "checkpoints"
    ckpts.mkdir(exist_ok=True)
    start = max((int(p.name) for p in ckpts.iterdir() if p.name.isdigit()), default=0)
    print(f"resumed from the checkpoint at step {start}" if start else "new run", flush=True)
    with (w / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": start, "time": time.time(), "compile_seconds": 0.1}) + "\\n")
        for step in range(start + 1, 5):
            f.write(json.dumps({"step": step, "time": time.time(), "train/loss": 1.0}) + "\\n")
            f.flush()
            (ckpts / str(step)).mkdir()
            if step == 2 and start == 0 and (w / "BLOCK").exists():
                print("step 2: waiting " + "to be killed", flush=True)
                time.sleep(120)
    """)


def test_a_sweep_killed_with_sigkill_resumes_every_unfinished_point_on_a_rerun(tmp_path):
    """SIGKILL of the runner and its running point (no chance to save or record anything), then the
    same sweep again: the finished point is skipped, the killed one resumes from its checkpoint with
    the same command, the one never started starts; `sweep status` in between names the kill."""
    def point(index):
        workdir = tmp_path / "sweep" / f"p{index}"
        return plan.PointRun(index, f"p{index}", {"i": index}, workdir,
                             [sys.executable, "-c", TRAINER, str(workdir)], status.NEW, 4, 1.0)

    runs = [point(i) for i in range(3)]
    plan.write_records(runs, tmp_path / "sweep", "c.py", [], parallel=1)
    (runs[1].workdir / "BLOCK").touch()
    tool = subprocess.Popen([sys.executable, "-c", _driver(runs)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        # a whole line: the log's first lines are the command, which holds the program's text
        while time.time() < deadline and WAITING not in files_text(runs[1].log).splitlines():
            time.sleep(0.02)
        point_pid = json.loads((runs[1].workdir / "running.json").read_text())["pid"]
        tool.kill()
        os.kill(point_pid, signal.SIGKILL)
        tool.wait(timeout=30)
        while time.time() < deadline and _alive(point_pid):  # until init has reaped the orphan
            time.sleep(0.02)
    finally:
        tool.kill()
    states = status.read_sweep(tmp_path / "sweep")
    assert [(p.name, p.state) for p in states] == [("p0", status.FINISHED), ("p1", status.FAILED),
                                                   ("p2", status.PENDING)]
    assert states[1].reason == ("stopped without an exit status (killed?) short of its last step, "
                                "last logged step 2: step 2: waiting to be killed")
    assert [plan.current_status(r) for r in runs] == [status.FINISHED, status.PARTIAL, status.NEW]

    for run in runs:
        run.status = plan.current_status(run)
    logs = {r.name: files_text(r.log) for r in runs}
    rerun = subprocess.run([sys.executable, "-c", _driver(runs)], cwd=REPO, capture_output=True,
                           text=True, timeout=60)
    assert "p0" not in rerun.stdout and "p1: resuming on" in rerun.stdout, rerun.stdout
    assert "p2: started on" in rerun.stdout
    assert files_text(runs[0].log) == logs["p0"]  # skipped: it never ran again
    # the same command again (so the training resumes by itself), which this time resumed
    command = shlex.join(runs[1].command)
    assert logs["p1"].count(command) == 1 and files_text(runs[1].log).count(command) == 2
    second = files_text(runs[1].log)[len(logs["p1"]):].splitlines()
    assert "resumed from the checkpoint at step 2" in second and WAITING not in second
    assert [p.state for p in status.read_sweep(tmp_path / "sweep")] == [status.FINISHED] * 3


def files_text(path: pathlib.Path) -> str:
    return path.read_text() if path.exists() else ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_point_still_running_from_a_killed_sweep_is_not_started_again(tmp_path, capsys):
    """SIGKILL to the runner alone leaves its point training (a session of its own). A rerun must
    not start a second process in that workdir: the point is named as not started, and its
    running.json (how `sweep status` follows the survivor) is left as it is."""
    busy, free = _fake_run(tmp_path, 0, "pass"), _fake_run(tmp_path, 1, "pass")
    busy.workdir.mkdir()
    holder = subprocess.Popen(  # the survivor, holding the workdir's lock as a training run does
        [sys.executable, "-c", "import time\nfrom cnnjax.train.workdir import WorkdirLock\n"
         f"WorkdirLock({str(busy.workdir)!r}).acquire()\nprint('locked', flush=True)\n"
         "time.sleep(60)"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        running = json.dumps({"pid": holder.pid, "host": "h"})
        (busy.workdir / "running.json").write_text(running)
        failed = local.run_local([busy, free], [devices.Slot({})], poll_seconds=0.02)
    finally:
        holder.kill()
        holder.wait()
    assert [run.name for run, _ in failed] == ["p0"]
    assert failed[0][1].startswith(f"workdir {busy.workdir} is in use by another run (pid "
                                   f"{holder.pid} on ")
    assert f"[1/2] p0: FAILED: not started: workdir {busy.workdir}" in capsys.readouterr().out
    assert (busy.workdir / "running.json").read_text() == running
    assert not busy.log.exists() and not (busy.workdir / "exit_code").exists()
    assert (free.workdir / "exit_code").read_text() == "0\n"  # the next point took the slot
