"""Sweeps as data: lists of override dicts, their names, commands and finished/unfinished state.

A config file may define `get_sweep()` (or `get_sweep(arg)`) returning the points to run, each a dict
from dotted config key to value, built with these helpers:

    def get_sweep():
        return product(zip_(**{"model.activation": ["relu", "tanh"], "schedule.base_lr": [0.1, 0.05]}),
                       seed=[0, 1, 2])          # 6 points: (relu, 0.1) and (tanh, 0.05) x 3 seeds

    chain(product(seed=[0, 1]), [{"model.norm": "batch"}])   # 3 points: two seeds, then one more

Everything here is pure (no files, no processes, no jax); cnnjax.sweep runs the points.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cnnjax.errors import UserError

Point = dict[str, Any]

MAX_NAME_LENGTH = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+-]+")


# ---------------------------------------------------------------------------------------------------
# Building sweeps
# ---------------------------------------------------------------------------------------------------

def _axis_values(key: str, values: Any) -> list:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise UserError(f"sweep axis {key!r} must be a list of values, got {values!r}")
    values = list(values)
    if not values:
        raise UserError(f"sweep axis {key!r} has no values; give at least one")
    return values


def _as_sweep(sweep: Any, where: str) -> list[Point]:
    if isinstance(sweep, Mapping):
        return [dict(sweep)]
    if isinstance(sweep, str | bytes) or not isinstance(sweep, Iterable):
        raise UserError(f"{where} must be a list of override dicts, got {sweep!r}")
    points = list(sweep)
    for point in points:
        if not isinstance(point, Mapping):
            raise UserError(f"{where} must be a list of override dicts, but holds {point!r}")
    return [dict(p) for p in points]


def _merge(parts: Sequence[Mapping[str, Any]]) -> Point:
    merged: Point = {}
    for part in parts:
        for key, value in part.items():
            if key in merged:
                raise UserError(f"sweep key {key!r} is set by two of the combined axes; "
                                "each key may come from one axis only")
            merged[key] = value
    return merged


def product(*sweeps: Iterable[Mapping[str, Any]], **axes: Iterable) -> list[Point]:
    """Every combination of the given sweeps and axes, the last one varying fastest.

    product(a=[1, 2], b=[3, 4]) -> [{a:1,b:3}, {a:1,b:4}, {a:2,b:3}, {a:2,b:4}]. Positional arguments
    are sweeps (lists of override dicts, e.g. from zip_), keyword arguments single axes; dotted keys
    go through **{"model.activation": [...]}.
    """
    factors = [_as_sweep(s, "a positional argument of product") for s in sweeps]
    factors += [[{key: v} for v in _axis_values(key, values)] for key, values in axes.items()]
    return [_merge(combo) for combo in itertools.product(*factors)]


def zip_(*sweeps: Iterable[Mapping[str, Any]], **axes: Iterable) -> list[Point]:
    """The sweeps and axes taken in lockstep: zip_(a=[1, 2], b=[3, 4]) -> [{a:1,b:3}, {a:2,b:4}].

    All of them must have the same length.
    """
    columns = [_as_sweep(s, "a positional argument of zip_") for s in sweeps]
    columns += [[{key: v} for v in _axis_values(key, values)] for key, values in axes.items()]
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise UserError(f"zip_ needs axes of one length, got lengths {sorted(lengths)}")
    return [_merge(row) for row in zip(*columns, strict=True)]


def chain(*sweeps: Iterable[Mapping[str, Any]]) -> list[Point]:
    """The points of each sweep one after the other (a single dict counts as a one-point sweep)."""
    return [p for i, s in enumerate(sweeps) for p in _as_sweep(s, f"argument {i} of chain")]


def check_points(points: Any) -> list[Point]:
    """What get_sweep returned, checked: a non-empty list of dicts from str keys, with no repeats."""
    points = _as_sweep(points, "get_sweep()")
    if not points:
        raise UserError("get_sweep() returned no points; return a list of override dicts")
    seen: dict[str, int] = {}
    for i, point in enumerate(points):
        for key in point:
            if not isinstance(key, str) or not key:
                raise UserError(f"sweep point {i} has key {key!r}; keys are dotted config keys "
                                "such as 'model.activation'")
        signature = repr(sorted((k, format_value(v)) for k, v in point.items()))
        if signature in seen:
            raise UserError(f"sweep point {i} {point} repeats point {seen[signature]}")
        seen[signature] = i
    return points


# ---------------------------------------------------------------------------------------------------
# Names and commands
# ---------------------------------------------------------------------------------------------------

def format_value(value: Any) -> str:
    """A value as the text of a --config.KEY=VALUE override that config_io reads back to it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return repr(value)  # numbers, tuples, lists: read back by ast.literal_eval


