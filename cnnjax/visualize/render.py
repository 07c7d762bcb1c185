"""The figures and the page: PNGs drawn with matplotlib (Agg, no display needed) and an index.html
that lays them out with their captions, readable offline (relative links, no scripts)."""

from __future__ import annotations

import html
import math
import pathlib
from collections.abc import Sequence

import numpy as np

from cnnjax.visualize.filters import grid, normalise


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _show(ax, image: np.ndarray, **kwargs) -> None:
    """An (H, W, 1 or 3) image in [0, 1] without axes: grayscale for one channel."""
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest", **kwargs)
    else:
        ax.imshow(np.clip(image, 0, 1), interpolation="nearest", **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def grid_png(path: pathlib.Path, image: np.ndarray, title: str) -> pathlib.Path:
    """One assembled grid (filters.grid) as a figure with a title."""
    plt = _pyplot()
    height, width = image.shape[:2]
    scale = min(12 / max(width, 1), 10 / max(height, 1), 0.25)
    fig, ax = plt.subplots(figsize=(max(width * scale, 3), max(height * scale, 1.5) + 0.5))
    _show(ax, image)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def maps_png(path: pathlib.Path, maps: np.ndarray, title: str, max_channels: int) -> pathlib.Path:
    """A layer's (h, w, C) output as a grid of its first max_channels channels, each stretched to
    its own range (grey: a constant channel)."""
    channels = min(maps.shape[-1], max_channels)
    tiles = np.stack([normalise(maps[..., c]) for c in range(channels)])[..., None]
    columns = math.ceil(math.sqrt(channels))
    pad = max(1, maps.shape[0] // 16)
    return grid_png(path, grid(tiles, columns, pad), title)


def erf_png(path: pathlib.Path, panels: Sequence[tuple[str, np.ndarray, tuple, str]]
            ) -> pathlib.Path:
    """One heat map per layer: (name, ERF (H, W), theoretical field box (top, left, h, w), numbers
    line); the theoretical field is the dashed box."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    columns = min(4, len(panels))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, erf, box, numbers) in zip(axes.ravel(), panels, strict=False):
        ax.axis("on")
        ax.imshow(erf / max(float(erf.max()), 1e-30), cmap="inferno", vmin=0, vmax=1)
        top, left, h, w = box
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), w, h, fill=False, edgecolor="cyan",
                               linestyle="--", linewidth=1))
        ax.set_xlim(-0.5, erf.shape[1] - 0.5)
        ax.set_ylim(erf.shape[0] - 0.5, -0.5)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{name}\n{numbers}", fontsize=7)
    fig.suptitle("effective receptive field (|gradient| of the centre unit, mean over images); "
                 "dashed: theoretical field", fontsize=9)
    return _save(fig, path)


def attribution_png(path: pathlib.Path, image: np.ndarray, heats: Sequence[tuple[str, np.ndarray]],
                    title: str) -> pathlib.Path:
    """The image, then each (label, (H, W) map) overlaid on it."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 1 + len(heats), figsize=(3 * (1 + len(heats)), 3.4))
    _show(axes[0], image)
    axes[0].set_title("input", fontsize=8)
    for ax, (label, heat) in zip(axes[1:], heats, strict=True):
        _show(ax, image, alpha=0.6)
        ax.imshow(heat, cmap="jet", alpha=0.45, interpolation="bilinear")
        ax.set_title(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def patches_png(path: pathlib.Path, rows: Sequence[tuple[str, Sequence[np.ndarray]]],
                title: str) -> pathlib.Path:
    """One row per unit: (label, its top patches (r, r, 1 or 3) in [0, 1])."""
    plt = _pyplot()
    k = max(len(p) for _, p in rows)
    fig, axes = plt.subplots(len(rows), k, figsize=(1.1 * k + 1, 1.2 * len(rows) + 0.6),
                             squeeze=False)
    for r, (label, pieces) in enumerate(rows):
        for c in range(k):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(pieces):
                _show(ax, pieces[c])
        axes[r, 0].axis("on")
        axes[r, 0].set_ylabel(label, fontsize=7)
        for side in axes[r, 0].spines.values():
            side.set_visible(False)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def index_html(title: str, sections: Sequence[tuple[str, Sequence[tuple[str, str]]]]) -> str:
    """The page: per section a heading and its (png file name, caption) figures, in order."""
    parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1.5em;max-width:1400px}"
             "figure{display:inline-block;vertical-align:top;margin:0 1em 1em 0}"
             "img{max-width:100%;border:1px solid #ddd}figcaption{font-size:0.85em;max-width:60em}"
             "</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             '<p>Numbers: <a href="visualize.json">visualize.json</a></p>']
    for heading, figures in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for png, caption in figures:
            parts.append(f'<figure><a href="{html.escape(png)}"><img src="{html.escape(png)}" '
                         f'alt="{html.escape(caption)}"></a>'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
