"""Bad data and bad configs: corrupt files are skipped and named (or stop the run), everything else
fails at once with one clear line."""

from __future__ import annotations

import importlib.resources
import io
import itertools
import pathlib
import sys
import warnings

import numpy as np
import pytest
from helpers.data import config, encode, idx_config, write_idx

import cnnjax.data as D
from cnnjax.data import sources, tfds_source

ONE_HOST = dict(process_index=0, process_count=1)


def one_line_error(fn, match: str) -> str:
    with pytest.raises(ValueError, match=match) as err:
        fn()
    assert "\n" not in str(err.value), str(err.value)
    return str(err.value)


@pytest.fixture
def corrupt_folder(tmp_path):
    """labels.csv over 6 images: 0, 2, 4 fine; 1 truncated JPEG; 3 not an image at all; 5 fine."""
    good = encode(np.full((12, 12, 3), 90, np.uint8), "JPEG")
    files = {f"img{k}.jpg": good for k in (0, 2, 4, 5)}
    files["img1.jpg"] = good[: len(good) // 2]
    files["img3.jpg"] = b"this is not an image" * 10
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
    (tmp_path / "labels.csv").write_text(
        "filename,class_index\n" + "".join(f"img{k}.jpg,{k % 2}\n" for k in range(6)))
    return tmp_path


def folder_config(root, **fields):
    """A folder read whole by training and evaluation: eval_split names the training split."""
    return config(**{"source": f"folder:{root}", "channels": 3, "mean": (0.5,), "std": (0.5,),
                     "train_transform": "alexnet", "eval_transform": "center_crop",
                     "image_size": 8, "resize_size": 12, "pca_lighting_std": 0.0,
                     "eval_split": "train", **fields})


def test_corrupt_images_are_skipped_in_evaluation_and_named(corrupt_folder):
    data = folder_config(corrupt_folder)
    with pytest.warns(D.CorruptImageWarning) as caught:
        batches = list(D.eval_batches(data, global_batch_size=4, **ONE_HOST))
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert "img1.jpg" in messages[0] + messages[1] and "img3.jpg" in messages[0] + messages[1]
    assert "2 so far" in messages[0] + messages[1]
    assert "img3.jpg: not a JPEG, PNG, GIF or BMP file" in messages[1]  # why, read from its header
    mask = np.concatenate([b["mask"] for b in batches])
    np.testing.assert_array_equal(mask, [True, False, True, False, True, True, False, False])
    images = np.concatenate([b["image"] for b in batches])
    assert not images[~mask].any() and np.all(np.abs(images[mask].astype(int) - 90) <= 2)


def test_corrupt_images_in_training_are_replaced_within_the_batch(corrupt_folder):
    data = folder_config(corrupt_folder)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(itertools.islice(
            D.train_batches(data, global_batch_size=6, seed=0, **ONE_HOST), 3))
    named = [str(w.message) for w in caught if issubclass(w.category, D.CorruptImageWarning)]
    assert len(named) == 2 and sum("img1.jpg" in m for m in named) == 1  # once, not once per epoch
    for b in batches:  # full batches of good images (the gray level 90)
        assert b["image"].shape == (6, 8, 8, 3)
        assert np.all(np.abs(b["image"].astype(int) - 90) <= 2)


def test_on_corrupt_error_stops_at_the_file(corrupt_folder):
    data = folder_config(corrupt_folder, on_corrupt="error")
    batches = D.eval_batches(data, global_batch_size=1, **ONE_HOST)
    assert next(batches)["mask"].all()  # img0 is fine
    one_line_error(lambda: next(batches), "corrupt or unreadable image .*img1.jpg")


def gray_folder(root, sizes):
    """Class folders of PNGs of one gray level 90: sizes = {class: [(h, w), ...]}."""
    for cls, shapes in sizes.items():
        (root / cls).mkdir(parents=True)
        for k, hw in enumerate(shapes):
            (root / cls / f"{k}.png").write_bytes(encode(np.full((*hw, 3), 90, np.uint8)))
    return root


def skip_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, D.CorruptImageWarning)]


