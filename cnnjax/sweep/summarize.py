"""Collect the results of a sweep: one row per point, its final and best metrics, and one figure.

    ./launch.sh summarize SWEEP_DIR [--metric eval/top1] [--mode max|min]
    ./launch.sh sweep summarize SWEEP_DIR ...      (the same)

In a sweep folder (one with sweep.json) every point of the sweep gets a row, with a status column:
finished, or failed / running / pending with the reason (cnnjax.sweep.status), so a point that failed
before logging anything is listed, not dropped; the exit status is 1 when any point failed. In any
other folder, every subfolder with a metrics.jsonl is a point. Reads each point's metrics.jsonl and its
sweep_point.json (the overrides that made it), and writes, per metric, SWEEP_DIR/results_<metric>.csv
and .md (also printed; for the default metric eval/top1 the names are results.csv and results.md, as
before) and SWEEP_DIR/<metric>.png, the chosen metric against step for every point (failed points
marked in the legend); <metric> is the metric with every other character than letters and digits as
'_' (train/loss: results_train_loss.csv, train_loss.png).

The table shows the metrics in the unit training logs them: the top-k accuracies, logged as fractions,
in percent (their columns marked '(%)'). A key that some points override and another does not shows,
for that one, the value it trained with (its config.json), else the value of the sweep's config file
with the sweep's base overrides.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import io
import json
import math
import os
import pathlib
import re
from collections.abc import Mapping, Sequence

from cnnjax.errors import UserError
from cnnjax.sweep import files, slurm, status
from cnnjax.sweep.files import POINT_FILE, SWEEP_FILE
from cnnjax.train.metrics import METRICS_FILE, is_fraction, read_metrics

# Final values reported for every point when its metrics have them.
FINAL_KEYS = ("eval/top1", "eval/top5", "eval/loss", "train/loss", "train/top1")
DEFAULT_METRIC = "eval/top1"
__all__ = ["POINT_FILE", "Point", "find_points", "point_row", "series", "summarize"]


def metric_slug(metric: str) -> str:
    """`metric` as part of a file name: 'train/loss' -> 'train_loss'."""
    return re.sub(r"[^A-Za-z0-9]+", "_", metric).strip("_")


def results_name(metric: str) -> str:
    """The stem of a metric's results files: 'results' for the default metric (the name every metric
    was written under before), else 'results_<metric slug>'."""
    return "results" if metric == DEFAULT_METRIC else f"results_{metric_slug(metric)}"


def default_mode(metric: str) -> str:
    """'min' for losses and errors, 'max' for everything else (accuracies)."""
    return "min" if any(word in metric for word in ("loss", "error")) else "max"


def series(records: Sequence[Mapping], metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `metric` in step order; a step logged twice (resumed run) keeps its last."""
    by_step: dict[int, float] = {}
    for record in records:
        if metric in record:
            by_step[int(record["step"])] = float(record[metric])
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def point_row(name: str, overrides: Mapping, records: Sequence[Mapping], metric: str,
              mode: str, state: str | None = None, reason: str = "") -> dict:
    """One results row: the overrides, the status (when known), the last step (empty without
    metrics), each final metric, and the best `metric`."""
    row: dict = {"point": name, **{k: _plain(v) for k, v in overrides.items()}}
    if state is not None:
        row["status"] = state if state == status.FINISHED else f"{state}: {reason}"
    row["last_step"] = max((int(r["step"]) for r in records if "step" in r), default=None)
    for key in FINAL_KEYS:
        steps, values = series(records, key)
        if values:
            row[f"final {key}"] = values[-1]
    steps, values = series(records, metric)
    finite = [(v, s) for s, v in zip(steps, values, strict=True) if math.isfinite(v)]
    if finite:
        # the earliest step wins a tie, so 'best_step' does not drift to later equal evaluations
        if mode == "max":
            value, step = max(finite, key=lambda vs: (vs[0], -vs[1]))
        else:
            value, step = min(finite, key=lambda vs: (vs[0], vs[1]))
        row[f"best {metric}"] = value
        row["best_step"] = step
        if f"final {metric}" not in row:
            row[f"final {metric}"] = values[-1]
    return row


def _plain(value):
    return value if isinstance(value, str | int | float | bool) or value is None else repr(value)


@dataclasses.dataclass(frozen=True)
class Point:
    """One point of a summary: its name, overrides, metric records and (in a sweep folder) state."""

    name: str
    overrides: dict
    records: list[dict]
    state: str | None = None
    reason: str = ""


def _records(folder: pathlib.Path) -> list[dict]:
    return [r for r in read_metrics(folder) if isinstance(r, dict) and "step" in r]


def _overrides(folder: pathlib.Path) -> dict:
    try:
        return json.loads((folder / POINT_FILE).read_text()).get("overrides", {})
    except (OSError, ValueError):
        return {}


