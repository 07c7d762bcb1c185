"""The two-arm experiments' analyses (lrn, pooling_vs_strided, googlenet_aux), by the rule each
config.py states before its runs (ARM_KEY, ARMS, RULE, PAIRED, LR_GRID, TUNE_SEED, SEEDS).

    .venv/bin/python experiments/compare_arms.py NAME tune workdirs/exp_NAME_tune
    .venv/bin/python experiments/compare_arms.py NAME main workdirs/exp_NAME [--out DIR]

tune: per arm the rate of LR_GRID with the lowest final training loss (the mean train/loss of the
last tenth of the logs) on TUNE_SEED; writes NAME/tuned_lr.json (the main sweep reads it) and
NAME/tune_results.md. main: per arm the test top-1 error after the last step by seed, mean and
s.d.; the difference B - A in points (per seed when PAIRED), its 95% t interval (and the 90% one
where RULE has a margin) and the verdict; writes results.md and figure.png into --out (default
experiments/NAME).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import statistics
import sys
from collections.abc import Mapping, Sequence

from cnnjax import atomic, stats
from cnnjax import config as config_lib
from cnnjax.errors import UserError
from cnnjax.sweep import compare
from cnnjax.sweep.summarize import series

HERE = pathlib.Path(__file__).resolve().parent
NAMES = ("lrn", "pooling_vs_strided", "googlenet_aux")


def final_loss(records: Sequence[Mapping]) -> float:
    """Tuning score: the mean train/loss over the last tenth of the logs (at least one)."""
    losses = series(records, "train/loss")[1]
    return statistics.fmean(losses[-max(len(losses) // 10, 1):])


def test_error(records: Sequence[Mapping]) -> float:
    """Test top-1 error after the last step, in percentage points."""
    top1 = series(records, "eval/top1")[1]
    if not top1:
        raise UserError("a finished run has no eval/top1: the config must evaluate at its last step")
    return 100.0 * (1.0 - top1[-1])


def difference(cfg, errors: Mapping[str, Mapping[int, float]]) -> tuple[stats.Interval, list[int]]:
    """B - A over the seeds: paired over the seeds both arms ran when cfg.PAIRED, Welch otherwise."""
    a, b = (errors[str(arm)] for arm in cfg.ARMS)
    if cfg.PAIRED:
        seeds = sorted(set(a) & set(b))
        return stats.paired_interval([b[s] for s in seeds], [a[s] for s in seeds]), seeds
    return stats.welch_interval(list(b.values()), list(a.values())), sorted(set(a) | set(b))


def report(cfg, errors: Mapping[str, Mapping[int, float]]) -> tuple[str, stats.Interval, str]:
    """Markdown of the per-seed errors, the difference, its intervals and the verdict."""
    lines = [f"| {cfg.ARM_KEY} | test top-1 error by seed (%) | mean | s.d. |", "|---|---|---|---|"]
    for arm in cfg.ARMS:
        by_seed = errors[str(arm)]
        values = [by_seed[s] for s in sorted(by_seed)]
        sd = statistics.stdev(values) if len(values) > 1 else math.nan
        lines.append(f"| {arm} | " + " / ".join(f"{v:.2f}" for v in values)
                     + f" | {statistics.fmean(values):.2f} | {sd:.2f} |")
    d, seeds = difference(cfg, errors)
    rule = cfg.RULE
    kind = f"paired over seeds {seeds}" if cfg.PAIRED else "Welch"
    text = "\n".join(lines) + "\n\n"
    text += (f"{cfg.ARMS[1]} - {cfg.ARMS[0]}, test error: {d.mean:+.2f} points, 95% interval "
             f"[{d.low:+.2f}, {d.high:+.2f}] ({kind}, {d.df:.1f} df)")
    if rule.margin:
        narrow = d.at(1 - 2 * (1 - rule.level))
        text += f", 90% interval [{narrow.low:+.2f}, {narrow.high:+.2f}]"
    verdict = stats.verdict(d, rule)
    text += f".\n\nVerdict by the preregistered rule: **{verdict}**.\n"
    return text, d, verdict


def plot(path: pathlib.Path, cfg, errors: Mapping[str, Mapping[int, float]], d: stats.Interval,
         ) -> None:
    """Left: each seed's test error in both arms (a line joins a pair). Right: the difference with
    its 95% interval, and the margin where the rule has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5),
                                      gridspec_kw={"width_ratios": [2, 1]})
    a, b = (errors[str(arm)] for arm in cfg.ARMS)
    for seed in sorted(set(a) | set(b)):
        xs = [i for i, arm in enumerate((a, b)) if seed in arm]
        left.plot(xs, [(a, b)[i][seed] for i in xs], "o-", color="grey", alpha=0.6)
    left.set_xticks([0, 1], [str(x) for x in cfg.ARMS])
    left.set_xlim(-0.5, 1.5)
    left.set_ylabel("test top-1 error (%)")
    left.set_title(f"{cfg.ARM_KEY}: each seed")
    left.grid(alpha=0.3)
    high = d.high if math.isfinite(d.high) else d.mean
    low = d.low if math.isfinite(d.low) else d.mean
    right.errorbar([0], [d.mean], yerr=[[d.mean - low], [high - d.mean]], fmt="o", capsize=6)
    right.axhline(0, color="black", linewidth=0.8)
    if cfg.RULE.margin:
        for m in (-cfg.RULE.margin, cfg.RULE.margin):
            right.axhline(m, color="grey", linestyle=":", linewidth=0.8)
    right.set_xticks([0], [f"{cfg.ARMS[1]} - {cfg.ARMS[0]}"])
    right.set_ylabel("difference in test error (points), 95% interval")
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def analyze_tune(cfg, sweep_dir: pathlib.Path, out: pathlib.Path) -> str:
    return compare.tune(
        sweep_dir, (cfg.ARM_KEY,), cfg.LR_GRID, final_loss, cfg.TUNED_LR_FILE,
        "per arm, the rate with the lowest mean train/loss over the last tenth of the run",
        out / "tune_results.md",
        f"Final training loss (mean of the last tenth of the logs) of each tuning run (seed "
        f"{cfg.TUNE_SEED}, {cfg.TUNE_STEPS} steps); bold: the rate chosen.")


def analyze_main(cfg, sweep_dir: pathlib.Path, out: pathlib.Path) -> str:
    runs = compare.read_runs(sweep_dir)
    compare.require_finished(runs, sweep_dir)
    arms = compare.group(runs, (cfg.ARM_KEY,))
    missing = [str(a) for a in cfg.ARMS if str(a) not in arms]
    if missing:
        raise UserError(f"{sweep_dir} has no finished {cfg.ARM_KEY}={missing[0]} run")
    errors = {arm: {seed: test_error(run.records) for seed, run in by_seed.items()}
              for arm, by_seed in arms.items()}
    text, d, _ = report(cfg, errors)
    atomic.write_text(out / "results.md", text)
    plot(out / "figure.png", cfg, errors, d)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=NAMES)
    parser.add_argument("what", choices=("tune", "main"))
    parser.add_argument("sweep_dir", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path)
    args = parser.parse_args(argv)
    cfg = config_lib.load_module(str(HERE / args.name / "config.py"))
    out = args.out or HERE / args.name
    run = analyze_tune if args.what == "tune" else analyze_main
    return compare.print_or_refuse(lambda: run(cfg, args.sweep_dir, out), out)


if __name__ == "__main__":
    sys.exit(main())