def test_symlink_loops_and_entries_that_are_no_file_are_named_once_and_skipped(tmp_path):
    root = gray_folder(tmp_path / "f", {"a": [(12, 12), (12, 12)], "b": [(12, 12)]})
    (root / "a" / "loop.jpg").symlink_to("loop.jpg")            # stat: ELOOP
    (root / "a" / "gone.png").symlink_to("nowhere.png")         # a symlink to nothing
    (root / "b" / "dir.jpg").mkdir()                            # named like an image, a folder
    (root / "b" / "up").symlink_to("..")                        # a folder loop: not followed
    (root / "c").symlink_to("c")                                # a loop where a class could be
    data = folder_config(root)
    assert sources.count_examples(sources.train_spec(data), data) == 3
    skipped = D.SkippedImages()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train = list(itertools.islice(D.train_batches(data, global_batch_size=3, seed=0,
                                                      skipped=skipped, **ONE_HOST), 2))
        batches = list(D.eval_batches(data, global_batch_size=4, skipped=skipped, **ONE_HOST))
    named = sorted(skip_warnings(caught))
    assert len(named) == 3  # once each, though both pipelines list the folder
    for message, (name, why) in zip(named, [("a/gone.png", "a symlink to nothing"),
                                            ("a/loop.jpg", "a symlink loop"),
                                            ("b/dir.jpg", "not a regular file")], strict=True):
        assert message.startswith(f"skipped image {root / name}: {why}"), message
    assert skipped.summary().startswith("skipped 3 unreadable image file(s) (6 time(s) in all)")
    assert [b["image"].shape for b in train] == [(3, 8, 8, 3)] * 2
    np.testing.assert_array_equal(np.concatenate([b["mask"] for b in batches]), [1, 1, 1, 0])
    np.testing.assert_array_equal(batches[0]["label"][:3], [0, 0, 1])
    one_line_error(lambda: D.eval_batches(folder_config(root, on_corrupt="error"),
                                          global_batch_size=4, **ONE_HOST),
                   "unreadable image .*gone.png: a symlink to nothing")
    (tmp_path / "self").symlink_to("self")  # the source folder itself a loop
    one_line_error(lambda: D.dataset_info(folder_config(tmp_path / "self"), "train"),
                   "directory .*self' is a symlink loop")


def test_a_file_that_cannot_be_read_is_named_with_why_and_an_unlistable_folder_stops(
        tmp_path, monkeypatch):
    """Tests run as root, who can read every file: the file is listed, then removed before the
    pipeline opens it (as opening another user's file would fail), and Path.read_bytes refuses it
    with EACCES; os.scandir refuses one class folder the same way."""
    import errno
    import os

    root = gray_folder(tmp_path / "f", {"a": [(12, 12), (12, 12)], "b": [(12, 12)]})
    denied, read_bytes, scandir = root / "a" / "1.png", pathlib.Path.read_bytes, os.scandir
    data = folder_config(root)
    assert sources.count_examples(sources.train_spec(data), data) == 3  # listed (and cached)
    denied.unlink()

    def refusing(fn, path):
        def wrapped(p, *args, **kwargs):
            if os.fspath(p) == str(path):
                raise PermissionError(errno.EACCES, "Permission denied", os.fspath(p))
            return fn(p, *args, **kwargs)
        return wrapped

    monkeypatch.setattr(pathlib.Path, "read_bytes", refusing(read_bytes, denied))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(D.eval_batches(data, global_batch_size=3, **ONE_HOST))
    (message,) = skip_warnings(caught)
    assert message.startswith(f"skipped image {denied}: cannot be read (Permission denied)"), message
    np.testing.assert_array_equal(batches[0]["mask"], [True, False, True])
    monkeypatch.setattr(os, "scandir", refusing(scandir, root / "b"))
    # Other arguments than above: a fresh listing, not list_folder's cached one.
    one_line_error(lambda: sources.list_folder(str(root), "", 1, True),
                   f"cannot list the image folder {root / 'b'}: Permission denied")