def override_args(point: Mapping[str, Any]) -> list[str]:
    """['--config.k=v', ...] in the point's own key order."""
    return [f"--config.{k}={format_value(v)}" for k, v in point.items()]


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def point_name(point: Mapping[str, Any]) -> str:
    """A deterministic folder name from the overrides: 'model.activation=relu,seed=0'.

    Characters outside [A-Za-z0-9._,=+-] become '_' (so no '/', spaces or quotes); a name longer than
    MAX_NAME_LENGTH is cut and ends in a hash of the full overrides; no overrides give 'default'.
    """
    if not point:
        return "default"
    text = ",".join(f"{k}={format_value(v)}" for k, v in point.items())
    name = _UNSAFE.sub("_", text).strip("._") or "point"
    if len(name) > MAX_NAME_LENGTH:
        name = name[:MAX_NAME_LENGTH - 9] + "-" + _short_hash(text)
    return name


def point_names(points: Sequence[Mapping[str, Any]]) -> list[str]:
    """point_name of each point; points whose names collide after sanitising get a hash suffix."""
    names = [point_name(p) for p in points]
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    out = []
    for point, name in zip(points, names, strict=True):
        if counts[name] > 1:
            full = ",".join(f"{k}={format_value(v)!r}" for k, v in point.items())
            name = f"{name[:MAX_NAME_LENGTH - 9]}-{_short_hash(full)}"
        out.append(name)
    return out


def train_command(python: str, config_spec: str, workdir: str, base_overrides: Sequence[str],
                  point: Mapping[str, Any]) -> list[str]:
    """The training command of one point: the base --config. overrides, then the point's own."""
    return [python, "-m", "cnnjax.cli", "train", config_spec, "--workdir", workdir,
            *[f"--config.{o}" for o in base_overrides], *override_args(point)]


# ---------------------------------------------------------------------------------------------------
# Finished or not
# ---------------------------------------------------------------------------------------------------

NEW, PARTIAL, FINISHED = "new", "partial", "finished"


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


def array_spec(indices: Sequence[int], throttle: int = 0) -> str:
    """Slurm's --array value for these task indices: [0,1,2,5,7,8] -> '0-2,5,7-8' (+ '%N' throttle)."""
    if not indices:
        raise UserError("no array tasks to submit")
    ranges, start = [], None
    ordered = sorted(set(indices))
    for i, index in enumerate(ordered):
        if start is None:
            start = index
        if i + 1 == len(ordered) or ordered[i + 1] != index + 1:
            ranges.append(str(start) if start == index else f"{start}-{index}")
            start = None
    spec = ",".join(ranges)
    return f"{spec}%{throttle}" if throttle > 0 else spec


def sbatch_script(*, job_name: str, array: str, output_pattern: str, cwd: str,
                  commands: Sequence[Sequence[str]], logs: Sequence[str],
                  header: Sequence[str] = (), env: Mapping[str, str] | None = None) -> str:
    """An sbatch array script: task i runs commands[i] through srun, appending to logs[i].

    srun starts one process per Slurm task, so a point given several nodes or tasks (through
    --slurm-args, e.g. --nodes=2 --ntasks-per-node=1) runs as a multi-host job whose processes find
    each other with jax.distributed.initialize() (cnnjax.train.distributed reads SLURM_NTASKS).
    """
    lines = ["#!/bin/bash", *[f"# {h}" for h in header],
             f"#SBATCH --job-name={job_name}",
             f"#SBATCH --array={array}",
             f"#SBATCH --output={output_pattern}",
             "set -euo pipefail",
             f"cd {shlex.quote(cwd)}"]
    for key, value in (env or {}).items():
        lines.append(f"export {key}={shlex.quote(value)}")
    lines.append('case "$SLURM_ARRAY_TASK_ID" in')
    for i, (command, log) in enumerate(zip(commands, logs, strict=True)):
        lines.append(f"  {i}) LOG={shlex.quote(log)}; CMD=({shlex.join(command)}) ;;")
    lines += ['  *) echo "no sweep point with index $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
              "esac",
              'mkdir -p "$(dirname "$LOG")"',
              'echo "[$(date)] array task $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID '
              'on $(hostname): ${CMD[*]}" >>"$LOG"',
              'srun --kill-on-bad-exit=1 "${CMD[@]}" >>"$LOG" 2>&1']
    return "\n".join(lines) + "\n"
