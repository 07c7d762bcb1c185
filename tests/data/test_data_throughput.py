"""The throughput options of the input pipeline: data.deterministic=False (same examples, order no
longer fixed) and device prefetch on a background thread (errors and early stops handled)."""

from __future__ import annotations

import threading

import jax
import numpy as np
import pytest
from helpers.data import idx_config
from jax.sharding import NamedSharding, PartitionSpec

import cnnjax.data as D
from cnnjax.data import sources, tfdata
from cnnjax.data.layout import make_layout


def sharding():
    return NamedSharding(jax.make_mesh((jax.device_count(),), ("data",)), PartitionSpec("data"))


def test_deterministic_off_reaches_tf_data_and_keeps_the_examples(idx_dir):
    on, off = idx_config(idx_dir), idx_config(idx_dir, deterministic=False)
    layout = make_layout(10, 0, 1)
    source = sources.load_source(sources.train_spec(off), off)
    assert tfdata.train_dataset(source, off, layout, seed=0, start_step=0).options().deterministic \
        is False
    assert tfdata.train_dataset(source, on, layout, seed=0, start_step=0).options().deterministic
    # Out of order at most: each batch is one the deterministic stream yields within a few steps.
    fixed = [b["image"].tobytes() for _, b in zip(range(12), D.train_batches(
        on, global_batch_size=10, seed=0, process_index=0, process_count=1), strict=False)]
    loose = [b["image"].tobytes() for _, b in zip(range(6), D.train_batches(
        off, global_batch_size=10, seed=0, process_index=0, process_count=1), strict=False)]
    assert all(b in fixed for b in loose)


def test_deterministic_must_be_a_bool(idx_dir):
    data = idx_config(idx_dir)
    with data.ignore_type():
        data.deterministic = "fast"
    with pytest.raises(ValueError, match=r"data\.deterministic must be one of"):
        D.dataset_info(data, "train")


def test_prefetch_reads_and_copies_on_a_background_thread():
    readers = []

    def batches():
        for i in range(5):
            readers.append(threading.current_thread())
            yield {"x": np.full((jax.device_count() * 2,), i, np.int32)}

    got = [int(b["x"][0]) for b in D.prefetch_to_device(batches(), sharding())]
    assert got == [0, 1, 2, 3, 4]
    assert readers and all(t is not threading.main_thread() for t in readers)


def test_prefetch_hands_on_the_readers_error_after_the_good_batches():
    def batches():
        yield {"x": np.zeros((jax.device_count(),), np.int32)}
        raise ValueError("corrupt or unreadable image x.jpg")

    it = D.prefetch_to_device(batches(), sharding())
    assert next(it)["x"].shape == (jax.device_count(),)
    with pytest.raises(ValueError, match=r"x\.jpg"):
        next(it)


def test_prefetch_stopped_early_lets_its_thread_finish():
    def endless():
        while True:
            yield {"x": np.zeros((jax.device_count(),), np.int32)}

    before = threading.active_count()
    it = D.prefetch_to_device(endless(), sharding(), size=2)
    next(it)
    it.close()
    for _ in range(50):
        if threading.active_count() <= before:
            break
        threading.Event().wait(0.05)
    assert threading.active_count() <= before
