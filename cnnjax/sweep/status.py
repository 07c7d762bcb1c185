"""Where each point of a sweep stands.

Two vocabularies. Planning a run: NEW (start it), PARTIAL (resume it) or FINISHED (skip it), from
the point's metrics. Reporting on a sweep (`./launch.sh sweep status DIR`, summarize, the local
runner): FINISHED, FAILED (with a one-line reason that ends in the last line of its log), RUNNING or
PENDING, from everything the sweep folder holds (see cnnjax.sweep.files) and what Slurm says.

A point has failed when its last attempt exited non-zero (the training's exit codes are in
cnnjax.errors; a trainer that predates exit code 3 reports divergence as a user error whose message
says 'loss is nan', and that counts as diverged too), exited 0 short of its last step, or ended
without leaving an exit status (killed, cancelled, out of time) and is no longer queued or running.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cnnjax.errors import EXIT_BUG, EXIT_DIVERGED, EXIT_PREEMPTED, EXIT_USER_ERROR, UserError
from cnnjax.sweep import files
from cnnjax.train.metrics import read_metrics

NEW, PARTIAL, FINISHED = "new", "partial", "finished"
FAILED, RUNNING, PENDING = "failed", "running", "pending"
STATES = (FINISHED, FAILED, RUNNING, PENDING)

# Slurm job states (squeue/sacct) that mean the task is still alive, or still waiting to start.
SLURM_RUNNING = frozenset({"RUNNING", "COMPLETING", "CONFIGURING", "STAGE_OUT", "SUSPENDED",
                           "RESIZING", "SIGNALING", "STOPPED"})
SLURM_QUEUED = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})
_DIVERGED = re.compile(r"loss is [+-]?(nan|inf)", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------------
# Planning: finished or not
# ---------------------------------------------------------------------------------------------------

def is_finished(records: Sequence[Mapping[str, Any]], num_steps: int, num_epochs: float) -> bool:
    """True when the metrics of a run show it reached its last step.

    With num_steps > 0 the last step is num_steps. Otherwise the training loop runs
    max(ceil(num_epochs * steps_per_epoch), 1) steps, and steps_per_epoch is read back from any
    record's 'train/epoch' (= step / steps_per_epoch), so the same float arithmetic gives the same step.
    """
    last = max((int(r["step"]) for r in records if "step" in r), default=-1)
    if num_steps > 0:
        return last >= num_steps
    for record in reversed(records):
        epoch = float(record.get("train/epoch", 0.0))
        if epoch > 0 and "step" in record:
            steps_per_epoch = max(round(int(record["step"]) / epoch), 1)
            return last >= max(math.ceil(float(num_epochs) * steps_per_epoch), 1)
    return False


def point_status(records: Sequence[Mapping[str, Any]], has_checkpoints: bool, num_steps: int,
                 num_epochs: float) -> str:
    """FINISHED (skip it), PARTIAL (resume it: same command) or NEW (start it)."""
    if is_finished(records, num_steps, num_epochs):
        return FINISHED
    return PARTIAL if records or has_checkpoints else NEW


# ---------------------------------------------------------------------------------------------------
# Reporting: finished, failed, running or pending, and why
# ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Facts:
    """What is known about one point, from its folder and, where it was submitted, from Slurm."""

    exit_code: int | None = None     # of the last attempt; None while it runs or when none was written
    finished: bool = False           # its metrics reached the last step
    target_known: bool = True        # num_steps/num_epochs were found, so `finished` means something
    last_step: int | None = None     # None: no metrics record at all
    num_steps: int = 0               # the last step when known ahead (num_steps > 0), else 0
    metrics_cut: bool = False        # metrics.jsonl ends in a cut line
    started: bool = False            # an attempt began (its log exists)
    last_line: str = ""              # the last line of its log
    pid: int | None = None           # a local run's process, from running.json
    host: str = ""
    alive: bool | None = None        # that process: alive, gone, or None (no record / other host)
    slurm_task: str = ""             # 'JOB_INDEX' once the point was submitted to Slurm
    slurm_state: str | None = None   # squeue's (or sacct's) state; None: Slurm does not know it
    slurm_reason: str = ""           # why a pending task waits (squeue %r)
    slurm_queried: bool = False      # squeue answered, so a task missing from it has left the queue
    slurm_line: str = ""             # the last line Slurm itself wrote for the task (slurm/*.out)


def failure_kind(code: int, line: str = "") -> str:
    """What a non-zero exit status means, in a few words (cnnjax.errors defines the codes)."""
    if code == EXIT_DIVERGED or (code == EXIT_USER_ERROR and _DIVERGED.search(line)):
        return "diverged"
    if code == EXIT_USER_ERROR:
        return "user error"
    if code == EXIT_PREEMPTED:
        return "preempted (its checkpoint is saved: run the sweep again to resume it)"
    if code == EXIT_BUG:
        return "crashed"
    if code == 130:
        return "interrupted"
    signum = -code if code < 0 else code - 128 if code > 128 else 0
    if signum:
        try:
            return f"killed by {signal.Signals(signum).name}"
        except ValueError:
            return f"killed by signal {signum}"
    return "failed"


def _progress(f: Facts) -> str:
    if f.last_step is None:
        return "no metrics yet"
    return f"step {f.last_step}" + (f" of {f.num_steps}" if f.num_steps > 0 else "")


def _at(f: Facts) -> str:
    return f", last logged step {f.last_step}" if f.last_step is not None else \
        " before logging any metrics"


def _tail(line: str) -> str:
    return f": {line}" if line else " (its log is empty)"


def decide(f: Facts) -> tuple[str, str]:
    """(state, one-line reason) of a point from its facts; the reason of a failure ends in the last
    line of its log (or of Slurm's output, when Slurm ended the task)."""
    if f.slurm_state in SLURM_RUNNING:
        return RUNNING, f"Slurm task {f.slurm_task} {f.slurm_state.lower()}, {_progress(f)}"
    if f.slurm_state in SLURM_QUEUED:
        why = f" ({f.slurm_reason})" if f.slurm_reason and f.slurm_reason != "None" else ""
        return PENDING, f"queued as Slurm task {f.slurm_task}{why}"
    if f.alive:
        return RUNNING, f"pid {f.pid} on {f.host}, {_progress(f)}"
    if f.exit_code:
        return FAILED, (f"{failure_kind(f.exit_code, f.last_line)} (exit status {f.exit_code})"
                        f"{_at(f)}{_tail(f.last_line)}")
    if f.finished or (f.exit_code == 0 and not f.target_known):
        return FINISHED, _progress(f)
    if f.exit_code == 0:
        if f.last_step is None:
            what = "exited with status 0 but wrote no metrics"
        else:
            what = f"exited with status 0 short of its last step ({_progress(f)})"
        cut = "; metrics.jsonl ends in a cut line" if f.metrics_cut else ""
        return FAILED, f"{what}{cut}{_tail(f.last_line)}"
    # No exit status, and nothing says it is still running or queued.
    line = f.slurm_line or f.last_line
    if f.slurm_state is not None:  # from sacct: the task has ended
        return FAILED, (f"Slurm task {f.slurm_task} ended {f.slurm_state.lower()} without an exit "
                        f"status{_at(f)}{_tail(line)}")
    if f.slurm_task and not f.slurm_queried:
        state = RUNNING if f.started else PENDING
        return state, (f"submitted as Slurm task {f.slurm_task}; squeue did not answer, so "
                       f"unconfirmed ({_progress(f)})")
    if f.slurm_task and f.started:
        return FAILED, (f"Slurm task {f.slurm_task} left the queue without an exit status (killed by a "
                        f"time limit, scancel or a node failure?){_at(f)}{_tail(line)}")
    if f.slurm_task:
        return FAILED, f"Slurm task {f.slurm_task} left the queue without starting{_tail(line)}"
    if f.alive is None and f.pid is not None:
        return RUNNING, f"pid {f.pid} on {f.host} (another machine: not checked), {_progress(f)}"
    if f.started or f.last_step is not None:
        if not f.target_known:
            return FAILED, ("cannot tell whether it finished: neither sweep_point.json nor config.json "
                            f"gives num_steps{_tail(line)}")
        cut = "; metrics.jsonl ends in a cut line" if f.metrics_cut else ""
        return FAILED, (f"stopped without an exit status (killed?) short of its last step{_at(f)}"
                        f"{cut}{_tail(line)}")
    return PENDING, "not started"


@dataclasses.dataclass(frozen=True)
class PointState:
    """One point as reported: which it is, what state it is in, and why."""

    index: int
    name: str
    overrides: dict
    workdir: pathlib.Path
    state: str
    reason: str
    last_step: int | None

    @property
    def log(self) -> pathlib.Path:
        return self.workdir / files.LOG_FILE


def sweep_points(sweep_dir: pathlib.Path) -> list[tuple[str, dict]]:
    """(name, overrides) of every point in sweep.json, in sweep order; one line when there is none."""
    record = files.read_json(sweep_dir / files.SWEEP_FILE)
    if record is None or not isinstance(record.get("points"), list):
        if not sweep_dir.is_dir():
            raise FileNotFoundError(f"sweep folder {sweep_dir} does not exist")
        raise UserError(f"{sweep_dir} has no readable {files.SWEEP_FILE}, so it is not a sweep folder "
                        "(a sweep writes it when it starts; --dry-run writes none)")
    return [(str(p["name"]), dict(p.get("overrides") or {})) for p in record["points"]]


def slurm_tasks(sweep_dir: pathlib.Path) -> dict[int, str]:
    """Point index -> 'JOB_INDEX' of its latest Slurm submission (from slurm/jobs.jsonl)."""
    tasks: dict[int, str] = {}
    path = sweep_dir / files.SLURM_DIR / files.JOBS_FILE
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return tasks
    for line in lines:
        try:
            job = json.loads(line)
            tasks.update({int(i): f"{job['job']}_{int(i)}" for i in job["indices"]})
        except (ValueError, KeyError, TypeError):
            continue  # a cut line: the submission before it still counts
    return tasks


def _targets(workdir: pathlib.Path) -> tuple[int, float] | None:
    """(num_steps, num_epochs) of a point: from sweep_point.json, else the run's own config.json."""
    for name in (files.POINT_FILE, "config.json"):
        record = files.read_json(workdir / name)
        if record and "num_steps" in record and "num_epochs" in record:
            try:
                return int(record["num_steps"]), float(record["num_epochs"])
            except (TypeError, ValueError):
                continue
    return None


def _local_process(workdir: pathlib.Path) -> tuple[int | None, str, bool | None]:
    """(pid, host, alive) from running.json; alive is None when there is no record or it is another
    host's process."""
    record = files.read_json(workdir / files.RUNNING_FILE)
    if not record or "pid" not in record:
        return None, "", None
    pid, host = int(record["pid"]), str(record.get("host", ""))
    if host != socket.gethostname():
        return pid, host, None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid, host, False
    except PermissionError:
        pass  # alive, owned by someone else
    return pid, host, True


def point_facts(workdir: pathlib.Path, records: Sequence[Mapping[str, Any]]) -> Facts:
    """The facts a point's folder holds (everything but Slurm's)."""
    targets = _targets(workdir)
    last_step = max((int(r["step"]) for r in records if "step" in r), default=None)
    pid, host, alive = _local_process(workdir)
    return Facts(exit_code=files.read_exit_code(workdir),
                 finished=bool(targets) and is_finished(records, *targets),
                 target_known=targets is not None, last_step=last_step,
                 num_steps=targets[0] if targets else 0,
                 metrics_cut=files.metrics_cut_short(workdir),
                 started=(workdir / files.LOG_FILE).is_file(),
                 last_line=files.last_line(workdir / files.LOG_FILE),
                 pid=pid, host=host, alive=alive)


SlurmLookup = Callable[[Sequence[str]], tuple[dict[str, tuple[str, str]], bool]]


def read_sweep(sweep_dir: str | pathlib.Path, slurm_lookup: SlurmLookup | None = None,
               ) -> list[PointState]:
    """The state of every point of the sweep in `sweep_dir`, in sweep order.

    `slurm_lookup(task_ids)` -> ({task: (state, reason)}, whether Slurm answered), e.g.
    cnnjax.sweep.slurm.task_states (squeue, then sacct where accounting is on); without one, the
    points submitted to Slurm are reported from their folders alone, as unconfirmed.
    """
    sweep_dir = pathlib.Path(sweep_dir)
    points = sweep_points(sweep_dir)
    tasks = slurm_tasks(sweep_dir)
    slurm_states: dict[str, tuple[str, str]] = {}
    queried = False
    if tasks and slurm_lookup is not None:
        slurm_states, queried = slurm_lookup(sorted(set(tasks.values())))
    out = []
    for index, (name, overrides) in enumerate(points):
        workdir = sweep_dir / name
        records = [r for r in read_metrics(workdir) if isinstance(r, dict) and "step" in r]
        facts = point_facts(workdir, records)
        task = tasks.get(index, "")
        if task:
            state, reason = slurm_states.get(task, (None, ""))
            facts = dataclasses.replace(
                facts, slurm_task=task, slurm_state=state, slurm_reason=reason,
                slurm_queried=queried,
                slurm_line=files.last_line(sweep_dir / files.SLURM_DIR / f"{task}.out"))
        state, reason = decide(facts)
        out.append(PointState(index, name, overrides, workdir, state, reason, facts.last_step))
    return out


def counts(states: Sequence[PointState]) -> dict[str, int]:
    """{state: how many points are in it} for the four report states, in that order."""
    return {s: sum(p.state == s for p in states) for s in STATES}


def report(states: Sequence[PointState], sweep_dir: pathlib.Path) -> str:
    """The text of `./launch.sh sweep status`: a count line, then one line per point."""
    n = counts(states)
    lines = [f"sweep {sweep_dir}: {len(states)} points: "
             + ", ".join(f"{n[s]} {s}" for s in STATES)]
    width = len(str(len(states)))
    name_width = min(max((len(p.name) for p in states), default=0), 60)
    for p in states:
        where = f" [log: {p.log}]" if p.state == FAILED else ""
        lines.append(f"[{p.index + 1:>{width}}/{len(states)}] {p.name:<{name_width}}  "
                     f"{p.state.upper() if p.state == FAILED else p.state:<8}  {p.reason}{where}")
    return "\n".join(lines) + "\n"
