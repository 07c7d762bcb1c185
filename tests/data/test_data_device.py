"""The device side: normalisation against numpy, and sharded prefetching that keeps the data."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from cnnjax.data.device import normalize, prefetch_to_device


def test_normalize_matches_numpy_per_channel():
    images = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    want = (images / 255.0 - np.array(mean)) / np.array(std)
    got = normalize(jnp.asarray(images), mean, std)
    assert got.dtype == jnp.float32 and got.shape == images.shape
    # Float32 against float64: a scale, a subtraction and a division (or their fused form with
    # rounded constants), a few roundings of values up to (1 - 0.406) / 0.225 = 2.6, i.e. about
    # 4 * 2.6 * 2^-24 = 6e-7; 1e-5 bounds that and still catches a swapped channel (off by > 0.1).
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
    crops = np.stack([images, images[:, ::-1]], axis=1)  # (B, crops, H, W, C)
    np.testing.assert_allclose(np.asarray(normalize(jnp.asarray(crops), mean, std))[:, 1],
                               want[:, ::-1], rtol=1e-5, atol=1e-5)
    half = jax.jit(lambda x: normalize(x, (0.5,), (0.25,), jnp.bfloat16))(jnp.asarray(images))
    assert half.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(half, np.float32), (images / 255.0 - 0.5) / 0.25,
                               atol=0.02)  # bfloat16's u = 2^-8 at values <= 2: 2.5 roundings


def test_normalize_rejects_mismatched_statistics():
    images = jnp.zeros((1, 2, 2, 3), jnp.uint8)
    with pytest.raises(ValueError, match=r"1 or 3 \(channels\) values"):
        normalize(images, (0.5, 0.5), (0.5, 0.5))
    with pytest.raises(ValueError, match="std must be positive"):
        normalize(images, (0.5,), (0.0,))


def test_prefetch_to_device_shards_along_the_batch_and_runs_ahead():
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))
    n = 2 * jax.device_count()
    batches = [{"image": np.full((n, 3, 3, 1), k, np.uint8), "label": np.arange(n, dtype=np.int32) + k,
                "mask": np.ones(n, bool)} for k in range(5)]
    pulled = []

    def source():
        for b in batches:
            pulled.append(1)
            yield b

    it = prefetch_to_device(source(), sharding, size=2)
    assert not pulled  # nothing happens before the first batch is asked for
    first = next(it)
    # A background thread fills the queue: wait (bounded) until it has run ahead, then check that it
    # stays bounded: the one handed out, `size` queued, and at most one more held by the thread while
    # it waits for room in the queue.
    deadline = time.monotonic() + 30
    while len(pulled) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert 3 <= len(pulled) <= 4
    got = [first, *it]
    assert len(got) == 5
    for want, have in zip(batches, got, strict=True):
        for k in want:
            assert isinstance(have[k], jax.Array) and have[k].sharding == sharding
            np.testing.assert_array_equal(np.asarray(have[k]), want[k])
    with pytest.raises(ValueError, match="size must be >= 1"):
        prefetch_to_device(iter(batches), sharding, size=0)
