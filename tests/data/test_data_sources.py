"""Every source kind reads what is on disk: IDX, image folders, labels.csv, synthetic, TFDS."""

from __future__ import annotations

import csv
import hashlib
import importlib.resources
import itertools
import pathlib
import shutil
import sys

import numpy as np
import pytest
from helpers.data import N_TEST, N_TRAIN, config, encode, idx_config, indexed_images, write_idx

import cnnjax.data as D
from cnnjax.data import sources, tfds_source

REPO = pathlib.Path(__file__).resolve().parents[2]
ONE_HOST = dict(process_index=0, process_count=1)
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # LeCun's page
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def eval_all(data, batch: int = 64, **kw) -> dict[str, np.ndarray]:
    """One evaluation pass, padding dropped, batches concatenated."""
    parts = list(D.eval_batches(data, global_batch_size=batch, **ONE_HOST, **kw))
    mask = np.concatenate([p["mask"] for p in parts])
    return {k: np.concatenate([p[k] for p in parts])[mask] for k in ("image", "label")}


# -- IDX -------------------------------------------------------------------------------------------

def test_idx_reads_both_splits_in_file_order(idx_dir):
    data = idx_config(idx_dir)
    info = D.dataset_info(data, "train")
    assert (info.num_examples, info.num_classes, info.image_shape) == (N_TRAIN, 7, (6, 5, 1))
    assert D.dataset_info(data, "test").num_examples == N_TEST
    for split, n, offset in (("train", N_TRAIN, 0), ("test", N_TEST, 100)):
        got = eval_all(data, split=split)
        np.testing.assert_array_equal(got["image"][..., 0], indexed_images(n, offset))
        np.testing.assert_array_equal(got["label"], np.arange(n) % 7)


def test_idx_reads_uncompressed_files_and_converts_to_rgb(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (4, 3, 2), dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images, compress=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([3, 1, 4, 1], np.uint8), compress=False)
    got = eval_all(idx_config(tmp_path, channels=3, mean=(0.5,), std=(0.5,)))
    assert got["image"].shape == (4, 3, 2, 3)
    for c in range(3):
        np.testing.assert_array_equal(got["image"][..., c], images)
    np.testing.assert_array_equal(got["label"], [3, 1, 4, 1])


def test_shared_mnist_counts_and_label_histograms(shared_data):
    data = config(source=f"idx:{shared_data / 'mnist'}", channels=1, mean=(0.13,), std=(0.31,))
    assert D.dataset_info(data, "train").num_examples == 60000
    assert D.dataset_info(data, "test").num_examples == 10000
    for split, expected in (("train", MNIST_TRAIN_COUNTS), ("test", MNIST_TEST_COUNTS)):
        got = eval_all(data, batch=10000, split=split)
        assert got["image"].shape[1:] == (32, 32, 1)
        np.testing.assert_array_equal(np.bincount(got["label"], minlength=10), expected)


def test_shipped_mnist_is_the_original_and_found_from_the_repo_root(monkeypatch):
    sums = (REPO / "data/mnist/SHA256SUMS").read_text().split("\n")
    for line in filter(None, sums):
        digest, name = line.split()
        assert hashlib.sha256((REPO / "data/mnist" / name).read_bytes()).hexdigest() == digest
    assert "Creative Commons" in (REPO / "data/mnist/README.md").read_text()
    monkeypatch.chdir(REPO)
    info = D.dataset_info(D.default_data_config(), "train")  # source 'idx:data/mnist'
    assert (info.num_examples, info.num_classes, info.image_shape) == (60000, 10, (32, 32, 3))


# -- Image folders ---------------------------------------------------------------------------------

def folder_config(root, **fields):
    """A folder read whole by training and evaluation: eval_split names the training split."""
    return config(**{"source": f"folder:{root}", "channels": 3, "mean": (0.5,), "std": (0.5,),
                     "eval_transform": "center_crop", "image_size": 16, "resize_size": 16,
                     "eval_split": "train", **fields})


def test_class_folders_become_sorted_classes(class_folder):
    data = folder_config(class_folder)
    info = D.dataset_info(data, "train")
    assert (info.num_examples, info.num_classes, info.class_names) == (5, 3, ["ant", "bee", "cat"])
    got = eval_all(data, batch=2)
    np.testing.assert_array_equal(got["label"], [0, 0, 1, 1, 2])
    # Each file is one gray level (40, 80, ...); JPEG may move it by a level or two.
    levels = got["image"].reshape(5, -1).mean(axis=1)
    np.testing.assert_allclose(levels, 40 * np.arange(1, 6), atol=2)
    assert got["image"].shape == (5, 16, 16, 3)


