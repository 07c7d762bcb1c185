"""Where each point of a sweep stands.

Two vocabularies. Planning a run: NEW (start it), PARTIAL (resume it) or FINISHED (skip it), from
the point's metrics. Reporting on a sweep (`./launch.sh sweep status DIR`, summarize, the local
runner): FINISHED, FAILED (with a one-line reason that ends in the last line of its log), RUNNING or
PENDING, from everything the sweep folder holds (see cnnjax.sweep.files) and what Slurm says.

A point has failed when its last attempt exited non-zero (the training's exit codes are in
cnnjax.errors; a trainer that predates exit code 3 reports divergence as a user error whose message
says 'loss is nan', and that counts as diverged too), exited 0 short of its last step, or ended
without leaving an exit status (killed, cancelled, out of time) and is no longer queued or running.

Progress and ETA, from the 'time' (unix seconds) of each metrics.jsonl record, per attempt (each
start of the training logs a 'compile_seconds' record first): a finished point shows its training
time (every attempt from the start of its compile to its last record). A running point shows its
percent done and the steps left times its recent seconds per step (over its latest attempt's last
SPEED_WINDOW logged steps, evaluations and checkpoints in that span included, compile and time
between attempts not); one silent for longer than its silence limit (3x its longest gap between
records, at least 5 minutes) says so and shows 'ETA ?' (stopped, suspended, or a very long
evaluation). A pending point (and a running one with no speed yet) is estimated from the points that
logged a speed (finished, running, or stopped), of the same model where there are any, else of the
sweep (said as 'of other models, a rough guess'): their median seconds per step (per epoch for
epoch-based points) times its length (from sweep_point.json, else sweep.json); 'ETA ?' when there
are none. The time left for the sweep assumes the recorded --parallel points at a time
(else as many as run now) and that the pending points take the first free slot in sweep order;
failed points are left out (only a rerun runs them again).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import math
import os
import pathlib
import re
import signal
import socket
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cnnjax.errors import EXIT_BUG, EXIT_DIVERGED, EXIT_PREEMPTED, EXIT_USER_ERROR, UserError
from cnnjax.sweep import files
from cnnjax.train.metrics import format_duration, read_metrics

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
    target = target_steps(records, num_steps, num_epochs)
    return target is not None and last >= target


def steps_per_epoch(records: Sequence[Mapping[str, Any]]) -> int | None:
    """Read back from the last record with a 'train/epoch' (= step / steps_per_epoch); None: none has."""
    for record in reversed(records):
        epoch = float(record.get("train/epoch", 0.0))
        if epoch > 0 and "step" in record:
            return max(round(int(record["step"]) / epoch), 1)
    return None


def target_steps(records: Sequence[Mapping[str, Any]], num_steps: int, num_epochs: float
                 ) -> int | None:
    """The step a run ends at: num_steps when > 0, else max(ceil(num_epochs * steps_per_epoch), 1)
    as the training loop computes it; None while no record gives steps_per_epoch."""
    if num_steps > 0:
        return num_steps
    per_epoch = steps_per_epoch(records)
    return None if per_epoch is None else max(math.ceil(float(num_epochs) * per_epoch), 1)


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
    num_steps: int = 0               # the last step where known (num_steps > 0, or from the records
                                     # of an epoch-based run), else 0
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
    progress: Progress = dataclasses.field(default_factory=lambda: Progress())

    @property
    def log(self) -> pathlib.Path:
        return self.workdir / files.LOG_FILE


def sweep_points(sweep_dir: pathlib.Path) -> list[tuple[str, dict, tuple[int, float] | None]]:
    """(name, overrides, (num_steps, num_epochs) or None) of every point in sweep.json, in sweep
    order; one line when there is none."""
    record = files.read_json(sweep_dir / files.SWEEP_FILE)
    if record is None or not isinstance(record.get("points"), list):
        if not sweep_dir.is_dir():
            raise FileNotFoundError(f"sweep folder {sweep_dir} does not exist")
        raise UserError(f"{sweep_dir} has no readable {files.SWEEP_FILE}, so it is not a sweep folder "
                        "(a sweep writes it when it starts; --dry-run writes none)")
    return [(str(p["name"]), dict(p.get("overrides") or {}), _read_targets(p))
            for p in record["points"]]


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


def _read_targets(record: Any) -> tuple[int, float] | None:
    """(num_steps, num_epochs) from a record that has both, else None."""
    if not isinstance(record, dict) or "num_steps" not in record or "num_epochs" not in record:
        return None
    try:
        return int(record["num_steps"]), float(record["num_epochs"])
    except (TypeError, ValueError):
        return None


def _targets(workdir: pathlib.Path, planned: tuple[int, float] | None = None,
             ) -> tuple[int, float] | None:
    """(num_steps, num_epochs) of a point: from sweep_point.json, else the run's own config.json,
    else `planned` (its entry in sweep.json)."""
    for name in (files.POINT_FILE, "config.json"):
        targets = _read_targets(files.read_json(workdir / name))
        if targets is not None:
            return targets
    return planned


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


def point_facts(workdir: pathlib.Path, records: Sequence[Mapping[str, Any]],
                targets: tuple[int, float] | None = None) -> Facts:
    """The facts a point's folder holds (everything but Slurm's); `targets` as _targets gives them,
    read from the folder when not given."""
    targets = targets or _targets(workdir)
    last_step = max((int(r["step"]) for r in records if "step" in r), default=None)
    pid, host, alive = _local_process(workdir)
    return Facts(exit_code=files.read_exit_code(workdir),
                 finished=bool(targets) and is_finished(records, *targets),
                 target_known=targets is not None, last_step=last_step,
                 num_steps=(targets and target_steps(records, *targets)) or 0,
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
    for index, (name, overrides, planned) in enumerate(points):
        workdir = sweep_dir / name
        records = [r for r in read_metrics(workdir) if isinstance(r, dict) and "step" in r]
        targets = _targets(workdir, planned)
        facts = point_facts(workdir, records, targets)
        task = tasks.get(index, "")
        if task:
            state, reason = slurm_states.get(task, (None, ""))
            facts = dataclasses.replace(
                facts, slurm_task=task, slurm_state=state, slurm_reason=reason,
                slurm_queried=queried,
                slurm_line=files.last_line(sweep_dir / files.SLURM_DIR / f"{task}.out"))
        state, reason = decide(facts)
        progress = measure(records, *targets) if targets else measure(records, 0, 0.0)
        heard = [t for t in (progress.heard, _mtime(workdir / files.LOG_FILE)) if t is not None]
        progress = dataclasses.replace(progress, heard=max(heard, default=None),
                                       length=progress.length if targets else 0.0)
        out.append(PointState(index, name, overrides, workdir, state, reason, facts.last_step,
                              progress))
    return out


def _mtime(path: pathlib.Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def recorded_parallel(sweep_dir: pathlib.Path) -> int | None:
    """How many points the sweep runs at once, as its last run recorded in sweep.json (the local
    runner's slots, a Slurm array's throttle); None when not recorded."""
    record = files.read_json(sweep_dir / files.SWEEP_FILE) or {}
    value = record.get("parallel")
    return value if isinstance(value, int) and value > 0 else None


def counts(states: Sequence[PointState]) -> dict[str, int]:
    """{state: how many points are in it} for the four report states, in that order."""
    return {s: sum(p.state == s for p in states) for s in STATES}


def report(states: Sequence[PointState], sweep_dir: pathlib.Path, now: float | None = None,
           parallel: int | None = None) -> str:
    """The text of `./launch.sh sweep status`: a count line, one line per point (its state, why,
    and its progress and ETA: see `eta`), and the time left for the whole sweep (`sweep_left`).

    `now`: unix time (default: the clock); `parallel`: how many points run at once, where known
    (recorded_parallel)."""
    now = time.time() if now is None else now
    n = counts(states)
    lines = [f"sweep {sweep_dir}: {len(states)} points: "
             + ", ".join(f"{n[s]} {s}" for s in STATES)]
    width = len(str(len(states)))
    name_width = min(max((len(p.name) for p in states), default=0), 60)
    for p in states:
        text = eta(p, states, now).text
        where = f" [log: {p.log}]" if p.state == FAILED else f" | {text}" if text else ""
        lines.append(f"[{p.index + 1:>{width}}/{len(states)}] {p.name:<{name_width}}  "
                     f"{p.state.upper() if p.state == FAILED else p.state:<8}  {p.reason}{where}")
    left = sweep_left(states, now, parallel)
    if left:
        lines.append(left)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# Progress and ETA (pure: from the records and the clock given)
# ---------------------------------------------------------------------------------------------------

SPEED_WINDOW = 10        # logged steps over which a running point's recent speed is measured
SILENCE_FLOOR = 300.0    # seconds: a running point silent this long (and ...
SILENCE_FACTOR = 3.0     # ... this many times its longest gap between records) counts as stalled


@dataclasses.dataclass(frozen=True)
class Progress:
    """How far a point got and how fast, from its metrics.jsonl (see `measure`)."""

    step: int | None = None            # the last logged step
    total: int | None = None           # the step it ends at, where known
    sec_per_step: float | None = None  # recent wall seconds per step (seconds_per_step)
    wall: float | None = None          # training time so far over all attempts (wall_seconds)
    heard: float | None = None         # unix time of its last sign of life (a record, a log line)
    silence_limit: float = SILENCE_FLOOR  # silent longer than this while running: stalled
    unit: str = "step"                 # what its length counts: 'step' (num_steps > 0) or 'epoch'
    length: float = 0.0                # num_steps or num_epochs; 0: not known
    steps_per_unit: float | None = None


@dataclasses.dataclass(frozen=True)
class Eta:
    seconds: float | None  # time left; None: not known
    text: str              # what the report shows after the reason ('' for nothing)


def attempts(records: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """The records split by attempt: each start of the training logs a 'compile_seconds' record
    first (cnnjax.train.loop), so a resumed run's second attempt begins at its second one."""
    starts = [i for i, r in enumerate(records) if "compile_seconds" in r]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    return [list(records[a:b]) for a, b in itertools.pairwise([*starts, len(records)])
            if records[a:b]]


