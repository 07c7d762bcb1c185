"""A sweep's runs grouped into the arms of an experiment, and the learning rate each arm tuned.

    runs = read_runs("workdirs/exp_lrn_tune")
    rates, table = pick_rates(runs, ("model.norm",), score=final_train_loss)
    by_arm = group(read_runs("workdirs/exp_lrn"), ("model.norm",))   # {('lrn',): {seed: Run}}

The experiments' analysis scripts (experiments/*/analyze.py) build their preregistered comparisons
(cnnjax.stats) on these. A run's values are its swept keys, completed from its config.json.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from collections.abc import Callable, Mapping, Sequence

from cnnjax import atomic
from cnnjax.errors import UserError
from cnnjax.sweep import status
from cnnjax.sweep.summarize import find_points, with_config_values

RATE_KEY = "schedule.base_lr"


@dataclasses.dataclass(frozen=True)
class Run:
    """One point of a sweep: its name, swept values, metric records and state (status.STATES)."""

    name: str
    values: dict
    records: list[dict]
    state: str | None
    reason: str = ""

    @property
    def finished(self) -> bool:
        return self.state == status.FINISHED

    @property
    def diverged(self) -> bool:
        """Failed with a non-finite loss: an outcome of its settings, not of an interruption."""
        return self.state == status.FAILED and self.reason.startswith("diverged")


def read_runs(sweep_dir: str | pathlib.Path) -> list[Run]:
    """Every point of the sweep in `sweep_dir`, in sweep order."""
    sweep_dir = pathlib.Path(sweep_dir)
    points = find_points(sweep_dir)
    values = with_config_values(sweep_dir, points)
    return [Run(p.name, v, p.records, p.state, p.reason) for p, v in zip(points, values, strict=True)]


def arm_label(values: Mapping, keys: Sequence[str]) -> str:
    """'relu,he_normal': the values of `keys`, comma-joined."""
    return ",".join(str(values[k]) for k in keys)


def require_finished(runs: Sequence[Run], sweep_dir: str | pathlib.Path, *,
                     diverged_ok: bool = False) -> None:
    """UserError (one line) naming a point that has not finished, unless it diverged and
    `diverged_ok` (a rate grid's high rates may): every other failure is an interruption to
    resume, not a result."""
    waiting = [r for r in runs if not r.finished and not (diverged_ok and r.diverged)]
    if waiting:
        first = waiting[0]
        raise UserError(f"{len(waiting)} point(s) of {sweep_dir} have not finished, e.g. {first.name} "
                        f"({first.state}: {first.reason}); rerun the sweep command to finish them")


def group(runs: Sequence[Run], keys: Sequence[str], by: str = "seed") -> dict[str, dict]:
    """{arm label: {value of `by`: Run}} over the finished runs."""
    out: dict[str, dict] = {}
    for run in runs:
        if run.finished:
            out.setdefault(arm_label(run.values, keys), {})[run.values.get(by)] = run
    return out


def pick_rates(runs: Sequence[Run], keys: Sequence[str], score: Callable[[Sequence[dict]], float],
               ) -> tuple[dict[str, float], list[dict]]:
    """The rate with the lowest `score` per arm, and the table of every (arm, rate, score).

    A run that did not finish (diverged, say) scores +inf; an arm whose every rate failed is a
    UserError.
    """
    rows = []
    for run in runs:
        value = score(run.records) if run.finished and run.records else math.inf
        rows.append({"arm": arm_label(run.values, keys), "rate": float(run.values[RATE_KEY]),
                     "score": value, "state": run.state})
    best: dict[str, dict] = {}
    for row in rows:
        if row["arm"] not in best or row["score"] < best[row["arm"]]["score"]:
            best[row["arm"]] = row
    failed = [arm for arm, row in best.items() if not math.isfinite(row["score"])]
    if failed:
        raise UserError(f"arm {failed[0]}: every rate of the tuning sweep failed; widen the grid")
    return {arm: row["rate"] for arm, row in best.items()}, rows


def read_tuned_rates(path: str | pathlib.Path, arms: Sequence[str]) -> dict[str, float]:
    """{arm label: rate} for `arms` from a tuning step's JSON (`tune`); one-line UserError naming
    the step to run when it is missing, unreadable or lacks an arm."""
    path = pathlib.Path(path)
    try:
        rates = {str(k): float(v) for k, v in json.loads(path.read_text())["rates"].items()}
    except FileNotFoundError:
        raise UserError(f"{path} is missing: run the tuning sweep and its analysis first (the "
                        f"README beside it)") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path} is not a tuning record ({type(e).__name__}: {e}); rerun the "
                        "tuning analysis") from None
    missing = [arm for arm in arms if arm not in rates]
    if missing:
        raise UserError(f"{path} has no rate for arm {missing[0]!r} (it has {', '.join(rates)}): "
                        "run the tuning sweep and its analysis again")
    return rates


def tune(sweep_dir: str | pathlib.Path, keys: Sequence[str], grid: Sequence[float],
         score: Callable[[Sequence[dict]], float], rates_file: str | pathlib.Path, rule: str,
         table_file: str | pathlib.Path, heading: str, fmt: str = ".4f") -> str:
    """Pick each arm's rate from a finished tuning sweep (pick_rates) and write them with `rule` to
    `rates_file`; write `heading` and the markdown table of every score (arms x rates, the pick in
    bold) to `table_file`, and return that text."""
    runs = read_runs(sweep_dir)
    require_finished(runs, sweep_dir, diverged_ok=True)
    rates, rows = pick_rates(runs, keys, score)
    lines = [f"| arm ({', '.join(keys)}) | " + " | ".join(f"lr {r:g}" for r in grid) + " |",
             "|---|" + "---|" * len(grid)]
    for arm in dict.fromkeys(r["arm"] for r in rows):
        cells = []
        for rate in grid:
            row = next((r for r in rows if r["arm"] == arm and r["rate"] == rate), None)
            text = "not run" if row is None else (
                format(row["score"], fmt) if math.isfinite(row["score"]) else str(row["state"]))
            cells.append(f"**{text}**" if rates[arm] == rate else text)
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    atomic.write_text(rates_file, json.dumps({"rule": rule, "sweep": str(sweep_dir),
                                              "rates": rates}, indent=2) + "\n")
    text = f"{heading}\n\n" + "\n".join(lines) + "\n"
    atomic.write_text(table_file, text)
    return text


def print_or_refuse(produce: Callable[[], str], out: pathlib.Path | None = None) -> int:
    """An analysis script's end: create `out`, the folder it writes into (a user's --out need not
    exist yet), print what `produce` returns (exit 0), or its user error as one line on stderr
    (exit 2, as every cnnjax command)."""
    import sys

    from cnnjax.errors import EXIT_USER_ERROR, is_user_error

    try:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        print(produce(), end="")
    except Exception as e:
        if not is_user_error(e):
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def arms_sweep(key: str, arms: Sequence, *, tune: bool, grid: Sequence[float],
               seeds: Sequence[int], rates_file: str | pathlib.Path) -> list[dict]:
    """A two-step experiment's points: with `tune`, every arm (values of `key`) at every rate of
    `grid`; otherwise every arm at its tuned rate (`rates_file`) for every seed."""
    from cnnjax.sweep.points import product

    if tune:
        return product(**{key: list(arms), RATE_KEY: list(grid)})
    rates = read_tuned_rates(rates_file, [str(a) for a in arms])
    return [{key: arm, RATE_KEY: rates[str(arm)], "seed": seed} for arm in arms for seed in seeds]
