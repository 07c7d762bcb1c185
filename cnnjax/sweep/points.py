"""The points of a sweep: lists of override dicts, their folder names and their training commands.

A config file may define `get_sweep()` (or `get_sweep(arg)`) returning the points to run, each a dict
from dotted config key to value, built with these helpers:

    def get_sweep():
        return product(zip_(**{"model.activation": ["relu", "tanh"], "schedule.base_lr": [0.1, 0.05]}),
                       seed=[0, 1, 2])          # 6 points: (relu, 0.1) and (tanh, 0.05) x 3 seeds

    chain(product(seed=[0, 1]), [{"model.norm": "batch"}])   # 3 points: two seeds, then one more

Everything here is pure (no files, no processes, no jax); cnnjax.sweep.plan turns a config file's
get_sweep() into runnable points.
"""

from __future__ import annotations

import hashlib
import itertools
import re
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
    """point_name of each point; points whose names collide after sanitising get a hash suffix.

    Names that differ only in case count as colliding too (they would share a folder on a
    case-insensitive file system). The result is checked by check_unique_names.
    """
    names = [point_name(p) for p in points]
    counts: dict[str, int] = {}
    for name in names:
        counts[name.casefold()] = counts.get(name.casefold(), 0) + 1
    out = []
    for point, name in zip(points, names, strict=True):
        if counts[name.casefold()] > 1:
            full = ",".join(f"{k}={format_value(v)!r}" for k, v in point.items())
            name = f"{name[:MAX_NAME_LENGTH - 9]}-{_short_hash(full)}"
        out.append(name)
    return check_unique_names(out)


def check_unique_names(names: Sequence[str]) -> list[str]:
    """`names` unchanged when no two of them (ignoring case) would share a folder; else one line."""
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        j = first.setdefault(name.casefold(), i)
        if j != i:
            raise UserError(f"sweep points {j} and {i} would both train in the folder {name!r}; "
                            "give them overrides that differ in more than case or punctuation")
    return list(names)


def train_command(python: str, config_spec: str, workdir: str, base_overrides: Sequence[str],
                  point: Mapping[str, Any]) -> list[str]:
    """The training command of one point: the base --config. overrides, then the point's own."""
    return [python, "-m", "cnnjax.cli", "train", config_spec, "--workdir", workdir,
            *[f"--config.{o}" for o in base_overrides], *override_args(point)]
