"""The two runs of experiments/conv_impl/config.py side by side: how far apart their training
curves are, and how fast each trained.

    .venv/bin/python experiments/conv_impl/compare.py workdirs/exp_conv_impl [--out DIR]

Reads each point's metrics.jsonl (the xla and explicit folders of the sweep), writes curves.csv
(train/loss and train/top1 of both at every logged step, with their differences),
comparison.md (largest differences, final accuracies, median steps/s and the speed ratio) and
figure.png (both loss curves on one axis, and their absolute difference on a log axis).
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import statistics
from collections.abc import Mapping, Sequence

from cnnjax.sweep.summarize import series
from cnnjax.train.metrics import read_metrics

IMPLS = ("xla", "explicit")


def aligned(a: Sequence[Mapping], b: Sequence[Mapping], metric: str) -> list[tuple[int, float,
                                                                                      float]]:
    """(step, a's value, b's value) at every step where both runs logged `metric`."""
    sa, va = series(a, metric)
    sb, vb = series(b, metric)
    right = dict(zip(sb, vb, strict=True))
    return [(s, v, right[s]) for s, v in zip(sa, va, strict=True) if s in right]


def max_abs_difference(pairs: Sequence[tuple[int, float, float]]) -> float:
    """Largest |a - b| over the aligned steps (0 for none)."""
    return max((abs(x - y) for _, x, y in pairs), default=0.0)


def median_steps_per_sec(records: Sequence[Mapping]) -> float:
    """Median of the logged train/steps_per_sec, leaving out the first interval (it holds the
    warm-up of the input pipeline); raises ValueError when fewer than two were logged."""
    _, values = series(records, "train/steps_per_sec")
    if len(values) < 2:
        raise ValueError(f"need at least two train/steps_per_sec records, got {len(values)}")
    return statistics.median(values[1:])


def find_runs(sweep_dir: pathlib.Path) -> dict[str, list[dict]]:
    """{impl: metric records} for the sweep's model.conv_impl=<impl> folders."""
    runs = {}
    for impl in IMPLS:
        folders = sorted(sweep_dir.glob(f"model.conv_impl={impl}*"))
        if not folders:
            raise FileNotFoundError(f"no model.conv_impl={impl} run in {sweep_dir}; run the sweep "
                                    "first (see experiments/conv_impl/README.md)")
        runs[impl] = read_metrics(folders[0])
    return runs


def figure(loss: Sequence[tuple[int, float, float]], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s, _, _ in loss]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax.plot(steps, [x for _, x, _ in loss], marker="o", markersize=4, label="conv_impl=xla")
    ax.plot(steps, [y for _, _, y in loss], marker="x", linestyle="--", label="conv_impl=explicit")
    ax.set_yscale("log")
    ax.set_ylabel("train/loss (mean over the last 50 steps)")
    ax.set_title("LeNet-5 on MNIST, seed 0: the two curves")
    bx.plot(steps, [max(abs(x - y), 1e-12) for _, x, y in loss], marker="o")
    bx.set_yscale("log")
    bx.set_ylabel("|loss(xla) - loss(explicit)|")
    bx.set_title("difference (1e-12 where exactly equal)")
    for a in (ax, bx):
        a.set_xlabel("step")
        a.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    runs = find_runs(pathlib.Path(args.sweep_dir))
    xla, explicit = runs["xla"], runs["explicit"]
    loss = aligned(xla, explicit, "train/loss")
    top1 = aligned(xla, explicit, "train/top1")
    with open(out / "curves.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "train/loss xla", "train/loss explicit", "abs diff",
                         "train/top1 xla", "train/top1 explicit"])
        for (s, a, b), (_, ta, tb) in zip(loss, top1, strict=True):
            writer.writerow([s, a, b, abs(a - b), ta, tb])
    speed = {impl: median_steps_per_sec(records) for impl, records in runs.items()}
    evals = {impl: series(records, "eval/top1")[1][-1] for impl, records in runs.items()}
    lines = ["# conv_impl: xla against explicit (experiments/conv_impl/compare.py)", "",
             "| | xla | explicit |", "|---|---|---|",
             f"| final eval/top1 | {evals['xla']:.4%} | {evals['explicit']:.4%} |",
             f"| median train steps/s | {speed['xla']:.1f} | {speed['explicit']:.1f} |", "",
             f"- logged steps compared: {len(loss)}",
             f"- largest |train/loss difference|: {max_abs_difference(loss):.3g}",
             f"- largest |train/top1 difference|: {max_abs_difference(top1):.3g}",
             f"- speed ratio xla / explicit: {speed['xla'] / speed['explicit']:.2f}x", ""]
    (out / "comparison.md").write_text("\n".join(lines))
    figure(loss, out / "figure.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
