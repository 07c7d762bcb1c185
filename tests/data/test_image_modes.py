"""Every color mode of the image files users have: CMYK, grayscale, palette and alpha, as JPEG, PNG, GIF
and BMP, decoded for 1 and 3 channels the same way in training, evaluation and predict, against PIL's
own conversion (PIL.Image.convert('L' | 'RGB'): ITU-R 601 luma, alpha dropped, palette expanded)."""

from __future__ import annotations

import io
import itertools
import warnings

import numpy as np
import pytest
from helpers.data import config
from PIL import Image

import cnnjax.data as D
from cnnjax import predict
from cnnjax.data import transforms as T
from cnnjax.data.tf_cpu import tf

ONE_HOST = dict(process_index=0, process_count=1)
SIZE = 16


def _base() -> Image.Image:
    """A smooth RGB picture (so that JPEG's losses stay small) with every channel different."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    return Image.fromarray(np.stack([yy * 15, xx * 13 + 20, (yy + xx) * 7], -1).astype(np.uint8))


def _alpha(image: Image.Image) -> Image.Image:
    """The image with a varying alpha channel (that both decoders must drop, not blend)."""
    alpha = Image.fromarray((np.arange(SIZE * SIZE) % 256).reshape(SIZE, SIZE).astype(np.uint8))
    image = image.copy()
    image.putalpha(alpha)
    return image


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


# file name -> (bytes, largest difference from PIL's decoding allowed). JPEG decoders differ in their
# inverse DCT by a few levels; lossless formats differ only by luma rounding.
def _files() -> dict[str, tuple[bytes, int]]:
    base = _base()
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    return {
        "rgb.jpg": (_encode(base, "JPEG", quality=95), 8),
        "gray.jpg": (_encode(base.convert("L"), "JPEG", quality=95), 8),
        "cmyk.jpg": (_encode(base.convert("CMYK"), "JPEG", quality=95), 8),
        "rgb.png": (_encode(base, "PNG"), 1),
        "gray.png": (_encode(base.convert("L"), "PNG"), 1),
        "palette.png": (_encode(palette, "PNG"), 1),
        "rgba.png": (_encode(_alpha(base), "PNG"), 1),
        "la.png": (_encode(_alpha(base.convert("L")), "PNG"), 1),
        "palette.gif": (_encode(palette, "GIF"), 1),
        "rgb.bmp": (_encode(base, "BMP"), 1),
    }


FILES = _files()


def pil_reference(blob: bytes, channels: int) -> np.ndarray:
    image = Image.open(io.BytesIO(blob)).convert("L" if channels == 1 else "RGB")
    array = np.asarray(image, np.int32)
    return array[..., None] if channels == 1 else array


def assert_close(got: np.ndarray, want: np.ndarray, tolerance: int, what: str) -> None:
    assert got.shape == want.shape, (what, got.shape, want.shape)
    assert np.abs(got.astype(np.int32) - want).max() <= tolerance, what


def test_the_files_really_are_in_those_modes():
    modes = {name: Image.open(io.BytesIO(blob)).mode for name, (blob, _) in FILES.items()}
    assert modes == {"rgb.jpg": "RGB", "gray.jpg": "L", "cmyk.jpg": "CMYK", "rgb.png": "RGB",
                     "gray.png": "L", "palette.png": "P", "rgba.png": "RGBA", "la.png": "LA",
                     "palette.gif": "P", "rgb.bmp": "RGB"}


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", sorted(FILES))
def test_decode_and_windowed_decode_match_pil(name, channels):
    blob, tolerance = FILES[name]
    want = pil_reference(blob, channels)
    got = T.decode(tf.constant(blob), channels).numpy()
    assert_close(got, want, tolerance, f"{name} decode")
    box = tf.constant([2, 3, 9, 11], tf.int32)  # y, x, h, w: the fused JPEG crop path too
    window = T.decode_window(tf.constant(blob), lambda shape, key: box, tf.zeros([2], tf.int64),
                             channels).numpy()
    assert_close(window, want[2:11, 3:14], tolerance, f"{name} window")


@pytest.fixture
def mode_folder(tmp_path):
    for name, (blob, _) in FILES.items():
        (tmp_path / name).write_bytes(blob)
    names = sorted(FILES)
    (tmp_path / "labels.csv").write_text(
        "filename,class_index\n" + "".join(f"{n},{i % 2}\n" for i, n in enumerate(names)))
    return tmp_path, names


@pytest.mark.parametrize("channels", [1, 3])
def test_training_evaluation_and_predict_read_every_mode(mode_folder, channels):
    root, names = mode_folder
    data = config(source=f"folder:{root}", channels=channels, mean=(0.5,), std=(0.5,),
                  train_transform="mnist", eval_transform="mnist", image_size=SIZE,
                  eval_split="train")
    with warnings.catch_warnings():
        warnings.simplefilter("error", D.CorruptImageWarning)  # not one file may be skipped
        batches = list(D.eval_batches(data, global_batch_size=len(names), **ONE_HOST))
        train = list(itertools.islice(
            D.train_batches(data, global_batch_size=len(names), seed=0, **ONE_HOST), 2))
    (batch,) = batches
    assert batch["mask"].all()
    for i, name in enumerate(names):  # evaluation reads the files in order
        blob, tolerance = FILES[name]
        want = pil_reference(blob, channels)
        assert_close(batch["image"][i], want, tolerance, f"{name} eval")
        assert_close(predict.load_image(root / name, data), want, tolerance, f"{name} predict")
    for step in train:  # training reads every file of the epoch (in its shuffled order)
        assert step["image"].shape == (len(names), SIZE, SIZE, channels)
        assert sorted(map(bytes, step["image"].reshape(len(names), -1))) == sorted(
            map(bytes, batch["image"].reshape(len(names), -1)))


def test_a_skipped_file_is_named_once_per_run_and_counted(mode_folder):
    root, names = mode_folder
    (root / "rgb.png").write_bytes(FILES["rgb.png"][0][:40])  # truncated
    data = config(source=f"folder:{root}", channels=1, mean=(0.5,), std=(0.5,),
                  train_transform="mnist", eval_transform="mnist", image_size=SIZE,
                  eval_split="train")
    skipped = D.SkippedImages()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        list(itertools.islice(D.train_batches(data, global_batch_size=len(names), seed=0,
                                              skipped=skipped, **ONE_HOST), 3))  # three epochs
        for _ in range(2):  # and two evaluations
            list(D.eval_batches(data, global_batch_size=len(names), skipped=skipped, **ONE_HOST))
    named = [str(w.message) for w in caught if issubclass(w.category, D.CorruptImageWarning)]
    assert len(named) == 1 and "rgb.png" in named[0] and "\n" not in named[0]
    assert skipped.counts == {str(root / "rgb.png"): 5}
    assert skipped.summary() == f"skipped 1 unreadable image file(s) (5 time(s) in all): {root / 'rgb.png'}"