def test_images_over_the_pixel_limit_are_named_and_skipped(tmp_path):
    root = gray_folder(tmp_path / "f", {"a": [(10, 10), (40, 30)], "b": [(10, 10)]})
    data = folder_config(root, max_image_pixels=1000)  # 40 x 30 = 1,200 pixels is over it
    skipped = D.SkippedImages()  # one per run: the file is named once for both pipelines
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(D.eval_batches(data, global_batch_size=3, skipped=skipped, **ONE_HOST))
        train = next(D.train_batches(data, global_batch_size=3, seed=0, skipped=skipped,
                                     **ONE_HOST))
    (message,) = skip_warnings(caught)
    assert message.startswith(f"skipped image {root / 'a' / '1.png'}: 30x40 = 1,200 pixels, more "
                              "than data.max_image_pixels=1,000 (not decoded)"), message
    np.testing.assert_array_equal(batches[0]["mask"], [True, False, True])
    assert np.all(np.abs(train["image"].astype(int) - 90) <= 1)  # PNG is lossless: +-1 resizing
    one_line_error(lambda: D.dataset_info(folder_config(root, max_image_pixels=0), "train"),
                   "max_image_pixels must be a positive integer")


def test_a_decompression_bomb_is_refused_from_its_header_by_default(tmp_path, monkeypatch):
    """A 20000x20000 1-bit PNG: 48 KB on disk, 400 Mpixel (1.2 GB as RGB). The default limit (PIL's
    89,478,485) refuses it, and the decoder is never run on it: a spy placed before the decoder, but
    after the header check, records the size of every file that reaches it."""
    from PIL import Image

    from cnnjax.data import transforms as T
    from cnnjax.data.tf_cpu import tf

    root = gray_folder(tmp_path / "f", {"a": [(8, 8)], "b": [(8, 8)]})
    bomb = root / "a" / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL refuses to open it otherwise
    assert Image.open(bomb).size == (20000, 20000)  # PIL reads the header only
    reached = []
    decode_window = T.decode_window

    def spy(encoded, *args):
        record = tf.py_function(lambda e: reached.append(len(e.numpy())) or 0, [encoded], tf.int32)
        with tf.control_dependencies([record]):
            return decode_window(encoded, *args)

    monkeypatch.setattr(T, "decode_window", spy)
    data = folder_config(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(D.eval_batches(data, global_batch_size=3, **ONE_HOST))
    assert bomb.stat().st_size not in reached and len(reached) == 2
    (message,) = skip_warnings(caught)
    assert "20000x20000 = 400,000,000 pixels, more than data.max_image_pixels=89,478,485" in message
    np.testing.assert_array_equal(batches[0]["mask"], [True, False, True])  # a/0.png, a/bomb.png, b


def test_a_missing_evaluation_split_stops_training_before_anything_is_written(tmp_path, capsys):
    """train/ without val/: evaluating would read the whole folder (train/ taken for a class), or
    the training images under the name 'val'. Both the command line and train_and_evaluate refuse
    before the workdir exists; naming the training split is the explicit way to evaluate on it."""
    from cnnjax import cli
    from cnnjax import config as config_io
    from cnnjax.config import validate
    from cnnjax.train.loop import train_and_evaluate

    tiny = pathlib.Path(__file__).parents[1] / "helpers" / "tiny_config.py"
    gray_folder(tmp_path / "f" / "train", {"a": [(32, 32)] * 4, "b": [(32, 32)] * 4})
    overrides = [f"data.source=folder:{tmp_path / 'f'}", "data.eval_split=val",
                 "data.train_transform=pad_or_crop", "data.eval_transform=pad_or_crop",
                 "num_steps=2", "batch_size=4"]
    workdir = tmp_path / "run"
    assert cli.main(["train", str(tiny), "--workdir", str(workdir),
                     *(f"--config.{o}" for o in overrides)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: config.data.eval_split='val': ")
    assert "has no subfolder 'val' for the evaluation split (its subfolders: 'train')" in err
    config = config_io.load_config(str(tiny))
    config_io.apply_overrides(config, overrides)
    with pytest.raises(validate.ConfigValidationError, match="no subfolder 'val'"):
        train_and_evaluate(config, workdir)
    assert not workdir.exists()
    config.data.eval_split = "train"  # the explicit choice
    assert sources.check_splits(config.data) == (8, [])


def test_missing_paths_fail_at_once(tmp_path):
    missing = tmp_path / "nowhere"
    for source in (f"idx:{missing}", f"folder:{missing}"):
        one_line_error(lambda s=source: D.train_batches(config(source=s), global_batch_size=2,
                                                        seed=0, **ONE_HOST), "does not exist")
    one_line_error(lambda: D.dataset_info(config(source=f"idx:{tmp_path}"), "train"),
                   "train-images-idx3-ubyte.gz")


def test_unknown_source_split_and_transform_fail_at_once(idx_dir):
    for source in ("mnist", "hdf5:/data", "idx:", "synthetic:x"):
        one_line_error(lambda s=source: D.dataset_info(config(source=s), "train"),
                       "is not one of 'idx:<dir>'")
    one_line_error(lambda: D.dataset_info(idx_config(idx_dir), "validation"), "'train' or 'test'")
    one_line_error(lambda: D.train_batches(idx_config(idx_dir, train_transform="random_crop"),
                                           global_batch_size=2, seed=0, **ONE_HOST),
                   "train_transform must be one of")
    one_line_error(lambda: D.eval_batches(idx_config(idx_dir, eval_transform="alexnet"),
                                          global_batch_size=2, **ONE_HOST),
                   "eval_transform must be one of")


def test_bad_batch_crops_and_class_settings_fail_at_once(idx_dir, class_folder):
    one_line_error(lambda: D.train_batches(idx_config(idx_dir), global_batch_size=6, seed=0,
                                           process_index=0, process_count=4), "multiple of")
    # every evaluation transform takes 10 crops, but not crops larger than what they are cut from
    one_line_error(lambda: D.eval_batches(idx_config(idx_dir, eval_transform="center_crop",
                                                     image_size=8, resize_size=4),
                                          global_batch_size=4, crops=10, **ONE_HOST),
                   "data.image_size=8 must not exceed data.resize_size=4")
    one_line_error(lambda: D.eval_batches(idx_config(idx_dir), global_batch_size=4, crops=3,
                                          **ONE_HOST), "crops must be one of")
    one_line_error(lambda: D.dataset_info(idx_config(idx_dir, num_classes=5), "train"),
                   "labels up to 6")
    one_line_error(lambda: D.train_batches(folder_config(class_folder, train_transform="none"),
                                           global_batch_size=2, seed=0, **ONE_HOST),
                   "different sizes")
    one_line_error(lambda: D.train_batches(folder_config(class_folder, channels=1,
                                                         pca_lighting_std=0.1),
                                           global_batch_size=2, seed=0, **ONE_HOST),
                   "PCA lighting")
    one_line_error(lambda: D.dataset_info(config(source="synthetic"), "train"), "num_classes > 0")


def test_empty_class_folder_and_folder_without_classes_fail_at_once(class_folder, tmp_path):
    (class_folder / "dog").mkdir()
    (class_folder / "dog" / "notes.txt").write_text("no images here")
    one_line_error(lambda: D.dataset_info(folder_config(class_folder), "train"),
                   "class folder .*dog holds no image")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.png").write_bytes(encode(np.zeros((4, 4, 3), np.uint8)))
    one_line_error(lambda: D.dataset_info(folder_config(flat), "train"),
                   "neither class subfolders nor a labels.csv")


def test_bad_labels_csv_fails_at_once(tmp_path):
    (tmp_path / "a.png").write_bytes(encode(np.zeros((4, 4, 3), np.uint8)))
    cases = {"file,label\na.png,0\n": "needs the columns filename,class_index",
             "filename,class_index\na.png,cat\n": "labels.csv:2: class_index must be an integer",
             "filename,class_index\na.png,0\nb.png,1\n": "1 file.* do not exist, the first is .*b.png"}
    for text, match in cases.items():
        (tmp_path / "labels.csv").write_text(text)
        sources.list_folder.cache_clear()  # same folder, new CSV: list it again
        one_line_error(lambda: D.dataset_info(folder_config(tmp_path), "train"), match)


def test_bad_idx_files_fail_at_once(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 2, 2), np.uint8))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"\x00\x00\x08\x01garbage")
    one_line_error(lambda: D.dataset_info(config(source=f"idx:{tmp_path}"), "train"),
                   "cannot read IDX file")
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    one_line_error(lambda: D.dataset_info(config(source=f"idx:{tmp_path}"), "train"),
                   "do not pair up")