_MISSING = object()


def _lookup(config: Mapping | None, key: str):
    """The value of dotted `key` in a nested config dict, or _MISSING."""
    value = config
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _base_config(sweep_dir: pathlib.Path) -> dict | None:
    """The sweep's config file resolved with its base overrides (sweep.json), as a dict; None when
    there is no sweep.json or the file cannot be loaded from here any more (moved, or relative to
    another directory): then the cells it would fill stay empty."""
    from cnnjax import config as config_io

    record = files.read_json(sweep_dir / SWEEP_FILE)
    if not record or not isinstance(record.get("config"), str):
        return None
    try:
        return config_io.resolve_config(record["config"], record.get("base_overrides") or []).to_dict()
    except (UserError, OSError, ImportError, SyntaxError):
        return None


def with_config_values(sweep_dir: pathlib.Path, points: Sequence[Point]) -> list[dict]:
    """Each point's overrides completed with every key another point overrides, in one key order:
    the point's own value, else the one it trained with (its config.json), else the sweep's base
    config's (left out when none is known)."""
    keys = list(dict.fromkeys(k for p in points for k in p.overrides))
    base = functools.cache(lambda: _base_config(sweep_dir))  # loaded once, only if a point needs it
    out = []
    for point in points:
        saved = None
        complete = {}
        for key in keys:
            if key in point.overrides:
                complete[key] = point.overrides[key]
                continue
            if saved is None:
                saved = files.read_json(sweep_dir / point.name / "config.json") or {}
            value = _lookup(saved, key)
            if value is _MISSING:
                value = _lookup(base(), key)
            if value is not _MISSING:
                complete[key] = value
        out.append(complete)
    return out


def find_points(sweep_dir: pathlib.Path) -> list[Point]:
    """Every point of the sweep (with its state) when `sweep_dir` holds a sweep.json, in sweep order;
    else every subfolder with a non-empty metrics.jsonl, alphabetically."""
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep folder {sweep_dir} does not exist")
    if (sweep_dir / SWEEP_FILE).is_file():
        points = [Point(p.name, p.overrides, _records(p.workdir), p.state, p.reason)
                  for p in status.read_sweep(sweep_dir, slurm_lookup=slurm.task_states)]
        if not any(p.records or p.state == status.FAILED for p in points):
            raise UserError(f"no results in {sweep_dir} yet: no point has logged metrics or failed "
                            f"(see ./launch.sh sweep status {sweep_dir})")
        return points
    points = []
    for folder in sorted(p for p in sweep_dir.iterdir() if (p / METRICS_FILE).is_file()):
        records = _records(folder)
        if records:
            points.append(Point(folder.name, _overrides(folder), records))
    if not points:
        raise UserError(f"no results in {sweep_dir}: no subfolder has a non-empty {METRICS_FILE} "
                        "(is it a sweep folder, and has any point run yet?)")
    return points


def columns(rows: Sequence[Mapping]) -> list[str]:
    """Column order: point, overrides (first-seen order), status, last_step, final metrics, best."""
    cols: list[str] = []
    for row in rows:
        for key in row:
            if key not in cols:
                cols.append(key)
    fixed = ["point", "status", "last_step"]
    metrics = [c for c in cols if c.startswith(("final ", "best ")) or c == "best_step"]
    overrides = [c for c in cols if c not in fixed and c not in metrics]
    return ["point", *overrides, *[c for c in ("status",) if c in cols], "last_step", *metrics]


def in_percent(rows: Sequence[Mapping], cols: Sequence[str]) -> tuple[list[dict], list[str]]:
    """The rows and columns as shown: the final and best values of the metrics logged as fractions
    (top-k accuracies) in percent, their columns marked ' (%)'."""
    def percent(col: str) -> bool:
        return col.startswith(("final ", "best ")) and is_fraction(col.split(" ", 1)[1])

    names = {c: f"{c} (%)" if percent(c) else c for c in cols}
    # rounded to 10 decimals: drops the binary noise of the product (0.45 * 100 = 45.00000000000001),
    # far below the float32 precision the metrics are logged with
    shown = [{names.get(k, k): round(100 * v, 10) if percent(k) and isinstance(v, int | float)
              and not isinstance(v, bool) else v for k, v in row.items()} for row in rows]
    return shown, [names[c] for c in cols]


