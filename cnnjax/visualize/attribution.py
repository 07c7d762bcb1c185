"""What a prediction rests on, per image: gradient saliency (Simonyan, Vedaldi & Zisserman 2013,
Sec. 3.1), Grad-CAM (Selvaraju et al. 2017, Sec. 3, Eq. 1-2) and occlusion sensitivity (Zeiler &
Fergus 2014, Sec. 4.2)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def saliency(logits_fn: Callable[[jax.Array], jax.Array], image: jax.Array, cls: int
             ) -> tuple[jax.Array, jax.Array]:
    """(gradient (H, W, C), map (H, W)): d logit_cls / d image and its maximum absolute value over
    the channels (Simonyan et al. Sec. 3.1: the class score, before the softmax)."""
    grad = jax.grad(lambda x: logits_fn(x[None])[0, cls])(jnp.asarray(image, jnp.float32))
    return grad, jnp.max(jnp.abs(grad), axis=-1)


def grad_cam(logits_and_activation: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
             image: jax.Array, cls: int, activation_shape: tuple[int, ...]) -> jax.Array:
    """(h, w) Grad-CAM map at one layer: ReLU(sum_k alpha_k A^k), alpha_k the spatial mean of
    d logit_cls / d A^k (Selvaraju et al. Eq. 1-2), at the layer's resolution.

    logits_and_activation(x, delta) returns the logits and the layer's output A for the batch x
    with delta added to A (see features.apply_capturing): the gradient at delta = 0 is dy/dA.
    """
    x = jnp.asarray(image, jnp.float32)[None]
    delta = jnp.zeros((1, *activation_shape), jnp.float32)

    def score(delta):
        logits, activation = logits_and_activation(x, delta)
        return logits[0, cls], activation

    grads, activation = jax.grad(score, has_aux=True)(delta)
    alpha = jnp.mean(grads[0], axis=(0, 1))                  # (C,)
    return jax.nn.relu(jnp.einsum("hwc,c->hw", activation[0], alpha))


def upsample(heat: np.ndarray, size: tuple[int, int], start: tuple[float, float],
             jump: tuple[int, int]) -> np.ndarray:
    """A layer's (h, w) map on the image's (H, W) pixels for overlays: unit (i, j) sits at the
    centre of its receptive field (start + i * jump, features.Layer), bilinear in between and the
    edge units' values beyond. (Resizing the map to the image instead would shift it wherever the
    layers do not pad, e.g. LeNet-5's c3 covers pixels 6.5 to 24.5 of 32.)"""
    heat = np.asarray(heat, np.float64)
    rows = [np.arange(n) * jump[a] + start[a] for a, n in enumerate(heat.shape)]
    along_x = np.stack([np.interp(np.arange(size[1]), rows[1], row) for row in heat])
    return np.stack([np.interp(np.arange(size[0]), rows[0], col) for col in along_x.T], axis=1)


def occlusion_positions(size: int, patch: int, stride: int) -> list[int]:
    """Top-left offsets along one axis of size `size`: 0, stride, ... while the patch fits."""
    return list(range(0, max(size - patch, 0) + 1, stride))


def occlusion(probs_fn: Callable[[jax.Array], jax.Array], image: np.ndarray, cls: int, patch: int,
              stride: int, fill: float, batch: int = 64) -> np.ndarray:
    """(ny, nx) drop of class `cls`'s probability when a patch x patch square of value `fill` covers
    the image at each position (row i at offset i * stride): p(image) - p(occluded).

    probs_fn maps a batch (N, H, W, C) to probabilities (N, classes); occluded images are scored
    `batch` at a time.
    """
    image = np.asarray(image)
    ys = occlusion_positions(image.shape[0], patch, stride)
    xs = occlusion_positions(image.shape[1], patch, stride)
    base = float(np.asarray(probs_fn(image[None]))[0, cls])
    offsets = [(y, x) for y in ys for x in xs]
    drops = []
    for lo in range(0, len(offsets), batch):
        chunk = offsets[lo:lo + batch]
        occluded = np.repeat(image[None], len(chunk), axis=0)
        for i, (y, x) in enumerate(chunk):
            occluded[i, y:y + patch, x:x + patch, :] = fill
        drops.append(base - np.asarray(probs_fn(occluded))[:, cls])
    return np.concatenate(drops).reshape(len(ys), len(xs))
