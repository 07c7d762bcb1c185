"""Convolution kernels as images (Krizhevsky et al. 2012, Fig. 3; Zeiler & Fergus 2014, Fig. 6):
the first layer's filters in colour when they read RGB, grayscale otherwise; a deeper layer's as
one grayscale tile per (input channel, filter); grouped convolutions one grid per group."""

from __future__ import annotations

import numpy as np


def normalise(tile: np.ndarray) -> np.ndarray:
    """`tile` scaled to [0, 1] by its own minimum and maximum (a constant tile becomes 0.5): each
    filter uses the whole grey (or colour) range, so shapes show, not relative magnitudes."""
    lo, hi = float(tile.min()), float(tile.max())
    if hi <= lo:
        return np.full(tile.shape, 0.5, np.float32)
    return ((tile - lo) / (hi - lo)).astype(np.float32)


def grid(tiles: np.ndarray, columns: int, pad: int = 1, background: float = 1.0) -> np.ndarray:
    """(n, h, w, c) tiles in a (rows, columns) grid with `pad` pixels of `background` between them:
    (rows * (h + pad) - pad, columns * (w + pad) - pad, c)."""
    n, h, w, c = tiles.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    out = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad, c), background, np.float32)
    for i in range(n):
        r, col = divmod(i, columns)
        out[r * (h + pad):r * (h + pad) + h, col * (w + pad):col * (w + pad) + w] = tiles[i]
    return out


def first_layer_tiles(kernel: np.ndarray, groups: int = 1) -> list[np.ndarray]:
    """One (filters, kh, kw, 1 or 3) array per group of a first layer's HWIO kernel, each filter
    normalised on its own: RGB in colour when the filter reads 3 channels, else one grayscale tile
    per input channel (filters x channels tiles)."""
    kernel = np.asarray(kernel, np.float32)
    _kh, _kw, cin, cout = kernel.shape
    out = []
    per_group = cout // groups
    for g in range(groups):
        k = np.moveaxis(kernel[..., g * per_group:(g + 1) * per_group], -1, 0)  # (f, kh, kw, cin)
        if cin == 3:
            out.append(np.stack([normalise(f) for f in k]))
        else:
            out.append(per_input_channel(kernel[..., g * per_group:(g + 1) * per_group]))
    return out


def per_input_channel(kernel: np.ndarray) -> np.ndarray:
    """(filters * cin, kh, kw, 1) grayscale tiles, filter-major (one grid row per filter when laid
    out cin to a row), each filter normalised over all its input channels together so that which
    input channels it weighs most shows."""
    kernel = np.asarray(kernel, np.float32)
    filters = np.moveaxis(kernel, -1, 0)                     # (f, kh, kw, cin)
    normed = np.stack([normalise(f) for f in filters])
    return np.moveaxis(normed, -1, 1).reshape(-1, kernel.shape[0], kernel.shape[1], 1)
