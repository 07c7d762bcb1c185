"""Mean and spread over seeds of the final test top-1 error, per value of model.norm, for the
lrn sweep; and the difference between the two means.

    .venv/bin/python experiments/lrn/seed_stats.py workdirs/exp_lrn [--out DIR]

Reads each point's sweep_point.json (its overrides) and metrics.jsonl (its last eval/top1) and
writes seed_stats.md (also printed) into --out (default: this folder). The spread is the sample
standard deviation (n - 1).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
from collections.abc import Mapping, Sequence

from cnnjax.sweep.summarize import POINT_FILE, series
from cnnjax.train.metrics import read_metrics

KEY = "model.norm"


def final_errors(sweep_dir: pathlib.Path) -> dict[str, dict[int, float]]:
    """{norm: {seed: final test top-1 error}} over the points that logged eval/top1."""
    out: dict[str, dict[int, float]] = {}
    for point_file in sorted(sweep_dir.glob(f"*/{POINT_FILE}")):
        overrides = json.loads(point_file.read_text())["overrides"]
        _, top1 = series(read_metrics(point_file.parent), "eval/top1")
        if KEY in overrides and top1:
            out.setdefault(overrides[KEY], {})[int(overrides.get("seed", 0))] = 1.0 - top1[-1]
    if not out:
        raise FileNotFoundError(f"no finished {KEY} point in {sweep_dir}; run the sweep first "
                                "(see experiments/lrn/README.md)")
    return out


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation); the spread of a single value is 0."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(errors: Mapping[str, Mapping[int, float]]) -> str:
    """Markdown: per norm the errors by seed, their mean +- s.d.; then lrn minus none."""
    lines = ["| norm | seeds | test top-1 error per seed | mean +- s.d. |", "|---|---|---|---|"]
    means = {}
    for norm in sorted(errors):
        by_seed = errors[norm]
        mean, sd = mean_and_spread(list(by_seed.values()))
        means[norm] = mean
        per_seed = ", ".join(f"{by_seed[s]:.2%}" for s in sorted(by_seed))
        lines.append(f"| {norm} | {len(by_seed)} | {per_seed} | {mean:.2%} +- {sd:.2%} |")
    if {"none", "lrn"} <= set(means):
        lines.append(f"\nlrn - none: {means['lrn'] - means['none']:+.2%} (negative: LRN helps)")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parent)
    args = parser.parse_args(argv)
    text = table(final_errors(args.sweep_dir))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seed_stats.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