def _time(record: Mapping[str, Any]) -> float | None:
    """A record's 'time' (unix seconds); None when it has none (a trainer before the field) or one
    that is not a finite number (a hand-edited file)."""
    value = record.get("time")
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _timed(records: Sequence[Mapping[str, Any]]) -> list[tuple[int, float]]:
    """(step, unix time) per logged step, in step order; a step logged twice (train, then eval
    records) keeps its later time, so the interval that ends at it includes the evaluation."""
    latest = {int(r["step"]): _time(r) for r in records
              if "step" in r and _time(r) is not None}
    return sorted(latest.items())


def seconds_per_step(records: Sequence[Mapping[str, Any]], window: int = SPEED_WINDOW
                     ) -> float | None:
    """Recent wall seconds per step: over the last `window` logged steps of the latest attempt that
    logged two (an evaluation or checkpoint in that span counts, as later ones will; the compile
    before an attempt's first step and the time between attempts do not). None without times."""
    for part in reversed(attempts(records)):
        timed = _timed(part)[-(window + 1):]
        if len(timed) >= 2 and timed[-1][0] > timed[0][0] and timed[-1][1] > timed[0][1]:
            return (timed[-1][1] - timed[0][1]) / (timed[-1][0] - timed[0][0])
    return None  # (time that ran backwards, a clock set back, gives no speed either)


