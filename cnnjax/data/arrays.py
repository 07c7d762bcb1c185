"""Decoded images held in host memory: what IDX files and small TFDS datasets become (cnnjax.data.sources,
cnnjax.data.tfds_source), read by index by the tf.data builders. Its own module so that the TFDS
source, which sources.py imports only when used, need not import sources.py back."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """Decoded images in host memory: images (N, H, W, C) uint8, labels (N,) int32."""

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    class_names: list[str] | None
    name: str

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int | None, ...]:
        return tuple(self.images.shape[1:])
