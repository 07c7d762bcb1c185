"""Arrays served from the devices (cnnjax.data.on_device) against the tf.data path: the deterministic
transforms bit for bit, pad_crop_flip in distribution; resumption and batch-size independence of the
device batches; data.pipeline's choices and errors."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
from helpers.data import idx_config, write_idx
from jax.sharding import NamedSharding, PartitionSpec
from scipy import stats

import cnnjax.data as D
from cnnjax.data import on_device
from cnnjax.data import pipeline as pipelines

ONE_HOST = {"process_index": 0, "process_count": 1}
N, SIDE = 64, 8  # the noise set: every 4x4 patch of it is unique, so a crop names its placement


@pytest.fixture
def noise_dir(tmp_path):
    """IDX train/test sets of N uniform-noise 8x8 images (label i % 10), and a 5x7 test set."""
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (N, SIDE, SIDE), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(N, dtype=np.uint8) % 10)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(1, 256, (11, 5, 7), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(11, dtype=np.uint8) % 10)
    return tmp_path


def arrays(root):
    """The ArraySource of the training split of the IDX files in `root`."""
    return pipelines._source(idx_config(root), pipelines.train_spec(idx_config(root)))


def take(data, steps: int, batch: int, **kw) -> list[dict[str, np.ndarray]]:
    return list(itertools.islice(D.train_batches(data, global_batch_size=batch, seed=3, **ONE_HOST,
                                                 **kw), steps))


@pytest.mark.parametrize(("transform", "size", "channels"), [("none", 8, 1), ("pad_or_crop", 6, 1),
                                                             ("pad_or_crop", 11, 3)])
def test_deterministic_transforms_match_tfdata_bit_for_bit(noise_dir, transform, size, channels):
    # Evaluation reads in order on both paths, so whole passes compare, 1, 5 and 10 crops alike.
    for split, crops in (("train", 1), ("test", 1), ("test", 5), ("test", 10)):
        got = {}
        for pipeline in ("device", "tfdata"):
            data = idx_config(noise_dir, eval_transform=transform, image_size=size,
                              channels=channels, pipeline=pipeline)
            got[pipeline] = list(D.eval_batches(data, global_batch_size=8, split=split, crops=crops,
                                                **ONE_HOST))
        assert len(got["device"]) == len(got["tfdata"]) > 1
        for a, b in zip(got["device"], got["tfdata"], strict=True):
            for key in ("image", "label", "mask"):
                assert a[key].dtype == b[key].dtype
                np.testing.assert_array_equal(a[key], b[key])
    # Training: the orders differ, so each example is checked against tf.data's evaluation pass
    # over the training split (the same transform: none and pad_or_crop ignore their role).
    tf_data = idx_config(noise_dir, eval_transform=transform, image_size=size, channels=channels,
                         pipeline="tfdata")
    reference = np.concatenate([b["image"] for b in D.eval_batches(
        tf_data, global_batch_size=N, split="train", **ONE_HOST)])
    data = idx_config(noise_dir, train_transform=transform, image_size=size, channels=channels,
                      pipeline="device")
    for step, b in enumerate(take(data, 3, 40)):
        index = on_device.step_indices(N, 3, step, 40)[0]
        np.testing.assert_array_equal(b["image"], reference[index])


def placements(images: np.ndarray, size: int) -> dict[bytes, tuple[int, int, int, int]]:
    """Every pad_crop_flip output of every image: its bytes -> (index, y, x, flip)."""
    pad = on_device.PAD
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    limit = padded.shape[1] - size + 1
    out = {}
    for i, y, x, f in itertools.product(range(len(images)), range(limit), range(limit), (0, 1)):
        crop = padded[i, y:y + size, x:x + size]
        out[(crop[:, ::-1] if f else crop).tobytes()] = (i, y, x, f)
    assert len(out) == len(images) * limit * limit * 2  # no two placements give the same output
    return out


def test_pad_crop_flip_is_uniform_on_the_same_support_as_tfdata(noise_dir):
    images = arrays(noise_dir).images
    known = placements(images, SIDE)
    support = sorted({p[1:] for p in known.values()})  # 9 x 9 offsets x 2 flips = 162 cells
    counts = {}
    for pipeline in ("device", "tfdata"):
        data = idx_config(noise_dir, train_transform="pad_crop_flip", image_size=SIDE,
                          pipeline=pipeline)
        cells = []
        for b in take(data, 6, 1000):  # 6000 examples: 37 expected per cell
            for image, label in zip(b["image"], b["label"], strict=True):
                # Exact reconstruction: every pixel is the pad value or the pixel of one placement.
                i, y, x, f = known[image.tobytes()]
                assert label == i % 10
                cells.append((y, x, f))
        counts[pipeline] = np.array([cells.count(c) for c in support])
        assert counts[pipeline].sum() == 6000 and counts[pipeline].min() > 0
        # Uniform over the support; alpha = 1e-3, so a correct sampler fails one run in 1000
        # (the seeds are fixed: it either passes every time or flags a real bias).
        assert stats.chisquare(counts[pipeline]).pvalue > 1e-3, pipeline
    # ... and the two paths draw from one distribution (2 x 162 contingency table, alpha = 1e-3).
    assert stats.chi2_contingency(np.stack([counts["device"], counts["tfdata"]])).pvalue > 1e-3


def test_device_batches_resume_exactly_and_match_the_host_batches(noise_dir):
    data = idx_config(noise_dir, train_transform="pad_crop_flip", image_size=SIDE)
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    sharding = NamedSharding(mesh, PartitionSpec("data"))

    def device(start, steps, batch=24):
        it = D.device_train_batches(data, global_batch_size=batch, seed=3, start_step=start,
                                    sharding=sharding)
        return [jax.tree.map(np.asarray, b) for b in itertools.islice(it, steps)]

    full = device(0, 6)  # 24 of 64 per step: steps 2 and 5 straddle epoch boundaries
    assert all(b["image"].shape == (24, SIDE, SIDE, 1) for b in full)
    for k in (2, 5):
        for a, b in zip(full[k:], device(k, 6 - k), strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
    for a, b in zip(full, take(data, 6, 24), strict=True):  # the host path: the same function
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # Augmentation is keyed by (seed, epoch, example), not by the batch: batch 48 = two of 24.
    joined = np.concatenate([full[0]["image"], full[1]["image"]])
    np.testing.assert_array_equal(device(0, 1, 48)[0]["image"], joined)
    # Each epoch draws new augmentations (keyed by the epoch too): over epochs 0 and 1 (steps of
    # 32 examples), an example keeps its crop and flip with probability 1/162 only.
    known, seen = placements(on_device.pool(arrays(noise_dir), data, train=True)[0], SIDE), {}
    for b in take(data, 4, 32):
        for image in b["image"]:
            i, *placement = known[image.tobytes()]
            seen.setdefault(i, []).append(placement)
    assert sorted(seen) == list(range(N)) and all(len(p) == 2 for p in seen.values())
    assert sum(p[0] != p[1] for p in seen.values()) > N // 2


def test_auto_chooses_by_source_and_transform(noise_dir, class_folder):
    held = arrays(noise_dir)
    folder_config = idx_config(class_folder, source=f"folder:{class_folder}")
    folder = pipelines._source(folder_config, pipelines.train_spec(folder_config))
    auto = idx_config(noise_dir, image_size=8)
    assert on_device.serves(held, auto, "pad_crop_flip", train=True)
    assert on_device.serves(held, auto, "none", train=False)
    assert not on_device.serves(held, auto, "random_resized_crop", train=True)
    assert not on_device.serves(held, idx_config(noise_dir, channels=3, pipeline="tfdata"), "none",
                                train=True)
    assert not on_device.serves(folder, auto, "pad_or_crop", train=True)
    rgb = on_device.why_not(held, idx_config(noise_dir, image_size=17), "pad_crop_flip", train=True)
    assert "data.image_size=17 exceeds the padded 16x16" in rgb


def one_line(fn, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        fn()
    assert "\n" not in str(err.value)


def test_wrong_pipeline_values_are_one_line_errors(noise_dir, class_folder):
    one_line(lambda: take(idx_config(noise_dir, pipeline="gpu"), 1, 4),
             r"data.pipeline must be one of \('auto', 'device', 'tfdata'\), got 'gpu'")
    one_line(lambda: take(idx_config(class_folder, source=f"folder:{class_folder}", image_size=8,
                                     train_transform="pad_or_crop", pipeline="device"), 1, 4),
             r"data.pipeline='device' cannot serve folder:.*not held as arrays.*'auto' or 'tfdata'")
    one_line(lambda: take(idx_config(noise_dir, train_transform="random_resized_crop", image_size=8,
                                     pipeline="device"), 1, 4),
             r"'random_resized_crop' runs only in tf.data")