def wall_seconds(records: Sequence[Mapping[str, Any]]) -> float | None:
    """Training time over all attempts: each from the start of its compile (its first record's time
    less compile_seconds) to its last record. Startup before the compile is not in the records.
    None when a record has no time (a trainer that predates the 'time' field)."""
    total = 0.0
    parts = attempts(records)
    for part in parts:
        times = [t for r in part if (t := _time(r)) is not None]
        if len(times) < len(part):
            return None
        total += max(times) - min(times) + float(part[0].get("compile_seconds", 0.0))
    return total if parts else None


def silence_limit(records: Sequence[Mapping[str, Any]]) -> float:
    """How long a running point may log nothing before it counts as stalled: SILENCE_FACTOR times
    the longest gap between the steps its latest attempt logged (evaluations included), and at
    least SILENCE_FLOOR (a compile or a first evaluation has no earlier gap to compare with)."""
    timed = _timed(attempts(records)[-1]) if records else []
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(timed)]
    return max(SILENCE_FLOOR, SILENCE_FACTOR * max(gaps, default=0.0))


def measure(records: Sequence[Mapping[str, Any]], num_steps: int, num_epochs: float) -> Progress:
    """A point's Progress from its metrics records and its num_steps / num_epochs."""
    times = [t for r in records if (t := _time(r)) is not None]
    per_epoch = steps_per_epoch(records)
    return Progress(
        step=max((int(r["step"]) for r in records if "step" in r), default=None),
        total=target_steps(records, num_steps, num_epochs),
        sec_per_step=seconds_per_step(records), wall=wall_seconds(records),
        heard=max(times, default=None), silence_limit=silence_limit(records),
        unit="step" if num_steps > 0 else "epoch",
        length=float(num_steps) if num_steps > 0 else float(num_epochs),
        steps_per_unit=1.0 if num_steps > 0 else per_epoch)


def stalled_for(progress: Progress, now: float) -> float | None:
    """Seconds since a point's last sign of life when that is over its silence limit, else None."""
    if progress.heard is None or now - progress.heard <= progress.silence_limit:
        return None
    return now - progress.heard


def _rate(p: PointState) -> float | None:
    """Seconds per unit of length (a step, or an epoch) a point has shown: a finished one over its
    whole training, any other at its recent speed (a stalled or killed one's before it stopped is
    still a measurement)."""
    g = p.progress
    if p.state == FINISHED and g.wall and g.length > 0:
        return g.wall / g.length
    if p.state != FINISHED and g.sec_per_step and g.steps_per_unit:
        return g.sec_per_step * g.steps_per_unit
    return None