def test_cached_folder_gives_the_same_batches(class_folder):
    data = folder_config(class_folder, train_transform="inception")
    cached = folder_config(class_folder, train_transform="inception", cache=True)
    for a, b in zip(itertools.islice(D.train_batches(data, global_batch_size=4, seed=2, **ONE_HOST), 3),
                    itertools.islice(D.train_batches(cached, global_batch_size=4, seed=2, **ONE_HOST), 3),
                    strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_split_subfolder_is_used_when_present(class_folder, tmp_path):
    root = tmp_path / "split"
    for cls in ("ant", "bee"):
        shutil.copytree(class_folder / cls, root / "train" / cls)
    shutil.copytree(class_folder / "cat", root / "val" / "cat")
    data = folder_config(root, eval_split="val")
    assert D.dataset_info(data, "train").class_names == ["ant", "bee"]
    assert D.dataset_info(data, "train").num_examples == 4
    assert D.dataset_info(data, "val").class_names == ["cat"]
    # No 'test' subfolder: an error naming the ones there are, never the whole folder (whose
    # subfolders would be taken for classes) nor the training images under the name 'test'.
    with pytest.raises(ValueError, match=r"no subfolder 'test' .*\(its subfolders: 'train', 'val'\)"):
        D.dataset_info(data, "test")
    # Without split subfolders the training split is the whole folder.
    assert D.dataset_info(folder_config(class_folder), "train").num_examples == 5


def test_flat_folder_with_labels_csv(tmp_path):
    rows = [("x.png", 2, "two"), ("y.jpg", 0, "zero"), ("sub/z.png", 1, "one")]
    (tmp_path / "sub").mkdir()
    for k, (name, _, _) in enumerate(rows):
        fmt = "PNG" if name.endswith("png") else "JPEG"
        (tmp_path / name).write_bytes(encode(np.full((9, 9, 3), 60 * k, np.uint8), fmt))
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "class_index", "class_name"])
        w.writerows(rows)
    data = folder_config(tmp_path, resize_size=9, image_size=9)
    info = D.dataset_info(data, "train")
    assert (info.num_examples, info.class_names) == (3, ["zero", "one", "two"])
    got = eval_all(data)
    np.testing.assert_array_equal(got["label"], [2, 0, 1])
    np.testing.assert_allclose(got["image"].reshape(3, -1).mean(axis=1), [0, 60, 120], atol=2)


def test_shared_imagenet_sample_labels_follow_labels_csv(shared_data):
    root = shared_data / "imagenet_sample"
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    data = folder_config(root, image_size=224, resize_size=256)
    info = D.dataset_info(data, "train")
    assert (info.num_examples, info.num_classes, info.image_shape) == (1000, 1000, (224, 224, 3))
    assert info.class_names[0] == "tench" and info.class_names[999] == rows[-1]["class_name"]
    source = sources.load_source(sources.train_spec(data), data)
    assert [pathlib.Path(p).name for p in source.paths] == [
        pathlib.Path(r["filename"]).name for r in rows]
    np.testing.assert_array_equal(source.labels, [int(r["class_index"]) for r in rows])
    assert sorted(source.labels.tolist()) == list(range(1000))


def test_shared_grayscale_jpegs_become_rgb(shared_data, tmp_path):
    names = ["n03804744_nail.JPEG", "n04356056_sunglasses.JPEG", "n01440764_tench.JPEG"]
    with open(tmp_path / "labels.csv", "w") as f:
        f.write("filename,class_index\n")
        for k, name in enumerate(names):
            shutil.copy(shared_data / "imagenet_sample/images" / name, tmp_path / name)
            f.write(f"{name},{k}\n")
    got = eval_all(folder_config(tmp_path, image_size=64, resize_size=64))
    assert got["image"].shape == (3, 64, 64, 3)
    for gray in got["image"][:2]:
        np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
        np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    colour = got["image"][2].astype(int)
    assert np.abs(colour[..., 0] - colour[..., 1]).mean() > 2  # the tench photo is in colour


# -- Synthetic -------------------------------------------------------------------------------------

