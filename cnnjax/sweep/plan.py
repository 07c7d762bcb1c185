"""From a config file's get_sweep() to a plan: every point validated, named, given its folder, its
training command and whether it is new, to resume or finished; and the records a sweep leaves.

Nothing here starts a process; cnnjax.sweep.local and cnnjax.sweep.slurm run the plan.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import json
import pathlib
import sys

import ml_collections

from cnnjax import config as config_io
from cnnjax.errors import UserError
from cnnjax.sweep import files, points, status
from cnnjax.train.metrics import read_metrics
from cnnjax.train.workdir import has_checkpoints


@dataclasses.dataclass
class PointRun:
    """One point of the sweep: its overrides, folder, command and whether it already finished."""

    index: int
    name: str
    overrides: dict
    workdir: pathlib.Path
    command: list[str]
    status: str
    num_steps: int
    num_epochs: float

    @property
    def log(self) -> pathlib.Path:
        return self.workdir / files.LOG_FILE


def default_sweep_dir(config_spec: str) -> pathlib.Path:
    """workdirs/<config file stem>[_<arg>]_sweep under the current directory ("_sweep" once: a
    config named lenet5_activation_sweep.py sweeps into workdirs/lenet5_activation_sweep)."""
    path, _, arg = config_spec.partition(":")
    name = pathlib.Path(path).stem.removesuffix("_sweep") + (f"_{arg}" if arg else "")
    return pathlib.Path("workdirs") / f"{name}_sweep"


def load_points(config_spec: str) -> list[dict]:
    """The points of the config file's get_sweep() (called with the :ARG when it takes one)."""
    path, _, arg = config_spec.partition(":")
    module = config_io.load_module(path)
    get_sweep = getattr(module, "get_sweep", None)
    if get_sweep is None:
        raise UserError(f"config file {path!r} defines no get_sweep(); a sweep needs one that returns "
                        "a list of override dicts (see cnnjax.sweep.points)")
    takes_arg = len(inspect.signature(get_sweep).parameters) > 0
    return points.check_points(get_sweep(arg or None) if takes_arg else get_sweep())


def point_config(based: ml_collections.ConfigDict, point: dict, index: int, name: str
                 ) -> tuple[ml_collections.ConfigDict, list[str]]:
    """(the config of one point, its problems): `based` (the config with the base overrides) with
    the point's overrides, checked as training checks it (cnnjax.config.resolve: values, model
    knobs, the data splits) and with its model built, so that a point training would refuse is
    refused now, before anything is written or submitted; each problem names the point."""
    resolved, problems = config_io.resolve(
        copy.deepcopy(based), [a[len("--config."):] for a in points.override_args(point)],
        splits=True, build_model=True)
    return resolved, [f"sweep point {index} ({name}): {p}" for p in problems]


def with_base(config: ml_collections.ConfigDict, base: list[str]) -> ml_collections.ConfigDict:
    """A copy of `config` with the sweep's base overrides (--config.KEY=VALUE beside --sweep),
    or every problem of those overrides, said once and not per point."""
    based = copy.deepcopy(config)
    problems = config_io.override_problems(based, base)
    if problems:
        raise config_io.ConfigValidationError(problems)
    return based


def validated_config(config: ml_collections.ConfigDict, base: list[str], point: dict, index: int,
                     name: str) -> ml_collections.ConfigDict:
    """The config of one point (base overrides, then the point's), or every problem in one line each."""
    resolved, problems = point_config(with_base(config, base), point, index, name)
    if problems:
        raise config_io.ConfigValidationError(problems)
    return resolved


def current_status(run: PointRun) -> str:
    return status.point_status(read_metrics(run.workdir), has_checkpoints(run.workdir),
                               run.num_steps, run.num_epochs)


def make_plan(config_spec: str, base: list[str], sweep_dir: pathlib.Path,
              python: str = sys.executable, absolute: bool = False) -> list[PointRun]:
    """Every point validated, named and given its command and current status; nothing is written.

    `absolute` puts absolute paths in the commands (for a batch system that may start elsewhere).
    """
    sweep_points = load_points(config_spec)
    config = config_io.load_config(config_spec)
    names = points.point_names(sweep_points)
    if absolute:
        path, sep, arg = config_spec.partition(":")
        config_spec = str(pathlib.Path(path).absolute()) + sep + arg
        sweep_dir = sweep_dir.absolute()
    based = with_base(config, base)
    plan, problems = [], []
    for index, (point, name) in enumerate(zip(sweep_points, names, strict=True)):
        resolved, found = point_config(based, point, index, name)
        problems += found  # every refused point is named, not only the first
        if found:
            continue
        workdir = sweep_dir / name
        command = points.train_command(python, config_spec, str(workdir), base, point)
        run = PointRun(index, name, point, workdir, command, status.NEW,
                       int(resolved.num_steps), float(resolved.num_epochs))
        run.status = current_status(run)
        plan.append(run)
    if problems:
        raise config_io.ConfigValidationError(problems)
    check_folders(plan, sweep_dir, config_spec)
    return plan


def _as_json(value: object) -> object:
    """`value` as it reads back from the JSON records (tuples become lists, odd values their repr)."""
    return json.loads(json.dumps(value, default=repr))


def _config_file(spec: str) -> str:
    path, sep, arg = spec.partition(":")
    return str(pathlib.Path(path).resolve()) + sep + arg


def check_folders(plan: list[PointRun], sweep_dir: pathlib.Path, config_spec: str) -> None:
    """One line, before anything is written, when the sweep folder already holds another sweep's
    points: a point must never resume (or be skipped as finished) in a folder trained by another."""
    record = files.read_json(sweep_dir / files.SWEEP_FILE)
    if record and record.get("config") and _config_file(record["config"]) != _config_file(config_spec):
        raise config_io.ConfigError(
            f"{sweep_dir} holds a sweep of {record['config']}, not of {config_spec}; "
            "give this sweep its own --workdir")
    for run in plan:
        earlier = files.read_json(run.workdir / files.POINT_FILE)
        if earlier is not None and _as_json(earlier.get("overrides")) != _as_json(run.overrides):
            raise config_io.ConfigError(
                f"sweep point {run.index} ({run.name}) would train in {run.workdir}, which holds the "
                f"point {earlier.get('overrides')}; give this sweep its own --workdir")


def write_records(plan: list[PointRun], sweep_dir: pathlib.Path, config_spec: str,
                  base: list[str], parallel: int | None = None) -> None:
    """sweep.json (the whole sweep) and each point's sweep_point.json, which status and summarize
    read (the steps to finish too, so a point's state is known without loading the config).
    `parallel`: how many points run at once, where the backend knows (status's time left uses it)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    # The steps to finish are in sweep.json too, so that a point whose folder is not there yet (a
    # fresh clone of committed runs) still has a length to estimate from.
    sweep = [{"name": r.name, "overrides": r.overrides, "num_steps": r.num_steps,
              "num_epochs": r.num_epochs} for r in plan]
    record = {"config": config_spec, "base_overrides": base, "points": sweep}
    files.write_json(sweep_dir / files.SWEEP_FILE,
                     record if parallel is None else {**record, "parallel": parallel})
    for run in plan:
        run.workdir.mkdir(parents=True, exist_ok=True)
        files.write_json(run.workdir / files.POINT_FILE,
                         {"index": run.index, "name": run.name, "overrides": run.overrides,
                          "command": run.command, "num_steps": run.num_steps,
                          "num_epochs": run.num_epochs})
