"""Mean and spread over seeds of the final test error with and without the auxiliary heads, the
per-seed (paired) differences, and the main head's training-error curves on one figure.

    .venv/bin/python experiments/googlenet_aux/seed_stats.py workdirs/exp_googlenet_aux [--out DIR]

The two points of a seed start from the same main network and see the same batches (the sweep
differs only in model.aux_heads; Flax derives each layer's initial weights from its path), so the
difference within a seed is the paired effect of the heads. train/loss includes the heads' 0.3-
weighted losses when they are on, so it is not comparable across the two settings; train/top1
and everything eval/ are the main head's alone. Training error at a logged step is 1 - train/top1
(the mean over the batches since the previous log, with dropout on); the table gives the mean of
the last SMOOTH logs. Writes seed_stats.md (also printed) and figure.png into --out (default: this
folder). The spread is the sample standard deviation (n - 1).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
from collections.abc import Mapping, Sequence

from cnnjax.sweep.summarize import POINT_FILE, series
from cnnjax.train.metrics import read_metrics

KEY = "model.aux_heads"
SMOOTH = 5
LABELS = {False: "no aux", True: "aux (0.3)"}


def find_runs(sweep_dir: pathlib.Path) -> dict[bool, dict[int, list[dict]]]:
    """{aux_heads: {seed: metric records}} over the points that logged a final evaluation."""
    out: dict[bool, dict[int, list[dict]]] = {}
    for point_file in sorted(sweep_dir.glob(f"*/{POINT_FILE}")):
        overrides = json.loads(point_file.read_text())["overrides"]
        records = read_metrics(point_file.parent)
        if KEY in overrides and series(records, "eval/top1")[1]:
            aux = overrides[KEY]
            aux = aux if isinstance(aux, bool) else str(aux).lower() == "true"
            out.setdefault(aux, {})[int(overrides.get("seed", 0))] = records
    if not out:
        raise FileNotFoundError(f"no finished {KEY} point in {sweep_dir}; run the sweep first "
                                "(see experiments/googlenet_aux/README.md)")
    return out


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation); the spread of a single value is 0."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def final(records: Sequence[Mapping], metric: str) -> float:
    """The last logged value of `metric`."""
    return series(records, metric)[1][-1]


def train_error(records: Sequence[Mapping], last: int = SMOOTH) -> float:
    """Main-head training error: 1 - mean of the last `last` logged train/top1."""
    return 1.0 - statistics.fmean(series(records, "train/top1")[1][-last:])


def _cell(values: Mapping[int, float], fmt: str) -> tuple[str, str]:
    per_seed = " / ".join(format(values[s], fmt) for s in sorted(values))
    mean, sd = mean_and_spread(list(values.values()))
    return per_seed, f"{format(mean, fmt)} +- {format(sd, fmt)}"


def table(runs: Mapping[bool, Mapping[int, Sequence[Mapping]]]) -> str:
    """Markdown: per setting the test error, main-head test loss and training error by seed and
    their mean +- s.d.; then aux minus no aux within each seed."""
    lines = ["| heads | test top-1 error by seed | mean +- s.d. | test loss (main head) | "
             f"training error, main head (last {SMOOTH} logs) |", "|---|---|---|---|---|"]
    test_err = {}
    for aux in sorted(runs):
        by_seed = runs[aux]
        test_err[aux] = {s: 1.0 - final(r, "eval/top1") for s, r in by_seed.items()}
        per_seed, mean = _cell(test_err[aux], ".2%")
        _, loss = _cell({s: final(r, "eval/loss") for s, r in by_seed.items()}, ".4f")
        _, err = _cell({s: train_error(r) for s, r in by_seed.items()}, ".2%")
        lines.append(f"| {LABELS[aux]} | {per_seed} | {mean} | {loss} | {err} |")
    if {False, True} <= set(test_err):
        seeds = sorted(set(test_err[False]) & set(test_err[True]))
        diffs = [test_err[True][s] - test_err[False][s] for s in seeds]
        if diffs:
            mean, sd = mean_and_spread(diffs)
            lines.append(f"\naux - no aux, test error, paired by seed: "
                         f"{' / '.join(f'{d:+.2%}' for d in diffs)}; mean {mean:+.2%} +- {sd:.2%} "
                         "(negative: the heads help)")
    return "\n".join(lines) + "\n"


def plot(path: pathlib.Path, runs: Mapping[bool, Mapping[int, Sequence[Mapping]]],
         title: str) -> None:
    """Main-head training error against step: solid with heads, dashed without, colour by seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(8, 5))
    for aux in sorted(runs):
        for seed, records in sorted(runs[aux].items()):
            steps, top1 = series(records, "train/top1")
            ax.plot(steps, [1.0 - v for v in top1], "-" if aux else "--",
                    color=colours[seed % len(colours)], linewidth=1.2,
                    label=f"{LABELS[aux]}, seed {seed}")
    ax.set_xlabel("training step")
    ax.set_ylabel("training error of the main head (1 - train/top1)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parent)
    args = parser.parse_args(argv)
    runs = find_runs(args.sweep_dir)
    text = table(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seed_stats.md").write_text(text)
    plot(args.out / "figure.png", runs, "googlenet_small on Fashion-MNIST: auxiliary heads")
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
