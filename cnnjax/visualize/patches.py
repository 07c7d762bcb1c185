"""Top patches (Zeiler & Fergus 2014, Sec. 4, Fig. 2): for chosen units (channels) of a layer, the
k images of a dataset pass that excite them most, each cropped to the receptive field of the
position where the channel peaks."""

from __future__ import annotations

import dataclasses

import numpy as np

from cnnjax.visualize.features import Layer


@dataclasses.dataclass(frozen=True)
class Hit:
    """One image's strongest response of a channel: value, image index in the pass, unit (y, x)."""

    value: float
    image: int
    y: int
    x: int


def best_per_image(activations: np.ndarray, units: list[int], offset: int,
                   mask: np.ndarray | None = None) -> dict[int, list[Hit]]:
    """{unit: one Hit per (unmasked) image of the batch}: where in each image channel `unit` of
    the (B, h, w, C) activations is largest; images are numbered from `offset`."""
    b, h, w, _ = activations.shape
    keep = np.ones(b, bool) if mask is None else np.asarray(mask, bool)
    out = {}
    for unit in units:
        flat = activations[..., unit].reshape(b, h * w)
        where = np.argmax(flat, axis=1)
        out[unit] = [Hit(float(flat[i, where[i]]), offset + i, int(where[i] // w), int(where[i] % w))
                     for i in range(b) if keep[i]]
    return out


def merge_top(top: dict[int, list[Hit]], new: dict[int, list[Hit]], k: int) -> dict[int, list[Hit]]:
    """The k largest hits per unit among `top` and `new`, largest first (earlier image on ties)."""
    merged = {}
    for unit in set(top) | set(new):
        hits = top.get(unit, []) + new.get(unit, [])
        merged[unit] = sorted(hits, key=lambda h: (-h.value, h.image))[:k]
    return merged


def field_box(layer: Layer, y: int, x: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) in input pixels of unit (y, x)'s receptive field; it may reach
    outside the image (into the padding)."""
    cy, cx = layer.centre(y, x)
    return (round(cy - (layer.field[0] - 1) / 2), round(cx - (layer.field[1] - 1) / 2),
            layer.field[0], layer.field[1])


def crop(image: np.ndarray, box: tuple[int, int, int, int], fill: float = 0) -> np.ndarray:
    """The box of `image` (H, W, C), with `fill` where it reaches outside the image."""
    top, left, height, width = box
    out = np.full((height, width, image.shape[-1]), fill, image.dtype)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + height, image.shape[0]), min(left + width, image.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return out
