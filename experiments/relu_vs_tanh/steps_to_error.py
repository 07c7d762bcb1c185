"""Steps each activation of the relu_vs_tanh sweep needs to reach 25%, 15% and 12% training
error, their ratios, and both training-error curves on one figure (Krizhevsky et al. 2012, Fig. 1).

    .venv/bin/python experiments/relu_vs_tanh/steps_to_error.py workdirs/exp_relu_vs_tanh [--out DIR]

Training error at a logged step is 1 - train/top1, the mean accuracy over the training batches
since the previous log (every 10 steps here), so a crossing is resolved to the logging interval.
Writes steps_to_error.md (also printed) and figure.png into --out (default: this folder).
"""

from __future__ import annotations

import argparse
import json
import pathlib
from collections.abc import Mapping, Sequence

from cnnjax.plots import line_plot
from cnnjax.sweep.summarize import POINT_FILE, series
from cnnjax.train.metrics import read_metrics

THRESHOLDS = (0.25, 0.15, 0.12)
ACTIVATIONS = ("relu", "tanh")


def error_curve(records: Sequence[Mapping]) -> tuple[list[int], list[float]]:
    """(steps, training error = 1 - train/top1) at every logged step."""
    steps, top1 = series(records, "train/top1")
    return steps, [1.0 - v for v in top1]


def steps_to_error(steps: Sequence[int], errors: Sequence[float], threshold: float) -> int | None:
    """The first logged step whose training error is at or below `threshold` (None: never)."""
    return next((s for s, e in zip(steps, errors, strict=True) if e <= threshold), None)


def ratio(slow: int | None, fast: int | None) -> float | None:
    """slow / fast, or None when either run never reached the threshold."""
    return None if slow is None or fast is None else slow / fast


def find_runs(sweep_dir: pathlib.Path) -> dict[str, tuple[dict, list[dict]]]:
    """{activation: (sweep point overrides, metric records)} for each point of the sweep."""
    runs = {}
    for point_file in sorted(sweep_dir.glob(f"*/{POINT_FILE}")):
        overrides = json.loads(point_file.read_text())
        overrides = overrides.get("overrides", overrides)
        activation = overrides.get("model.activation")
        if activation in ACTIVATIONS:
            runs[activation] = (overrides, read_metrics(point_file.parent))
    missing = [a for a in ACTIVATIONS if a not in runs]
    if missing:
        raise FileNotFoundError(f"no model.activation={missing[0]} point in {sweep_dir}; run the "
                                "sweep first (see experiments/relu_vs_tanh/README.md)")
    return runs


def table(runs: Mapping[str, tuple[dict, list[dict]]]) -> str:
    """Markdown: learning rate, steps to each threshold per activation, and the tanh/ReLU ratio."""
    heads = ["activation", "base_lr"] + [f"steps to {t:.0%} error" for t in THRESHOLDS]
    heads.append("final training error")
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    reached = {}
    for activation in ACTIVATIONS:
        overrides, records = runs[activation]
        steps, errors = error_curve(records)
        reached[activation] = [steps_to_error(steps, errors, t) for t in THRESHOLDS]
        cells = [activation, str(overrides.get("schedule.base_lr", ""))]
        cells += ["never" if s is None else str(s) for s in reached[activation]]
        cells.append(f"{errors[-1]:.2%}" if errors else "")
        lines.append("| " + " | ".join(cells) + " |")
    ratios = [ratio(t, r) for t, r in zip(reached["tanh"], reached["relu"], strict=True)]
    cells = ["ratio tanh / relu", ""] + ["n/a" if r is None else f"{r:.2f}x" for r in ratios] + [""]
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=pathlib.Path)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path(__file__).parent)
    args = parser.parse_args(argv)
    runs = find_runs(args.sweep_dir)
    text = table(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "steps_to_error.md").write_text(text)
    curves = [(f"{a} (lr {runs[a][0].get('schedule.base_lr')})", *error_curve(runs[a][1]))
              for a in ACTIVATIONS]
    last = max(max(xs, default=0) for _, xs, _ in curves)
    curves += [(f"{t:.0%} error", [0, last], [t, t]) for t in THRESHOLDS]
    line_plot(args.out / "figure.png", curves, xlabel="training step",
              ylabel="training error (1 - train/top1)",
              title="smallcnn on Fashion-MNIST: ReLU against tanh")
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