def _cell(value, percent: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and percent:
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping], cols: Sequence[str]) -> str:
    """A GitHub markdown table, floats to 4 significant digits (percentages to 2 decimals, as
    training prints them), missing values empty."""
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c), c.endswith(" (%)")) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_csv(path: pathlib.Path, rows: Sequence[Mapping], cols: Sequence[str]) -> None:
    """The rows as CSV, written whole (temporary file, then rename)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(cols), restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in cols})
    files.write_text_atomic(path, text.getvalue())


def plot_metric(path: pathlib.Path, curves: Sequence[tuple[str, list[int], list[float]]],
                metric: str, title: str) -> None:
    """One line per point: `metric` against step, written whole (drawn beside, then renamed)."""
    from cnnjax import plots

    partial = path.with_name(f".{path.stem}.partial{path.suffix}")  # the suffix picks the format
    plots.line_plot(partial, [(name, steps, values) for name, steps, values in curves],
                    xlabel="step", ylabel=metric, title=title)
    os.replace(partial, path)


def _label(point: Point) -> str:
    """A point's legend entry: its name, and its state unless it finished."""
    if point.state in (None, status.FINISHED):
        return point.name
    return f"{point.name} [{point.state.upper() if point.state == status.FAILED else point.state}]"


def summarize(sweep_dir: str | pathlib.Path, metric: str = "eval/top1",
              mode: str | None = None) -> tuple[list[dict], list[str]]:
    """Writes the results table of `metric` (results_name: .csv and .md) and its figure into
    `sweep_dir`; returns (rows, columns) as written (accuracies in percent: in_percent)."""
    sweep_dir = pathlib.Path(sweep_dir)
    mode = mode or default_mode(metric)
    if mode not in ("max", "min"):
        raise UserError(f"--mode must be 'max' or 'min', got {mode!r}")
    points = find_points(sweep_dir)
    logged = [p for p in points if p.records]
    if logged and not any(series(p.records, metric)[0] for p in logged):
        found = sorted({k for p in logged for r in p.records for k in r} - {"step", "time"})
        raise UserError(f"metric {metric!r} is in no point's {METRICS_FILE}; logged metrics: "
                        + ", ".join(found))
    overrides = with_config_values(sweep_dir, points)
    rows = [point_row(p.name, o, p.records, metric, mode, p.state, p.reason)
            for p, o in zip(points, overrides, strict=True)]
    rows, cols = in_percent(rows, columns(rows))
    stem = sweep_dir / results_name(metric)
    write_csv(stem.with_suffix(".csv"), rows, cols)
    files.write_text_atomic(stem.with_suffix(".md"), markdown_table(rows, cols))
    curves = [(_label(p), *series(p.records, metric)) for p in points]
    failed = sum(p.state == status.FAILED for p in points)
    plot_metric(sweep_dir / f"{metric_slug(metric)}.png", curves, metric,
                f"{sweep_dir.name}: {metric}" + (f" ({failed} failed)" if failed else ""))
    return rows, cols


def main(argv: list[str]) -> int:
    """`./launch.sh summarize DIR`: prints the table; 1 when any point of the sweep failed."""
    parser = argparse.ArgumentParser(prog="./launch.sh summarize",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Collect a sweep's final and best metrics.",
                                     epilog="examples:\n"
                                     "  ./launch.sh summarize workdirs/lenet5_activation_sweep\n"
                                     "  ./launch.sh summarize workdirs/lenet5_activation_sweep "
                                     "--metric train/loss\n"
                                     "  ./launch.sh sweep summarize workdirs/lenet5_activation_sweep "
                                     "(the same)")
    parser.add_argument("sweep_dir", help="the sweep folder (the --workdir of the sweep)")
    parser.add_argument("--metric", default=DEFAULT_METRIC, help="metric to rank and plot (default "
                        "eval/top1), any key of metrics.jsonl; each metric has its own results "
                        "files: results.csv/.md for eval/top1, results_<metric>.csv/.md for another")
    parser.add_argument("--mode", choices=("max", "min"),
                        help="whether the best value is the largest or the smallest (default: min "
                        "for losses and errors, else max)")
    args = parser.parse_args(argv)
    rows, cols = summarize(args.sweep_dir, args.metric, args.mode)
    sweep_dir = pathlib.Path(args.sweep_dir)
    print(markdown_table(rows, cols), end="")
    stem = sweep_dir / results_name(args.metric)
    print(f"wrote {stem.with_suffix('.csv')}, {stem.with_suffix('.md')} and "
          f"{sweep_dir / (metric_slug(args.metric) + '.png')}")
    states = [str(r.get("status", status.FINISHED)) for r in rows]
    failed = [(r["point"], s) for r, s in zip(rows, states, strict=True)
              if s.startswith(status.FAILED)]
    unfinished = sum(s.startswith((status.RUNNING, status.PENDING)) for s in states)
    if unfinished:
        print(f"{unfinished} of {len(rows)} points are still running or pending: the table is not "
              f"final (./launch.sh sweep status {sweep_dir})")
    if failed:
        print(f"{len(failed)} of {len(rows)} points FAILED:")
        for name, text in failed:
            print(f"  {name}: {text.removeprefix(status.FAILED + ': ')}")
    return 1 if failed else 0
