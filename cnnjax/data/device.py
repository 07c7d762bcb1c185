"""The device side of the input pipeline: host batches become sharded global arrays, uint8 -> float.

Never imports TensorFlow: the host sends uint8 images (a quarter of float32's bytes) and the
normalisation runs on the accelerator, inside the jitted step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax.data.config import DataError


def normalize(images: jax.Array, mean: Sequence[float] | float, std: Sequence[float] | float,
              dtype=jnp.float32) -> jax.Array:
    """(images / 255 - mean) / std per channel, in `dtype`; images uint8 (..., C), mean/std in [0, 1].

    Works on (B, H, W, C) and on (B, crops, H, W, C): mean and std broadcast over the last axis.
    """
    mean = np.asarray(mean, np.float32).reshape(-1)
    std = np.asarray(std, np.float32).reshape(-1)
    channels = images.shape[-1]
    if mean.size not in (1, channels) or std.size not in (1, channels):
        raise DataError(f"normalize: mean and std need 1 or {channels} (channels) values each, got "
                        f"{mean.size} and {std.size}")
    if np.any(std <= 0):
        raise DataError(f"normalize: std must be positive, got {std.tolist()}")
    # One multiply-add: x * (1 / (255 std)) - mean / std.
    scale = jnp.asarray(1.0 / (255.0 * std))
    shift = jnp.asarray(mean / std)
    return (images.astype(jnp.float32) * scale - shift).astype(dtype)


def prefetch_to_device(batches: Iterator[dict[str, np.ndarray]], sharding: jax.sharding.Sharding,
                       size: int = 2) -> Iterator[dict[str, jax.Array]]:
    """Global arrays from each process's local batches, transferred `size` batches ahead.

    Every array of a batch is split along its first (batch) axis by `sharding`, e.g.
    NamedSharding(mesh, PartitionSpec('data')), which fits arrays of any rank; each process passes
    its own rows (jax.make_array_from_process_local_data), so the global batch is the concatenation
    of the processes' batches in process order. A background thread pulls the host batches and
    starts their transfers, so neither reading nor copying runs on the thread that dispatches the
    steps: while the step runs on batch k, batches k+1 .. k+size are already on their way.
    """
    if size < 1:
        raise DataError(f"prefetch_to_device: size must be >= 1, got {size}")
    return _prefetch(iter(batches), sharding, size)


_DONE = object()


def _prefetch(batches, sharding, size):
    ready: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for batch in batches:
                put = {k: jax.make_array_from_process_local_data(sharding, v)
                       for k, v in batch.items()}
                if not offer(put):
                    return
            offer(_DONE)
        except BaseException as error:  # handed to the consumer, raised there with its traceback
            offer(error)

    worker = threading.Thread(target=work, name="prefetch_to_device", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # the consumer stopped early (or finished): let the worker go, and wait for it, since a
        stop.set()  # daemon thread still inside TensorFlow's C++ at interpreter exit aborts the process
        worker.join(timeout=30)
