"""The synthetic source without TensorFlow: fixed random images, kept on the device for training.

With the transform 'none' (the setting of benchmarks and tests) the synthetic source needs no
per-example preprocessing, so it is served by numpy and JAX alone: an accelerator image without
TensorFlow can train on it. Other transforms still go through tf.data (cnnjax.data.tfdata).

Example i is uniform random uint8 noise of shape (H, W, data.channels) drawn from Philox keyed by
(SYNTHETIC_SEED, i), with label i % num_classes. Training order follows tfdata's contract: epoch e is a
permutation of [0, N) drawn from (seed, e), global step s takes stream positions [s*G, (s+1)*G), and
host p its slice [p*B, (p+1)*B) of them, so step s is a function of (seed, s) alone and resuming at
step k needs nothing before it. Evaluation reads positions [0, ceil(N/G)*G) in order; positions >= N
are padding (zeros, mask False).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import ml_collections
import numpy as np

from cnnjax.data.layout import Layout
from cnnjax.data.sources import SyntheticSource

SYNTHETIC_SEED = 5_318_008  # one fixed dataset, whatever the training seed


def served_without_tf(source, transform: str) -> bool:
    """True when `source` read with `transform` is served here (numpy/JAX) rather than by tf.data."""
    return isinstance(source, SyntheticSource) and transform == "none"


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


def step_indices(n: int, seed: int, step: int, global_batch: int) -> np.ndarray:
    """The example indices (G,) of global training step `step` (see the module docstring)."""
    start = step * global_batch
    out, filled = np.empty(global_batch, np.int64), 0
    while filled < global_batch:
        epoch, offset = divmod(start + filled, n)
        take = min(n - offset, global_batch - filled)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        out[filled:filled + take] = perm[offset:offset + take]
        filled += take
    return out


def train_batches(source: SyntheticSource, data: ml_collections.ConfigDict, layout: Layout, *,
                  seed: int, start_step: int) -> Iterator[dict[str, np.ndarray]]:
    """Endless host batches {'image', 'label'} of this host's part of each step, from `start_step`."""
    images, labels = source_pool(source, data)
    lo = layout.process_index * layout.local
    step = start_step
    while True:
        index = step_indices(source.num_examples, seed, step, layout.total)[lo:lo + layout.local]
        yield {"image": images[index], "label": labels[index]}
        step += 1


def eval_batches(source: SyntheticSource, data: ml_collections.ConfigDict, layout: Layout
                 ) -> Iterator[dict[str, np.ndarray]]:
    """One pass in order, this host's slice of each step, padding zeroed and masked out."""
    images, labels = source_pool(source, data)
    n = source.num_examples
    lo = layout.process_index * layout.local
    for step in range(math.ceil(n / layout.total)):
        q = step * layout.total + lo + np.arange(layout.local)
        valid = q < n
        index = np.minimum(q, n - 1)
        image = images[index]
        image[~valid] = 0
        yield {"image": image, "label": labels[index], "mask": valid}


def device_train_batches(source: SyntheticSource, data: ml_collections.ConfigDict, *,
                         global_batch_size: int, seed: int, start_step: int, sharding
                         ) -> Iterator[dict]:
    """The same batches as `train_batches` (all hosts together), gathered on the devices.

    The pool is copied to every device once; each step then moves only its (G,) indices, so the
    host does no per-step image work and no image bytes cross the host-device link.
    """
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    replicated = NamedSharding(sharding.mesh, PartitionSpec())

    def put(x):  # every process holds the whole value
        return jax.make_array_from_process_local_data(replicated, x)

    images, labels = (put(x) for x in source_pool(source, data))
    gather = jax.jit(lambda im, lb, i: {"image": im[i], "label": lb[i]}, out_shardings=sharding)
    step = start_step
    while True:
        index = step_indices(source.num_examples, seed, step, global_batch_size).astype(np.int32)
        yield gather(images, labels, put(index))
        step += 1
