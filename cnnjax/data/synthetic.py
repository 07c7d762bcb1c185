"""The synthetic source's images without TensorFlow: fixed random images, served like any array
source by cnnjax.data.on_device (order, device pool, augmentation) when data.pipeline allows.

Example i is uniform random uint8 noise of shape (H, W, data.channels) drawn from Philox keyed by
(SYNTHETIC_SEED, i), with label i % num_classes. (tf.data draws its own noise: the two pipelines
serve different synthetic images.)
"""

from __future__ import annotations

import functools

import ml_collections
import numpy as np

from cnnjax.data.sources import SyntheticSource

SYNTHETIC_SEED = 5_318_008  # one fixed dataset, whatever the training seed


@functools.lru_cache(maxsize=2)
def pool(num_examples: int, shape: tuple[int, int, int], num_classes: int
         ) -> tuple[np.ndarray, np.ndarray]:
    """All N images (N, H, W, C) uint8 and labels (N,) int32 of the synthetic dataset."""
    images = np.empty((num_examples, *shape), np.uint8)
    for i in range(num_examples):
        rng = np.random.Generator(np.random.Philox(key=[SYNTHETIC_SEED, i]))
        images[i] = rng.integers(0, 256, shape, dtype=np.uint8)
    return images, (np.arange(num_examples) % num_classes).astype(np.int32)


def source_pool(source: SyntheticSource, data: ml_collections.ConfigDict
                ) -> tuple[np.ndarray, np.ndarray]:
    """The pool of `source` with data.channels channels (the 'none' transform's output shape)."""
    h, w, _ = source.shape
    return pool(source.num_examples, (h, w, int(data.channels)), source.num_classes)
