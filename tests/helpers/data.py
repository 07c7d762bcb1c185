"""Helpers for the cnnjax.data tests: IDX writers, image bytes, configs, coordinate images."""

from __future__ import annotations

import gzip
import io
import pathlib
import struct

import ml_collections
import numpy as np
from PIL import Image

from cnnjax.data import default_data_config

N_TRAIN, N_TEST = 50, 13
HW = (6, 5)


def write_idx(path: pathlib.Path, array: np.ndarray, *, compress: bool = True) -> None:
    """Writes `array` (uint8) as an IDX file: 0, 0, 0x08, ndim, big-endian dims, bytes."""
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += np.ascontiguousarray(array, np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def write_cut_idx(folder: pathlib.Path, n: int = 16, size: int = 32) -> pathlib.Path:
    """MNIST-named IDX files whose headers promise `n` examples of size x size that the files do not
    hold: they pass the config check (it reads only the headers) and fail when a run reads them."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01" + struct.pack(">I", n))
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(
            b"\0\0\x08\x03" + struct.pack(">III", n, size, size))
    return folder


def indexed_images(n: int, offset: int = 0) -> np.ndarray:
    """(n, 6, 5) images whose every pixel equals offset + their index: an image names itself."""
    return np.broadcast_to((offset + np.arange(n, dtype=np.uint8))[:, None, None], (n, *HW)).copy()


def config(**fields) -> ml_collections.ConfigDict:
    """The default data block with `fields` overridden."""
    c = default_data_config()
    for k, v in fields.items():
        c[k] = v
    return c


def idx_config(root: pathlib.Path, **fields) -> ml_collections.ConfigDict:
    """Untransformed grayscale reads of the generated IDX files (6x5x1 images)."""
    return config(**{"source": f"idx:{root}", "train_transform": "none", "eval_transform": "none",
                     "channels": 1, "mean": (0.5,), "std": (0.5,), **fields})


def encode(array: np.ndarray, fmt: str = "PNG", mode: str | None = None, **kw) -> bytes:
    """Image bytes of a uint8 (H, W[, C]) array, converted to PIL `mode` first if given."""
    image = Image.fromarray(array.squeeze() if array.ndim == 3 and array.shape[2] == 1 else array)
    if mode:
        image = image.convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def coordinate_image(h: int, w: int) -> np.ndarray:
    """(h, w, 3) uint8 with R = row, G = column, B = 7: every pixel says where it is (h, w <= 256)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy, xx, np.full_like(yy, 7)], axis=-1).astype(np.uint8)
