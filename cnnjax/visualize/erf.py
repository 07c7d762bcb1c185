"""The effective receptive field (Luo, Li, Urtasun & Zemel 2016, "Understanding the Effective
Receptive Field in Deep Convolutional Neural Networks", Sec. 2 and 4): the gradient of a layer's
centre unit with respect to the input, averaged over images, and the numbers that describe it.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def erf_map(layer_fn: Callable[[jax.Array], jax.Array], images: jax.Array) -> jax.Array:
    """(H, W) mean over images of |d y / d x| summed over input channels, y the layer's centre
    unit (row h // 2, column w // 2 of its (N, h, w, C) output) summed over its channels: Luo et
    al.'s gradient signal of 1 at the centre of the output plane, 0 elsewhere.

    layer_fn maps a batch (N, H, W, Cin) to that layer's output; images are processed one at a
    time, so that each gradient is one example's and nothing is averaged before the absolute value.
    """
    def centre(x):
        out = layer_fn(x[None])
        return jnp.sum(out[0, out.shape[1] // 2, out.shape[2] // 2, :])

    grads = jax.lax.map(jax.grad(centre), jnp.asarray(images, jnp.float32))
    return jnp.mean(jnp.sum(jnp.abs(grads), axis=-1), axis=0)


def support(erf: np.ndarray) -> tuple[int, int]:
    """(rows, columns) of the smallest box that holds every input pixel with a nonzero gradient:
    the measured extent of the field, to compare with the theoretical one."""
    erf = np.asarray(erf)
    rows, cols = np.nonzero(np.any(erf > 0, axis=1))[0], np.nonzero(np.any(erf > 0, axis=0))[0]
    if rows.size == 0:
        return (0, 0)
    return (int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1))


def mass_diameter(erf: np.ndarray, centre: tuple[float, float], fraction: float = 0.95) -> int:
    """Side, in pixels, of the smallest square centred on `centre` (input coordinates of the centre
    unit's field) that holds `fraction` of the map's total mass. Pixels count by their centres and
    the square's half-side grows in whole pixels (by halves where the centre falls between pixels)."""
    erf = np.asarray(erf, np.float64)
    total = float(erf.sum())
    if total <= 0:
        return 0
    ys, xs = np.indices(erf.shape)
    distance = np.maximum(np.abs(ys - centre[0]), np.abs(xs - centre[1])).ravel()
    order = np.argsort(distance, kind="stable")
    cumulative = np.cumsum(erf.ravel()[order])
    # the first pixel that reaches the fraction; every pixel at the same distance comes with it
    radius = distance[order][int(np.searchsorted(cumulative, fraction * total * (1 - 1e-6)))]
    return round(2 * radius + 1)


def erf_numbers(erf: np.ndarray, centre: tuple[float, float], field: tuple[int, int]) -> dict:
    """What visualize.json reports for one layer's ERF: the theoretical field, the measured
    support, the 95%-mass diameter and its ratio to the theoretical size."""
    erf = np.asarray(erf)
    d95 = mass_diameter(erf, centre, 0.95)
    return {"theoretical_rf": list(field), "erf_support": list(support(erf)), "erf_d95": d95,
            "erf_d95_over_rf": d95 / max(field)}
