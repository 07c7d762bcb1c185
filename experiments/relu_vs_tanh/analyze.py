"""relu_vs_tanh's two analyses, by the rules README.md fixed before the runs.

    .venv/bin/python experiments/relu_vs_tanh/analyze.py tune workdirs/exp_relu_vs_tanh_tune
    .venv/bin/python experiments/relu_vs_tanh/analyze.py main workdirs/exp_relu_vs_tanh [--out DIR]

tune: per arm (activation x init) the rate of LR_GRID with the lowest mean training error over the
whole tuning run (the area under its error curve: Fig. 1 picked each network's rate "to make
training as fast as possible"); writes tuned_lr.json (which the main sweep reads) and
tune_results.md. main: per init and seed the steps each activation needs to reach every threshold,
the tanh / ReLU ratio per seed, its geometric mean over seeds with a paired t interval on the log
ratios, and the verdict; writes results.md and figure.png (also printed: the tables).
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
from cnnjax.sweep import compare
from cnnjax.sweep.summarize import series

HERE = pathlib.Path(__file__).resolve().parent
cfg = config_lib.load_module(str(HERE / "config.py"))  # this experiment's constants

RULE = stats.Rule(direction=1)  # log(tanh steps / ReLU steps) > 0: ReLU faster


def error_curve(records: Sequence[Mapping], window: int | None = None
                ) -> tuple[list[int], list[float]]:
    """(logged steps, training error): 1 - the mean train/top1 of the last `window` logs (default
    WINDOW)."""
    window = window or cfg.WINDOW
    steps, top1 = series(records, "train/top1")
    errors = [1.0 - statistics.fmean(top1[max(0, i + 1 - window):i + 1]) for i in range(len(top1))]
    return steps, errors


def steps_to(steps: Sequence[int], errors: Sequence[float], threshold: float) -> int | None:
    """The first logged step whose training error is at or below `threshold` (None: never)."""
    return next((s for s, e in zip(steps, errors, strict=True) if e <= threshold), None)


def mean_error(records: Sequence[Mapping]) -> float:
    """Tuning score: the mean training error over every log of the run (lower: trains faster)."""
    return 1.0 - statistics.fmean(series(records, "train/top1")[1])


def judged_threshold(relu_runs: Mapping[int, compare.Run]) -> float:
    """The lowest threshold every ReLU run reaches within RELU_EPOCHS; the paper's 25% (the first
    threshold) when not even that one is reached."""
    limit = cfg.RELU_EPOCHS * cfg.EPOCH
    reached = [t for t in cfg.THRESHOLDS
               if all((s := steps_to(*error_curve(r.records), t)) is not None and s <= limit
                      for r in relu_runs.values())]
    return min(reached) if reached else cfg.THRESHOLDS[0]


def _crossing(run: compare.Run, threshold: float) -> tuple[int, bool]:
    """(steps to `threshold`, censored): a run that never got there counts at its last logged
    step, and censored is True."""
    steps, errors = error_curve(run.records)
    reached = steps_to(steps, errors, threshold)
    return (steps[-1], True) if reached is None else (reached, False)


def ratio_row(init: str, threshold: float, relu: Mapping[int, compare.Run],
              tanh: Mapping[int, compare.Run]) -> dict:
    """Steps per seed, tanh / ReLU ratios, their geometric mean, paired t interval and verdict.

    A run that never reached the threshold counts at its last step: a censored tanh run makes its
    ratio a lower bound, a censored ReLU run an upper bound. Bounds one way keep the verdict that
    they understate (a lower-bound ratio still shows ReLU faster), not the one they could
    fake; bounds both ways, or both runs of a seed censored, leave it inconclusive (or n/a).
    """
    seeds = sorted(set(relu) & set(tanh))
    row: dict = {"init": init, "threshold": threshold, "seeds": seeds, "relu": [], "tanh": [],
                 "relu_censored": [], "tanh_censored": []}
    for seed in seeds:
        for name, runs in (("relu", relu), ("tanh", tanh)):
            steps, censored = _crossing(runs[seed], threshold)
            row[name].append(steps)
            row[f"{name}_censored"].append(censored)
    both = [r and t for r, t in zip(row["relu_censored"], row["tanh_censored"], strict=True)]
    if not seeds or any(both):
        return row
    d = stats.one_sample_interval([math.log(t / r) for r, t in zip(row["relu"], row["tanh"],
                                                                   strict=True)])
    verdict = stats.verdict(d, RULE)
    lower, upper = any(row["tanh_censored"]), any(row["relu_censored"])
    if (lower and upper) or (lower and verdict == stats.CONTRADICTED) or (
            upper and verdict == stats.REPRODUCED):
        verdict = stats.INCONCLUSIVE
    row.update(interval=d, ratio=math.exp(d.mean), low=math.exp(d.low),
               high=math.exp(d.high) if math.isfinite(d.high) else math.inf, verdict=verdict,
               bound=">=" if lower and not upper else "<=" if upper and not lower else "")
    return row


def _steps_cell(values: Sequence[int], censored: Sequence[bool]) -> str:
    return " / ".join((">" if c else "") + str(v) for v, c in zip(values, censored, strict=True))


def ratio_table(rows: Sequence[dict]) -> str:
    lines = ["| init | training error | ReLU steps by seed | tanh steps by seed | tanh / ReLU "
             "(geometric mean) | 95% interval | verdict |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        if "ratio" in row:
            ratio = f"{row['bound']}{row['ratio']:.2f}x"
            interval = f"{row['low']:.2f}x - {row['high']:.2f}x"
        else:
            ratio, interval = "n/a (neither reached it)", ""
        lines.append(f"| {row['init']} | {row['threshold']:.0%} | "
                     f"{_steps_cell(row['relu'], row['relu_censored'])} | "
                     f"{_steps_cell(row['tanh'], row['tanh_censored'])} | {ratio} | {interval} | "
                     f"{row.get('verdict', '')} |")
    return "\n".join(lines) + "\n"


def analyze_tune(sweep_dir: pathlib.Path, out: pathlib.Path) -> str:
    return compare.tune(
        sweep_dir, cfg.ARM_KEYS, cfg.LR_GRID, mean_error, cfg.TUNED_LR_FILE,
        "per arm, the rate with the lowest mean training error over the run", out / "tune_results.md",
        f"Mean training error over each tuning run (seed {cfg.TUNE_SEED}, {cfg.TUNE_STEPS} steps); "
        "bold: the rate chosen.", fmt=".2%")


def analyze_main(sweep_dir: pathlib.Path, out: pathlib.Path) -> str:
    runs = compare.read_runs(sweep_dir)
    compare.require_finished(runs, sweep_dir)
    arms = compare.group(runs, cfg.ARM_KEYS)
    rows, judged = [], {}
    for init in cfg.INITS:
        relu, tanh = arms.get(f"relu,{init}", {}), arms.get(f"tanh,{init}", {})
        if not relu or not tanh:
            continue
        judged[init] = judged_threshold(relu)
        rows += [ratio_row(init, t, relu, tanh) for t in cfg.THRESHOLDS]
    text = ratio_table(rows) + "\n"
    for init, threshold in judged.items():
        row = next(r for r in rows if r["init"] == init and r["threshold"] == threshold)
        if "ratio" not in row:
            text += f"- {init}: at {threshold:.0%} neither activation got there in some seed\n"
            continue
        six = "inside" if row["low"] <= 6 <= row["high"] else (
            "above" if 6 > row["high"] else "below")
        text += (f"- {init}: judged at {threshold:.0%} (the lowest threshold every ReLU run reached "
                 f"within {cfg.RELU_EPOCHS} epochs, else 25%): tanh / ReLU = "
                 f"{row['bound']}{row['ratio']:.2f}x "
                 f"[{row['low']:.2f}x, {row['high']:.2f}x]: **{row['verdict']}** (the claim: ReLU faster); "
                 f"the paper's 6x is {six} the interval\n")
    atomic.write_text(out / "results.md", text)
    plot(out / "figure.png", rows, arms)
    return text


def plot(path: pathlib.Path, rows: Sequence[dict], arms: Mapping[str, Mapping]) -> None:
    """Left: the ratio against the threshold per init, with its interval. Right: the training-error
    curves of every run (solid ReLU, dashed tanh; colour by init)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    colours = dict(zip(cfg.INITS, ("tab:blue", "tab:orange"), strict=True))
    for init in cfg.INITS:
        mine = [r for r in rows if r["init"] == init and "ratio" in r]
        if mine:
            x = [100 * r["threshold"] for r in mine]
            y = [r["ratio"] for r in mine]
            low = [r["ratio"] - r["low"] for r in mine]
            high = [min(r["high"], 1e3) - r["ratio"] for r in mine]
            left.errorbar(x, y, yerr=[low, high], marker="o", capsize=3, color=colours[init],
                          label=init)
    left.axhline(1, color="grey", linewidth=0.8)
    left.axhline(6, color="grey", linestyle=":", linewidth=0.8, label="paper: 6x at 25%")
    left.set_xscale("log")
    left.set_yscale("log")
    left.invert_xaxis()
    left.set_xlabel("training error threshold (%)")
    left.set_ylabel("steps tanh / steps ReLU (geometric mean, 95% interval)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3, which="both")
    for label, by_seed in arms.items():
        activation, init = label.split(",")
        for run in by_seed.values():
            steps, errors = error_curve(run.records)
            right.plot([s / cfg.EPOCH for s in steps], errors, "-" if activation == "relu" else "--",
                       color=colours.get(init, "black"), linewidth=0.9, alpha=0.8)
    right.set_yscale("log")
    right.set_xlabel("epoch")
    right.set_ylabel(f"training error (last {cfg.WINDOW} logs)")
    right.set_title("solid ReLU, dashed tanh; blue He, orange AlexNet (N(0, 0.01), biases 1)")
    right.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("tune", "main"))
    parser.add_argument("sweep_dir", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, default=HERE)
    args = parser.parse_args(argv)
    run = analyze_tune if args.what == "tune" else analyze_main
    return compare.print_or_refuse(lambda: run(args.sweep_dir, args.out), args.out)


if __name__ == "__main__":
    sys.exit(main())