def test_tfds_unknown_name_and_manual_download_are_one_clear_error(tmp_path, monkeypatch):
    try:
        import importlib_resources  # noqa: F401  (TFDS needs it to prepare; see test_data_sources)
    except ImportError:
        monkeypatch.setitem(sys.modules, "importlib_resources", importlib.resources)
    tfds_source.load_tfds.cache_clear()
    one_line_error(lambda: D.dataset_info(config(source="tfds:no_such_dataset_xyz",
                                                 data_dir=str(tmp_path)), "train"),
                   "tfds source 'no_such_dataset_xyz': Dataset no_such_dataset_xyz not found")
    with pytest.raises(ValueError, match="needs a manual download") as err:
        D.dataset_info(config(source="tfds:imagenet2012", data_dir=str(tmp_path)), "train")
    assert "ILSVRC2012_img_train.tar" in str(err.value)  # TFDS's own instructions
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_tfds_download_without_network_is_one_clear_error(tmp_path, monkeypatch):
    """An unprepared TFDS dataset on a machine without network (CI, a cluster node): requests'
    ConnectionError (an OSError) inside download_and_prepare becomes one line, not a traceback."""
    import tensorflow_datasets as tfds

    def offline(self, *args, **kwargs):
        raise ConnectionError("HTTPSConnectionPool(host='www.cs.toronto.edu', port=443): Max "
                              "retries exceeded\nsecond line")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    tfds_source.load_tfds.cache_clear()
    with pytest.raises(ValueError) as err:
        D.dataset_info(config(source="tfds:mnist", data_dir=str(tmp_path)), "train")
    line = str(err.value)
    assert "\n" not in line and line.startswith("tfds source 'mnist' is not prepared in ")
    assert "(ConnectionError: HTTPSConnectionPool(host='www.cs.toronto.edu'" in line
    assert "point data.data_dir at a copy" in line
    assert err.value.__cause__ is None and err.value.__suppress_context__
    tfds_source.load_tfds.cache_clear()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP"])
def test_header_size_reads_what_pil_reads_without_decoding(fmt):
    from PIL import Image

    from cnnjax.data import transforms as T
    from cnnjax.data.tf_cpu import tf

    for height, width in [(1, 1), (37, 300), (300, 37)]:
        blob = encode(np.zeros((height, width, 3), np.uint8), fmt)
        with Image.open(io.BytesIO(blob)) as image:  # PIL: (width, height), from the header
            assert image.size == (width, height)
        np.testing.assert_array_equal(T.header_size(tf.constant(blob)).numpy(), [height, width])
    for junk in (b"", b"GIF", b"not an image at all"):  # no header: (0, 0), refused by the decoders
        np.testing.assert_array_equal(T.header_size(tf.constant(junk)).numpy(), [0, 0])
