"""What an evaluation leaves behind: <stem>.json, the confusion PNG, the console lines, and the
--all table (json, csv, accuracy-vs-step PNG).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnnjax import atomic
from cnnjax.evaluate.overrides import EVAL_KEYS


def result_stem(step: int | str, crops: int, split: str | None = None, data: str | None = None,
                changes: Mapping[str, Any] | None = None) -> str:
    """'eval_<step>_<crops>crop', plus '_<data>_<split>' for whichever of the evaluation source and
    split was changed (data.eval_source, data.eval_split: --data, --split), plus '_<leaf>-<value>' for
    each other change of the result (overrides.EVAL_KEYS), e.g. '_eval_transform-center_crop'; a
    10-digit digest stands for those others where they would make the name longer than 100.

    Without changes the name is the same as before overrides existed, so earlier results keep theirs.
    """
    changes = dict(changes or {})
    data = changes.pop("data.eval_source", data)
    split = changes.pop("data.eval_split", split)
    changes.pop("data.eval_crops", None)  # in the name already
    others = [f"{key.rsplit('.', 1)[-1]}-{value}" for key, value in sorted(changes.items())
              if EVAL_KEYS.get(key, True)]
    stem = "_".join([f"eval_{step}_{crops}crop"] + [_safe(str(p)) for p in (data, split) if p])
    tail = "_".join(_safe(p, "_") for p in others)
    if len(stem) + len(tail) > 100:
        tail = hashlib.sha256(repr(sorted(changes.items())).encode()).hexdigest()[:10]
    return f"{stem}_{tail}" if tail else stem


def _safe(part: str, keep: str = "") -> str:
    """`part` with every run of other characters than letters, digits, '.+-' and `keep` as '-'."""
    return re.sub(rf"[^A-Za-z0-9.+{keep}-]+", "-", part).strip("-")


def write_result(directory: pathlib.Path, stem: str, result: dict,
                 class_names: Sequence[str] | None, title: str) -> tuple[pathlib.Path, pathlib.Path]:
    """<stem>.json (everything) and <stem>_confusion.png."""
    from cnnjax import plots

    png = plots.confusion_plot(directory / f"{stem}_confusion.png",
                               np.asarray(result["confusion_matrix"]), class_names, title)
    path = atomic.write_text(directory / f"{stem}.json", json.dumps(
        {**result, "class_names": list(class_names) if class_names else None,
         "confusion_png": png.name}, indent=1) + "\n")  # whole or not at all: summarize reads it
    return path, png


def report_lines(result: dict, class_names: Sequence[str] | None, show: int = 20) -> list[str]:
    """The console report: accuracies, errors and loss, then per-class accuracy (all classes up to
    `show`, else the five lowest and highest)."""
    lines = [f"top-1 accuracy {result['top1']:.2%} (error {result['top1_error']:.2%})  "
             f"top-5 accuracy {result['top5']:.2%} (error {result['top5_error']:.2%})  "
             f"loss {result['loss']:.4f}"]
    names = list(class_names) if class_names else [str(i) for i in
                                                   range(len(result["per_class_accuracy"]))]
    scored = [(acc, names[i] if i < len(names) else str(i))
              for i, acc in enumerate(result["per_class_accuracy"]) if acc is not None]
    if len(scored) <= show:
        lines.append("per-class accuracy: " + ", ".join(f"{n} {a:.1%}" for a, n in scored))
    else:
        ordered = sorted(scored)
        lines.append("per-class accuracy, lowest: " + ", ".join(f"{n} {a:.1%}" for a, n in ordered[:5])
                     + "; highest: " + ", ".join(f"{n} {a:.1%}" for a, n in ordered[-5:]))
    return lines


def write_table(directory: pathlib.Path, stem: str, rows: list[dict]) -> list[pathlib.Path]:
    """<stem>.json, <stem>.csv and <stem>.png (top-1 and top-5 accuracy against step)."""
    from cnnjax import plots

    keys = ["step", "examples", "top1", "top5", "top1_error", "top5_error", "loss"]
    atomic.write_text(directory / f"{stem}.json", json.dumps(rows, indent=1) + "\n")
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(directory / f"{stem}.csv", table.getvalue())
    steps = [r["step"] for r in rows]
    plots.line_plot(directory / f"{stem}.png",
                    [("top-1", steps, [r["top1"] for r in rows]),
                     ("top-5", steps, [r["top5"] for r in rows])],
                    xlabel="step", ylabel="accuracy", title=f"{directory.name}: {stem}")
    return [directory / f"{stem}.{ext}" for ext in ("json", "csv", "png")]
