"""plain_vs_residual's analysis, by the rules README.md fixed before the runs: the training and
test errors at the end of the budget, degradation (plain56 - plain20), the deeper ResNet
(resnet56 - resnet20) with its interval, and the curves as He et al. 2016's Fig. 6 draws them.

    .venv/bin/python experiments/plain_vs_residual/analyze.py experiments/plain_vs_residual/runs [--out DIR]

Final training error = 1 - the mean train/top1 over the last epoch's logs (training mode, on the
batches as trained); test error = 1 - eval/top1 after the last step; both in points. Writes
results.md (also printed) and figure.png into --out (default: this folder). Points still to run
are reported as pending; a sweep with no finished point is refused.
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
cfg = config_lib.load_module(str(HERE / "config.py"))
DEEPER_RESNET = stats.Rule(direction=-1)   # test error resnet56 - resnet20 < 0
Z_TWO_RUNS = 1.96 * math.sqrt(2)           # 95% range of the difference of two single runs, in s.d.
COLOURS = {"plain20": "tab:blue", "plain56": "tab:red", "resnet20": "tab:green",
           "resnet56": "tab:purple"}


def final_train_error(records: Sequence[Mapping]) -> float:
    """1 - the mean train/top1 over the logs of the last epoch, in points."""
    steps, top1 = series(records, "train/top1")
    last = steps[-1] - cfg.EPOCH
    return 100.0 * (1.0 - statistics.fmean(v for s, v in zip(steps, top1, strict=True) if s > last))


def test_error(records: Sequence[Mapping]) -> float:
    """1 - eval/top1 after the last step, in points."""
    return 100.0 * (1.0 - series(records, "eval/top1")[1][-1])


RESNETS = ("resnet20", "resnet56")
SD_DF = sum(len(cfg.SEEDS[m]) - 1 for m in RESNETS)  # the preregistered s.d.'s degrees of freedom: 4


def pooled_sd(groups: Sequence[Sequence[float]]) -> tuple[float | None, int]:
    """(the pooled within-group sample s.d. over the groups with two or more values, its degrees of
    freedom); (None, 0) when there are none."""
    groups = [g for g in groups if len(g) > 1]
    if not groups:
        return None, 0
    df = sum(len(g) - 1 for g in groups)
    return math.sqrt(sum((len(g) - 1) * statistics.variance(g) for g in groups) / df), df


def single_run_verdict(d: float, sd: float | None, direction: int) -> str:
    """Verdict on one run of each arm: beyond Z_TWO_RUNS * sd in `direction` reproduced, beyond it
    the other way contradicted, inconclusive between; 'pending' without a spread yet."""
    if sd is None:
        return "pending (no seed spread yet: the ResNets' extra seeds size it)"
    bound = Z_TWO_RUNS * sd
    if direction * d > bound:
        return stats.REPRODUCED
    if direction * d < -bound:
        return stats.CONTRADICTED
    return stats.INCONCLUSIVE


def analyze(sweep_dir: pathlib.Path, out: pathlib.Path) -> str:
    runs = compare.read_runs(sweep_dir)
    by_model = compare.group(runs, ("model.name",))
    if not by_model:
        raise UserError(f"no point of {sweep_dir} has finished yet (./launch.sh sweep status "
                        f"{sweep_dir})")
    train = {m: {s: final_train_error(r.records) for s, r in seeds.items()}
             for m, seeds in by_model.items()}
    test = {m: {s: test_error(r.records) for s, r in seeds.items()} for m, seeds in by_model.items()}
    lines = ["| model | seeds | final training error (%) | test error (%) |", "|---|---|---|---|"]
    for model in cfg.MODELS:
        if model not in train:
            lines.append(f"| {model} | pending | | |")
            continue
        seeds = sorted(train[model])
        lines.append(f"| {model} | {', '.join(map(str, seeds))} | "
                     + " / ".join(f"{train[model][s]:.2f}" for s in seeds) + " | "
                     + " / ".join(f"{test[model][s]:.2f}" for s in seeds) + " |")
    pending = [r.name for r in runs if not r.finished]
    text = "\n".join(lines) + "\n\n"
    if pending:
        text += f"Not finished yet: {', '.join(pending)}.\n\n"
    if "plain20" in train and "plain56" in train and 0 in train["plain20"] and 0 in train["plain56"]:
        for what, errors in (("training", train), ("test", test)):
            sd, df = pooled_sd([list(errors.get(m, {}).values()) for m in RESNETS])
            d = errors["plain56"][0] - errors["plain20"][0]
            bound = ("" if sd is None
                     else f" (noise bound {Z_TWO_RUNS * sd:.2f} = {Z_TWO_RUNS:.2f} x {sd:.2f})")
            verdict = f"**{single_run_verdict(d, sd, +1)}**"
            if sd is not None and df < SD_DF:  # the rule waits for the s.d. it fixed; say where it leans
                verdict = (f"**pending** (the s.d. has {df} of its {SD_DF} degrees of freedom until "
                           f"every ResNet seed has run; by it so far: {verdict})")
            text += (f"- Degradation, {what} error, plain56 - plain20 (seed 0): {d:+.2f} points"
                     f"{bound}: {verdict}\n")
    else:
        text += "- Degradation: pending (plain20 and plain56 at seed 0)\n"
    if len(test.get("resnet20", {})) > 1 and len(test.get("resnet56", {})) > 1:
        d = stats.welch_interval(list(test["resnet56"].values()), list(test["resnet20"].values()))
        text += (f"- Deeper ResNet, test error resnet56 - resnet20: {d.mean:+.2f} points, 95% "
                 f"interval [{d.low:+.2f}, {d.high:+.2f}] (Welch, {d.df:.1f} df): "
                 f"**{stats.verdict(d, DEEPER_RESNET)}**\n")
    else:
        text += "- Deeper ResNet: pending (two or more seeds of resnet20 and resnet56)\n"
    atomic.write_text(out / "results.md", text)
    plot(out / "figure.png", by_model)
    return text


def plot(path: pathlib.Path, by_model: Mapping[str, Mapping[int, compare.Run]]) -> None:
    """Training error (thin, smoothed over 5 logs) and test error (bold) against epoch, one colour
    per model, every seed (Fig. 6's layout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for model, seeds in sorted(by_model.items()):
        for seed, run in sorted(seeds.items()):
            steps, top1 = series(run.records, "train/top1")
            smooth = [1 - statistics.fmean(top1[max(0, i - 4):i + 1]) for i in range(len(top1))]
            label = f"{model}" if seed == min(seeds) else None
            ax.plot([s / cfg.EPOCH for s in steps], [100 * e for e in smooth],
                    color=COLOURS.get(model), linewidth=0.7, alpha=0.7)
            steps, top1 = series(run.records, "eval/top1")
            ax.plot([s / cfg.EPOCH for s in steps], [100 * (1 - v) for v in top1],
                    color=COLOURS.get(model), linewidth=2.0, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%): thin training (5 logs), bold test")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, default=HERE)
    args = parser.parse_args(argv)
    return compare.print_or_refuse(lambda: analyze(args.sweep_dir, args.out), args.out)


if __name__ == "__main__":
    sys.exit(main())
