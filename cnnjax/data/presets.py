"""Datasets by name: where each comes from and how it is read, in one place.

    config.data = data_config("fashion_mnist", image_size=32)   # a preset, with fields overridden
    ./launch.sh CONFIG.py --config.data.preset=cifar10          # another dataset from the command line

A preset sets the data fields that describe a dataset: source, splits, channels, num_classes, the
native image_size, mean/std (per channel, [0, 1] units, over the training split) and the default
training and evaluation transforms (cnnjax.data.transform_names). Every other field keeps the default
of cnnjax.data.config.default_data_config. The name is kept in `data.preset`, so that switching it on
the command line moves the fields still at the old preset's values to the new one's. TensorFlow-free.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from cnnjax.data import transform_names
from cnnjax.data.config import IMAGENET_MEAN, IMAGENET_STD, DataError, default_data_config

PRESETS: dict[str, dict[str, Any]] = {
    # The shipped MNIST files; 28x28, padded to 32 for LeNet-5 with image_size=32.
    "mnist": dict(source="idx:data/mnist", train_split="train", eval_split="test", channels=1,
                  num_classes=10, image_size=28, mean=(0.1307,), std=(0.3081,),
                  train_transform="pad_or_crop", eval_transform="pad_or_crop"),
    # The IDX files of ../shared/data (Xiao et al. 2017); same layout as MNIST.
    "fashion_mnist": dict(source="idx:../shared/data/fashion_mnist", train_split="train",
                          eval_split="test", channels=1, num_classes=10, image_size=28,
                          mean=(0.2860,), std=(0.3530,), train_transform="pad_or_crop",
                          eval_transform="pad_or_crop"),
    "cifar10": dict(source="tfds:cifar10", train_split="train", eval_split="test", channels=3,
                    num_classes=10, image_size=32, mean=(0.4914, 0.4822, 0.4465),
                    std=(0.2470, 0.2435, 0.2616), train_transform="pad_crop_flip",
                    eval_transform="none"),
    "cifar100": dict(source="tfds:cifar100", train_split="train", eval_split="test", channels=3,
                     num_classes=100, image_size=32, mean=(0.5071, 0.4865, 0.4409),
                     std=(0.2673, 0.2564, 0.2762), train_transform="pad_crop_flip",
                     eval_transform="none"),
    # TFDS imagenet2012 (manual download); AlexNet's augmentation, the central 224 crop of 256.
    "imagenet2012": dict(source="tfds:imagenet2012", train_split="train", eval_split="validation",
                         channels=3, num_classes=1000, image_size=224, resize_size=256,
                         mean=IMAGENET_MEAN, std=IMAGENET_STD, pca_lighting_std=0.1,
                         train_transform="crop_flip_pca", eval_transform="center_crop"),
    # Any folder of class subfolders (ImageNet layout) or with labels.csv: set data.source to
    # 'folder:<dir>'; classes are counted from the folder; ImageNet statistics.
    "image_folder": dict(source="", train_split="train", eval_split="val", channels=3, num_classes=0,
                         image_size=224, resize_size=256, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                         pca_lighting_std=0.0, train_transform="random_resized_crop",
                         eval_transform="center_crop"),
}


def data_config(preset: str, **fields: Any) -> ml_collections.ConfigDict:
    """The data block of dataset `preset` with `fields` overridden; DataError (one line) for an
    unknown preset or field."""
    data = default_data_config()
    data.preset = preset
    data.update(preset_fields(preset))
    unknown = sorted(set(fields) - set(data))
    if unknown:
        raise DataError(f"data_config: unknown data field(s) {', '.join(unknown)}; valid fields: "
                        f"{', '.join(sorted(data))}")
    data.update(fields)
    return data


def preset_fields(preset: str) -> dict[str, Any]:
    """The fields preset `preset` sets; DataError naming the valid presets otherwise."""
    if preset not in PRESETS:
        raise DataError(f"unknown data preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    return dict(PRESETS[preset])


def switch_preset(data: ml_collections.ConfigDict, previous: str) -> None:
    """After data.preset changed from `previous` ('' for none): every field the new preset sets takes
    its value unless the config had changed it from the old preset's value (or from the default,
    when there was no preset)."""
    new = preset_fields(data.preset)
    old = preset_fields(previous) if previous else default_data_config().to_dict()
    for key, value in new.items():
        if key not in old or _same(data[key], old[key]):
            with data.ignore_type():
                data[key] = value


def _same(a: Any, b: Any) -> bool:
    a, b = (tuple(v) if isinstance(v, list | tuple) else v for v in (a, b))
    return a == b


def imagenet_data_config(train_transform: str = "crop_flip_pca") -> ml_collections.ConfigDict:
    """The imagenet2012 preset with `train_transform` (PCA lighting only with crop_flip_pca)."""
    canonical = transform_names.canonical(train_transform, train=True)
    return data_config("imagenet2012", train_transform=train_transform,
                       pca_lighting_std=0.1 if canonical == "crop_flip_pca" else 0.0)