def test_synthetic_images_are_fixed_random_and_labelled_by_index():
    data = config(source="synthetic", synthetic_shape=(8, 8, 3), synthetic_examples=20,
                  num_classes=6, channels=3, mean=(0.5,), std=(0.5,), eval_transform="none")
    info = D.dataset_info(data, "test")
    assert (info.num_examples, info.num_classes, info.image_shape) == (20, 6, (8, 8, 3))
    first, again = eval_all(data, batch=8), eval_all(data, batch=5)
    np.testing.assert_array_equal(first["image"], again["image"])
    np.testing.assert_array_equal(first["label"], np.arange(20) % 6)
    counts = np.bincount(first["image"].ravel(), minlength=256)
    assert counts.size == 256 and first["image"].std() > 60  # uniform on 0..255 has std 73.9
    assert len({im.tobytes() for im in first["image"]}) == 20


# -- TFDS ------------------------------------------------------------------------------------------

@pytest.fixture
def tfds_dir(tmp_path, monkeypatch):
    """A prepared TFDS dataset 'cnnjax_tiny' (train 12, test 5; 8x8x1 images filled with their index).

    TFDS 4.9.10 imports `importlib_resources` when it prepares a dataset; where that backport is not
    installed, the standard library's module (same API in Python 3.11) stands in.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        import importlib_resources  # noqa: F401
    except ImportError:
        monkeypatch.setitem(sys.modules, "importlib_resources", importlib.resources)

    def split(n, offset):
        images = np.broadcast_to((offset + np.arange(n, dtype=np.uint8))[:, None, None, None],
                                 (n, 8, 8, 1)).copy()
        return tf.data.Dataset.from_tensor_slices({"image": images, "label": np.arange(n) % 3})

    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(8, 8, 1)),
        "label": tfds.features.ClassLabel(names=["a", "b", "c"])})
    tfds.dataset_builders.store_as_tfds_dataset(
        name="cnnjax_tiny", version="1.0.0", features=features, data_dir=str(tmp_path),
        split_datasets={"train": split(12, 0), "test": split(5, 100)})
    tfds_source.load_tfds.cache_clear()
    yield tmp_path
    tfds_source.load_tfds.cache_clear()


def tfds_config(data_dir, **fields):
    return config(**{"source": "tfds:cnnjax_tiny", "data_dir": str(data_dir), "channels": 1,
                     "mean": (0.5,), "std": (0.5,), "train_transform": "none",
                     "eval_transform": "none", **fields})


def test_tfds_small_dataset_is_held_in_memory(tfds_dir):
    data = tfds_config(tfds_dir)
    info = D.dataset_info(data, "train")
    assert (info.num_examples, info.num_classes, info.class_names) == (12, 3, ["a", "b", "c"])
    assert info.image_shape == (8, 8, 1)
    got = eval_all(data, batch=4)  # the test split
    assert sorted(got["image"][:, 0, 0, 0].tolist()) == list(range(100, 105))
    np.testing.assert_array_equal(got["label"], (got["image"][:, 0, 0, 0] - 100) % 3)
    train = eval_all(tfds_config(tfds_dir, source="tfds:cnnjax_tiny:train[:50%]"), split=None)
    assert len(train["label"]) == 5  # eval ignores the source's own split: 'test' has 5
    own = D.dataset_info(tfds_config(tfds_dir, source="tfds:cnnjax_tiny:train[:50%]"), "train")
    assert own.num_examples == 6     # training reads the split written in the source


def test_tfds_streamed_dataset_is_deterministic_resumable_and_counted_once(tfds_dir, monkeypatch):
    monkeypatch.setattr(tfds_source, "IN_MEMORY_BYTES", 0)
    data = tfds_config(tfds_dir, train_transform="cifar", image_size=8, shuffle_buffer=4)
    assert isinstance(sources.load_source(sources.train_spec(data), data),
                      tfds_source.TfdsStreamSource)

    def run(start_step, k, seed=0):
        it = D.train_batches(data, global_batch_size=5, seed=seed, start_step=start_step, **ONE_HOST)
        return list(itertools.islice(it, k))

    full = run(0, 6)
    for a, b in zip(full[3:], run(3, 3), strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    other = run(0, 6, seed=1)
    assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(full, other, strict=True))
    # The first 12 positions of the stream are one epoch: every example once.
    ids = np.concatenate([b["image"].max(axis=(1, 2, 3)) for b in full])[:12]
    assert sorted(ids.tolist()) == list(range(12))
    for hosts in (1, 2, 3):
        seen = []
        batches = [list(D.eval_batches(data, global_batch_size=2 * hosts, process_index=p,
                                       process_count=hosts)) for p in range(hosts)]
        assert len({len(b) for b in batches}) == 1
        for host in batches:
            for b in host:
                seen += b["image"][b["mask"]][:, 0, 0, 0].tolist()
        assert sorted(seen) == list(range(100, 105))
