"""Training and test error against step for the four networks of the plain_vs_residual sweep on
one figure (as He et al. 2016, Fig. 6: thin lines training error, bold test error), and a table
of the errors at the end and at each evaluation, with the deeper-minus-shallower differences.

    .venv/bin/python experiments/plain_vs_residual/curves.py workdirs/exp_plain_vs_residual [--out DIR]

Training error at a logged step is 1 - train/top1, the mean accuracy of the training batches
since the previous log (in training mode: batch-norm statistics of each batch), so single values
are noisy; the table also gives the mean over the last SMOOTH logged values. Test error is
1 - eval/top1 on the whole test split. Writes errors.md (also printed) and figure.png into --out
(default: this folder).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
from collections.abc import Mapping, Sequence

from cnnjax.sweep.summarize import POINT_FILE, series
from cnnjax.train.metrics import read_metrics

MODELS = ("plain20", "plain56", "resnet20", "resnet56")
SMOOTH = 5  # logged training errors averaged for the "final" training error
WINDOW = 100  # steps per window of the training-error-against-step table
COLOURS = {"plain20": "tab:blue", "plain56": "tab:red", "resnet20": "tab:green",
           "resnet56": "tab:purple"}


def error_curve(records: Sequence[Mapping], metric: str) -> tuple[list[int], list[float]]:
    """(steps, 1 - metric) at every step that logged `metric` (train/top1 or eval/top1)."""
    steps, accuracy = series(records, metric)
    return steps, [1.0 - a for a in accuracy]


def find_runs(sweep_dir: pathlib.Path) -> dict[str, list[dict]]:
    """{model name: metric records} for each point of the sweep; all four must be there."""
    runs = {}
    for point_file in sorted(sweep_dir.glob(f"*/{POINT_FILE}")):
        overrides = json.loads(point_file.read_text()).get("overrides", {})
        if overrides.get("model.name") in MODELS:
            runs[overrides["model.name"]] = read_metrics(point_file.parent)
    missing = [m for m in MODELS if m not in runs]
    if missing:
        raise FileNotFoundError(f"no model.name={missing[0]} point in {sweep_dir}; run the sweep "
                                "first (see experiments/plain_vs_residual/README.md)")
    return runs


def final_train_error(records: Sequence[Mapping], last: int = SMOOTH) -> float:
    """The mean of the last `last` logged training errors."""
    _, errors = error_curve(records, "train/top1")
    if not errors:
        raise ValueError("no train/top1 logged")
    return statistics.fmean(errors[-last:])


def window_means(records: Sequence[Mapping], width: int = WINDOW) -> dict[int, float]:
    """{window end: mean training error of the logs in (end - width, end]}, windows from 0."""
    steps, errors = error_curve(records, "train/top1")
    out: dict[int, list[float]] = {}
    for step, error in zip(steps, errors, strict=True):
        out.setdefault(-(-step // width) * width, []).append(error)
    return {end: statistics.fmean(v) for end, v in sorted(out.items())}


def table(runs: Mapping[str, Sequence[Mapping]]) -> str:
    """Markdown: per model the smoothed final training error and the test error at each
    evaluation; the training error per WINDOW steps; then deeper minus shallower for each kind
    (positive: degradation)."""
    eval_steps = sorted({s for r in runs.values() for s in error_curve(r, "eval/top1")[0]})
    heads = ["model", f"training error (mean of last {SMOOTH} logs)"]
    heads += [f"test error at step {s}" for s in eval_steps]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    final_train, final_test = {}, {}
    for model in MODELS:
        final_train[model] = final_train_error(runs[model])
        steps, errors = error_curve(runs[model], "eval/top1")
        by_step = dict(zip(steps, errors, strict=True))
        final_test[model] = errors[-1] if errors else float("nan")
        cells = [model, f"{final_train[model]:.2%}"]
        cells += [f"{by_step[s]:.2%}" if s in by_step else "" for s in eval_steps]
        lines.append("| " + " | ".join(cells) + " |")
    windows = {m: window_means(runs[m]) for m in MODELS}
    ends = sorted({e for w in windows.values() for e in w})
    heads = ["model"] + [f"steps {e - WINDOW + 1}-{e}" for e in ends]
    lines += ["", f"Training error, mean over each {WINDOW}-step window:", "",
              "| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    for model in MODELS:
        cells = [model] + [f"{windows[model][e]:.1%}" if e in windows[model] else "" for e in ends]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for kind in ("plain", "resnet"):
        dtrain = final_train[f"{kind}56"] - final_train[f"{kind}20"]
        dtest = final_test[f"{kind}56"] - final_test[f"{kind}20"]
        lines.append(f"{kind}56 - {kind}20: training error {dtrain:+.2%}, final test error "
                     f"{dtest:+.2%} (positive: the deeper network is worse)")
    return "\n".join(lines) + "\n"


def plot(path: pathlib.Path, runs: Mapping[str, Sequence[Mapping]], title: str) -> None:
    """Thin lines: training error; bold lines with markers: test error; one colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for model in MODELS:
        colour = COLOURS[model]
        style = "-" if model.startswith("resnet") else "--"
        ax.plot(*error_curve(runs[model], "train/top1"), style, color=colour, linewidth=0.8,
                alpha=0.8, label=f"{model} training")
        ax.plot(*error_curve(runs[model], "eval/top1"), style, color=colour, linewidth=2.5,
                marker="o", label=f"{model} test")
    ax.set_xlabel("training step")
    ax.set_ylabel("error (1 - top-1 accuracy)")
    ax.set_title(title)
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
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
    (args.out / "errors.md").write_text(text)
    plot(args.out / "figure.png", runs,
         "plain against residual (option A), depths 20 and 56: Fashion-MNIST")
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
