"""The names of the preprocessing transforms: what each does, where it may run, and today's aliases.

This table is TensorFlow-free so that config validation can read it; cnnjax.data.transforms registers
one implementation per name (a test checks that the two agree). Adding an augmentation: a row here and
its builder, decorated with `@transform("name")`, in transforms.py; nothing else (predict and eval
use the same code).
"""

from __future__ import annotations

import dataclasses

# Zero padding of each side before pad_crop_flip's random crop (He et al. 2016, Sec. 4.2); the 5 and
# 10 crops of 'pad_or_crop' and 'none' are that crop's four extreme positions and its centre. Shared
# by tf.data (transforms.py) and the device path (on_device.py).
PAD = 4


@dataclasses.dataclass(frozen=True)
class TransformName:
    """A transform's name, whether it may preprocess training and/or evaluation data, and what it does
    (the data fields it reads in parentheses)."""

    name: str
    train: bool
    eval: bool
    does: str


TRANSFORMS: dict[str, TransformName] = {t.name: t for t in (
    TransformName("none", True, True, "the image as the source gives it, at its own size (5 and 10 "
                  "crops: corners and center of it padded by 4, and their mirrors)"),
    TransformName("pad_or_crop", True, True,
                  "pad with zeros or crop the center to image_size (MNIST 28 -> 32: LeCun et al. 1998; "
                  "5 and 10 crops: corners and center of that padded by 4, and their mirrors)"),
    TransformName("pad_crop_flip", True, False,
                  "pad 4 pixels, random image_size crop, random horizontal flip (He et al. 2016, 4.2)"),
    TransformName("crop_flip_pca", True, False,
                  "random image_size crop of the image with shorter side resize_size, flip, PCA "
                  "lighting of std pca_lighting_std (0 = off) (Krizhevsky et al. 2012, 4.1)"),
    TransformName("random_resized_crop", True, False,
                  "random crop of min_area..1 of the area with aspect in aspect_range, resized to "
                  "image_size, flip (Szegedy et al. 2015, Sec. 6)"),
    TransformName("center_crop", False, True,
                  "shorter side to resize_size, central image_size crop (5 and 10 crops: corners, "
                  "center and their mirrors)"),
)}

# Names of earlier versions, still accepted in config files, config.json and checkpoints' configs:
# (train, eval) meaning. 'cifar' meant pad-crop-flip in training and a center pad/crop in evaluation.
ALIASES: dict[str, tuple[str | None, str | None]] = {
    "mnist": ("pad_or_crop", "pad_or_crop"),
    "cifar": ("pad_crop_flip", "pad_or_crop"),
    "alexnet": ("crop_flip_pca", None),
    "inception": ("random_resized_crop", None),
}


def names(*, train: bool) -> tuple[str, ...]:
    """The transforms allowed for training (train=True) or evaluation data."""
    return tuple(t.name for t in TRANSFORMS.values() if (t.train if train else t.eval))


def canonical(name: str, *, train: bool) -> str | None:
    """The registered name `name` stands for in that role (itself or what its alias means), or None
    when it is not a transform of that role."""
    if name in ALIASES:
        name = ALIASES[name][0 if train else 1]
    return name if name in names(train=train) else None