def estimate(p: PointState, states: Sequence[PointState]) -> tuple[float | None, str]:
    """(seconds p still needs, from where) from the other points of the sweep: the median seconds
    per step (per epoch for an epoch-based point) of the points that logged a speed, of the same
    model (its 'model.name' override) where there are any, else of all (and it says 'of other
    models'), times p's length left."""
    g = p.progress
    if g.length <= 0:
        return None, ""
    peers = [(q, r) for q in states if q is not p and q.progress.unit == g.unit
             and (r := _rate(q)) is not None]
    model = p.overrides.get("model.name")
    same = [(q, r) for q, r in peers if q.overrides.get("model.name") == model]
    chosen = same or peers
    if not chosen:
        return None, ""
    done = g.step / g.total if g.step and g.total else 0.0
    seconds = statistics.median(r for _, r in chosen) * g.length * max(1.0 - done, 0.0)
    # Said plainly when no point of its model has run: other models can differ several-fold in
    # time per step (plain20 against plain56: 2.8x), so the estimate is a rough one.
    like = ("like it" if same and len(same) < len(peers) else
            "of other models, a rough guess" if model is not None and not same else "of this sweep")
    return seconds, f"from {len(chosen)} point{'s' if len(chosen) > 1 else ''} {like}"


def _percent(g: Progress) -> str:
    # floored: a running point shows 100% only at its last step
    return f"{math.floor(100 * g.step / g.total)}%, " if g.step is not None and g.total else ""


def eta(p: PointState, states: Sequence[PointState], now: float) -> Eta:
    """What the report says of a point's time: a finished point's training time; a running one's
    percent done and time left at its recent speed (or from the other points while it has none,
    and '?' when it has logged nothing for longer than its silence limit: stopped or suspended);
    a pending one's estimated run time from the other points ('ETA ?' when there are none)."""
    g = p.progress
    if p.state == FINISHED:
        return Eta(0.0, f"trained in {format_duration(g.wall)}" if g.wall is not None else "")
    if p.state == FAILED:
        return Eta(None, "")
    if p.state == RUNNING:
        silent = stalled_for(g, now)
        if silent is not None:
            return Eta(None, f"{_percent(g)}silent for {format_duration(silent)} (stopped or "
                             "suspended?), ETA ?")
        if g.sec_per_step and g.total is not None and g.step is not None:
            left = max(g.total - g.step, 0) * g.sec_per_step
            return Eta(left, f"{_percent(g)}ETA {format_duration(left)} at "
                             f"{g.sec_per_step:.3g} s/step")
    seconds, source = estimate(p, states)
    if seconds is None:
        why = "nothing to estimate from yet" if g.length > 0 else "its length is not recorded"
        return Eta(None, f"{_percent(g)}ETA ? ({why})")
    what = "ETA" if p.state == RUNNING else "needs"
    return Eta(seconds, f"{_percent(g)}{what} ~{format_duration(seconds)} ({source})")


def time_left(running: Sequence[float], pending: Sequence[float], slots: int) -> float:
    """When the last point ends: each running point holds a slot for its time left, and each pending
    one, in sweep order, takes the first slot to come free (as the local runner does)."""
    free = sorted([*running, *[0.0] * max(slots - len(running), 0)])
    for seconds in pending:
        heapq.heapreplace(free, free[0] + seconds)
    return max(free, default=0.0)


def sweep_left(states: Sequence[PointState], now: float, parallel: int | None) -> str:
    """The last line of the report: the time until every running and pending point has ended, at
    `parallel` points at a time (else as many as run now, at least one); failed points are left out
    (only a rerun runs them again). '' when nothing runs or waits."""
    running = [eta(p, states, now).seconds for p in states if p.state == RUNNING]
    pending = [eta(p, states, now).seconds for p in states if p.state == PENDING]
    if not running and not pending:
        return ""
    slots = max(parallel or len(running) or 1, len(running))
    how = (f"{slots} at a time (the sweep's --parallel)" if slots == parallel else
           f"{slots} at a time (as many as run now)" if running else "one at a time (none runs now)")
    unknown = sum(s is None for s in [*running, *pending])
    left = time_left([s or 0.0 for s in running], [s or 0.0 for s in pending], slots)
    text = (f"left: ~{format_duration(left)}" if not unknown else
            "left: ?" if unknown == len(running) + len(pending) else
            f"left: at least {format_duration(left)} ({unknown} with ETA ?)")
    failed = sum(p.state == FAILED for p in states)
    return f"{text}, {how}" + (f"; {failed} failed not counted" if failed else "")
