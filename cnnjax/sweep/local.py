"""The local backend: the points of a plan on this machine, `len(slots)` at a time, each in its own
process, on shares of the visible GPUs or CPU cores (cnnjax.sweep.devices).

Every attempt appends to the point's log.txt, records its process in running.json while it runs and
leaves its exit status in exit_code (cnnjax.sweep.files), so `./launch.sh sweep status` can tell a
running point from one that died. A failed point is named with the reason and its log's last line.

The points (and the threads they start) inherit this tool's niceness: `nice -n 19 ./launch.sh ...
--sweep` runs the whole sweep at low priority. Each point has a session of its own, so SIGKILL to
this tool alone leaves its points running (kill them too: their pids are in running.json); run
again while they do, it starts none of them (each holds its workdir's lock) and names them as failed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import os
import pathlib
import shlex
import signal
import socket
import subprocess
import time
from typing import IO

from cnnjax.sweep import files, status
from cnnjax.sweep.devices import Slot, device_slots, visible_gpus
from cnnjax.sweep.plan import PointRun, write_records
from cnnjax.train.metrics import format_duration, read_metrics
from cnnjax.train.workdir import WorkdirBusyError, probe_lock


def _result_text(run: PointRun) -> str:
    records = read_metrics(run.workdir)
    if not records:
        return ""
    step = max(int(r.get("step", 0)) for r in records)
    evals = [r for r in records if "eval/top1" in r]
    text = f"step {step}"
    if evals:
        text += f", eval/top1 {evals[-1]['eval/top1']:.2%}"
    return text


class _Say:
    """Numbered one-line status messages: '[3/6] name: what happened'."""

    def __init__(self, total: int):
        self.total = total
        self.width = len(str(total))

    def __call__(self, run: PointRun, text: str) -> None:
        print(f"[{run.index + 1:>{self.width}}/{self.total}] {run.name}: {text}", flush=True)


def _start(run: PointRun, slot: Slot, cwd: pathlib.Path | None) -> tuple[subprocess.Popen, IO]:
    env = {**os.environ, **slot.env}  # a slot's XLA_FLAGS already include the inherited ones
    run.workdir.mkdir(parents=True, exist_ok=True)
    (run.workdir / files.EXIT_FILE).unlink(missing_ok=True)  # the last attempt's; this one runs now
    log = run.log.open("a")
    log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {slot.describe()} {shlex.join(run.command)}\n")
    log.flush()
    # Own session: Ctrl-C reaches only this tool, which then asks each point to save and stop (SIGTERM).
    proc = subprocess.Popen(run.command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            start_new_session=True)
    files.write_json(run.workdir / files.RUNNING_FILE, {"pid": proc.pid, "host": socket.gethostname()})
    if slot.cpus:
        # Pinned right after exec, while the interpreter is still starting: the threads XLA and
        # TensorFlow create later inherit the mask. (A preexec_fn would run Python between fork
        # and exec, which is unsafe in a multithreaded parent.)
        try:
            os.sched_setaffinity(proc.pid, slot.cpus)
        except (ProcessLookupError, PermissionError):
            pass  # it already exited; its status is collected as usual
    return proc, log


def _busy(run: PointRun) -> str:
    """Why the point cannot start now ('' when it can): another process holds its workdir's lock.
    Starting it anyway would only fail on the lock, mark the point failed in its exit_code and
    write over the running.json by which `sweep status` follows the process that holds it."""
    try:
        probe_lock(run.workdir)
    except WorkdirBusyError as e:
        return str(e)
    return ""


def _ended(run: PointRun, code: int, log: IO) -> tuple[str, str]:
    """Records how an attempt ended (exit_code written, running.json removed); returns its
    (state, reason) as `sweep status` will report it."""
    log.close()
    files.write_exit_code(run.workdir, code)
    (run.workdir / files.RUNNING_FILE).unlink(missing_ok=True)
    records = [r for r in read_metrics(run.workdir) if isinstance(r, dict) and "step" in r]
    facts = dataclasses.replace(
        status.point_facts(run.workdir, records), exit_code=code, alive=False, pid=None,
        target_known=True, num_steps=max(run.num_steps, 0),
        finished=status.is_finished(records, run.num_steps, run.num_epochs))
    return status.decide(facts)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a batch system ending this tool) is handled like Ctrl-C: the points are told to save."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run_local(plan: list[PointRun], slots: list[Slot], cwd: pathlib.Path | None = None,
              poll_seconds: float = 0.2) -> list[tuple[PointRun, str]]:
    """Runs the unfinished points, len(slots) at a time; returns (point, reason) of each that failed."""
    say = _Say(len(plan))
    pending = collections.deque(r for r in plan if r.status != status.FINISHED)
    free = list(slots)
    running: dict[subprocess.Popen, tuple[PointRun, Slot, float, IO]] = {}
    failed = []
    with _sigterm_as_interrupt():
        try:
            while pending or running:
                while pending and free:
                    run, slot = pending.popleft(), free.pop(0)
                    busy = _busy(run)
                    if busy:  # e.g. left running by an earlier run of this sweep killed with -9
                        free.insert(0, slot)
                        failed.append((run, busy))
                        say(run, f"FAILED: not started: {busy}")
                        continue
                    proc, log = _start(run, slot, cwd)
                    running[proc] = (run, slot, time.monotonic(), log)
                    verb = "resuming" if run.status == status.PARTIAL else "started"
                    say(run, f"{verb} on {slot.describe()} (log: {run.log})")
                time.sleep(poll_seconds)
                for proc in [p for p in running if p.poll() is not None]:
                    run, slot, t0, log = running.pop(proc)
                    free.append(slot)
                    took = format_duration(time.monotonic() - t0)
                    state, reason = _ended(run, proc.returncode, log)
                    if state == status.FINISHED:
                        say(run, f"finished in {took} ({_result_text(run)})")
                        continue
                    failed.append((run, reason))
                    say(run, f"FAILED after {took}: {reason} [see {run.log}]")
        except KeyboardInterrupt:
            for proc in running:
                proc.terminate()  # SIGTERM: the training loop saves a checkpoint and exits
            for proc, (run, _, _, log) in running.items():
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                _ended(run, proc.returncode, log)
                say(run, "interrupted; run the sweep again to resume it")
            raise
    return failed


class LocalBackend:
    """cnnjax.sweep.backends.Backend on this machine: --parallel points side by side, each on
    --devices-per-run GPUs (or CPU devices), by default the visible ones shared out."""

    name = "local"
    description = "run the points on this machine, --parallel at a time"
    absolute_paths = False

    def add_arguments(self, parser: argparse.ArgumentParser) -> list[str]:
        return []  # --parallel and --devices-per-run are the sweep command's own

    def check(self, args: argparse.Namespace) -> None:
        pass

    def run(self, plan: list[PointRun], sweep_dir: pathlib.Path, config_spec: str, base: list[str],
            args: argparse.Namespace) -> int:
        slots = device_slots(args.parallel, args.devices_per_run, visible_gpus(),
                             sorted(os.sched_getaffinity(0)), os.environ.get("XLA_FLAGS", ""))
        if args.dry_run:
            print(f"{len(slots)} at a time on: " + " | ".join(s.describe() for s in slots))
            for run in plan:
                print(f"[{run.status}] {shlex.join(run.command)} >> {shlex.quote(str(run.log))} 2>&1")
            return 0
        write_records(plan, sweep_dir, config_spec, base, parallel=len(slots))
        failed = run_local(plan, slots)
        finished = sum(r.status == status.FINISHED for r in plan)
        ran = len(plan) - finished
        print(f"sweep done: {ran} run ({ran - len(failed)} finished, {len(failed)} failed), {finished} "
              f"skipped as already finished; results: ./launch.sh summarize {sweep_dir}")
        for point, reason in failed:
            print(f"  FAILED {point.name}: {reason} [see {point.log}]")
        return 1 if failed else 0


BACKEND = LocalBackend()
