"""Fixtures for the cnnjax.data tests: small generated datasets in tmp_path."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from helpers.data import N_TEST, N_TRAIN, encode, indexed_images, write_idx


@pytest.fixture
def idx_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """train: 50 images, image i filled with i, label i % 7; test (t10k): 13 images filled 100 + i."""
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", indexed_images(N_TRAIN))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(N_TRAIN, dtype=np.uint8) % 7)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", indexed_images(N_TEST, 100))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(N_TEST, dtype=np.uint8) % 7)
    return tmp_path


@pytest.fixture
def class_folder(tmp_path: pathlib.Path) -> pathlib.Path:
    """ImageNet layout: classes 'ant' (2 JPEGs), 'bee' (1 PNG, 1 JPEG), 'cat' (1 PNG), varied sizes.

    Every image is filled with a constant gray level 40 * (its position in sorted order + 1).
    """
    root = tmp_path / "imagenet"
    files = [("ant", "a1.jpg", (40, 50)), ("ant", "a2.JPEG", (30, 30)), ("bee", "b1.png", (20, 35)),
             ("bee", "b2.jpeg", (33, 21)), ("cat", "c1.png", (25, 25))]
    for k, (cls, name, hw) in enumerate(files):
        (root / cls).mkdir(parents=True, exist_ok=True)
        fmt = "PNG" if name.endswith("png") else "JPEG"
        (root / cls / name).write_bytes(encode(np.full((*hw, 3), 40 * (k + 1), np.uint8), fmt))
    return root
