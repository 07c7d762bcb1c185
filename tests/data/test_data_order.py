"""Example order: epochs are permutations, seeds decide everything, resumption is exact, hosts split
batches, and evaluation counts every example once."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from helpers.data import N_TEST, N_TRAIN, idx_config

import cnnjax.data as D


def train(data, k: int, *, batch: int = 8, seed: int = 0, start_step: int = 0, host: int = 0,
          hosts: int = 1) -> list[dict[str, np.ndarray]]:
    it = D.train_batches(data, global_batch_size=batch, seed=seed, start_step=start_step,
                         process_index=host, process_count=hosts)
    return list(itertools.islice(it, k))


def ids(batches) -> np.ndarray:
    """Example indices of training batches of the generated IDX set (image i is filled with i)."""
    return np.concatenate([b["image"].reshape(len(b["image"]), -1).max(axis=1) for b in batches])


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_training_batches_have_the_contract_shapes_and_dtypes(idx_dir):
    batch = train(idx_config(idx_dir), 1, batch=8)[0]
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (8, 6, 5, 1) and batch["image"].dtype == np.uint8
    assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32
    np.testing.assert_array_equal(batch["label"], ids([batch]) % 7)  # labels travel with images


def test_every_epoch_is_a_fresh_permutation(idx_dir):
    order = ids(train(idx_config(idx_dir), 25, batch=8))  # 200 positions = 4 epochs of 50
    epochs = order.reshape(4, N_TRAIN)
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(N_TRAIN))
    assert len({tuple(e) for e in epochs}) == 4
    assert not np.array_equal(epochs[0], np.arange(N_TRAIN))


def test_same_seed_same_batches_other_seed_other_batches(idx_dir):
    data = idx_config(idx_dir, train_transform="cifar", image_size=6)  # random crops and flips
    first, again, other = train(data, 8), train(data, 8), train(data, 8, seed=1)
    assert_same(first, again)
    assert not np.array_equal(ids(first), ids(other))
    # Same examples in a different order is not enough: the augmentation must differ too.
    by_example = {}
    for b in first:
        for img, i in zip(b["image"], ids([b]), strict=True):
            by_example.setdefault(int(i), img)
    differ = [not np.array_equal(img, by_example[int(i)])
              for b in other for img, i in zip(b["image"], ids([b]), strict=True)
              if int(i) in by_example]
    assert differ and np.mean(differ) > 0.5


@pytest.mark.parametrize("pipeline", ["device", "tfdata"])
@pytest.mark.parametrize("k", [1, 6, 7, 13])
def test_resuming_at_step_k_continues_the_uninterrupted_run(idx_dir, k, pipeline):
    # 50 examples, batch 8: step 6 holds positions 48..55, the boundary of epochs 0 and 1.
    data = idx_config(idx_dir, train_transform="cifar", image_size=6, pipeline=pipeline)
    full = train(data, 16, seed=5)
    assert_same(full[k:], train(data, 16 - k, seed=5, start_step=k))


def test_resuming_far_ahead_reads_nothing_before_it(idx_dir):
    data = idx_config(idx_dir)
    start = time.perf_counter()
    batches = train(data, 2, start_step=10**7)  # position 8e7: epoch 1.6 million
    assert time.perf_counter() - start < 5.0  # replaying 8e7 examples would take minutes
    assert len(batches) == 2 and batches[0]["image"].shape == (8, 6, 5, 1)


@pytest.mark.parametrize("pipeline", ["device", "tfdata"])
@pytest.mark.parametrize("hosts", [2, 4])
def test_hosts_split_the_global_batch_without_changing_it(idx_dir, hosts, pipeline):
    data = idx_config(idx_dir, train_transform="cifar", image_size=6, pipeline=pipeline)
    single = train(data, 8, seed=3)
    parts = [train(data, 8, seed=3, host=h, hosts=hosts) for h in range(hosts)]
    for step, whole in enumerate(single):
        for key in ("image", "label"):
            joined = np.concatenate([parts[h][step][key] for h in range(hosts)])
            np.testing.assert_array_equal(joined, whole[key])


@pytest.mark.parametrize(("batch", "hosts"), [(1, 1), (4, 1), (5, 1), (13, 1), (16, 1), (4, 2),
                                              (6, 2), (12, 3), (4, 4), (32, 4)])
def test_eval_padding_counts_every_example_once(idx_dir, batch, hosts):
    data = idx_config(idx_dir)
    runs = [list(D.eval_batches(data, global_batch_size=batch, process_index=h, process_count=hosts))
            for h in range(hosts)]
    assert len({len(r) for r in runs}) == 1  # every host steps through the same number of batches
    assert len(runs[0]) == -(-N_TEST // batch)
    seen = []
    for r in runs:
        for b in r:
            assert b["image"].shape == (batch // hosts, 6, 5, 1) and b["mask"].dtype == np.bool_
            seen += (b["image"][b["mask"]].reshape(-1, 30).max(axis=1) - 100).tolist()
            assert not b["image"][~b["mask"]].any() and not b["label"][~b["mask"]].any()
            np.testing.assert_array_equal(b["label"][b["mask"]],
                                          (b["image"][b["mask"]].reshape(-1, 30).max(axis=1) - 100) % 7)
    assert sorted(seen) == list(range(N_TEST))


def test_eval_is_in_order_and_repeatable(idx_dir):
    data = idx_config(idx_dir)
    a = list(D.eval_batches(data, global_batch_size=5, process_index=0, process_count=1))
    b = list(D.eval_batches(data, global_batch_size=5, process_index=0, process_count=1))
    assert_same(a, b)
    order = np.concatenate([x["image"][x["mask"]].reshape(-1, 30).max(axis=1) for x in a]) - 100
    np.testing.assert_array_equal(order, np.arange(N_TEST))
