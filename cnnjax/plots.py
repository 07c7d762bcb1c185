"""The figures the tools save: curves against step and confusion matrices, as PNG files (Agg backend,
so no display is needed)."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, also on machines without a display
    import matplotlib.pyplot as plt

    return plt


def line_plot(path: str | pathlib.Path, curves: Sequence[tuple[str, Sequence, Sequence]], *,
              xlabel: str, ylabel: str, title: str = "") -> pathlib.Path:
    """One line (with markers) per (label, xs, ys); the legend moves outside when it grows long."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, xs, ys in curves:
        ax.plot(list(xs), list(ys), marker="o", markersize=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 8:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    elif curves:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def confusion_plot(path: str | pathlib.Path, matrix: np.ndarray,
                   class_names: Sequence[str] | None = None, title: str = "") -> pathlib.Path:
    """The confusion matrix (rows: true class, columns: predicted), each row normalised to sum 1.

    Class names label the axes up to 30 classes; counts are written in the cells up to 12.
    """
    plt = _pyplot()
    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(max(5.0, 0.35 * n + 2), 14.0)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    if n <= 30:
        names = list(class_names or [])
        labels = [str(names[i]) if i < len(names) else str(i) for i in range(n)]
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
