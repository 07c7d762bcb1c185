"""The `data` block of a cnnjax config: every field the input pipelines read, with its default.

The defaults read the MNIST files shipped in data/mnist with RGB ImageNet statistics; config files
start from a dataset preset instead (cnnjax.data.presets: `data_config("mnist", image_size=32)`) and
override what their paper needs. Transform names and their aliases: cnnjax.data.transform_names.
This module imports neither TensorFlow nor JAX.
"""

from __future__ import annotations

import ml_collections

from cnnjax.data import transform_names
from cnnjax.errors import UserError

EVAL_CROPS = (1, 5, 10)
ON_CORRUPT = ("skip", "error")
PIPELINES = ("auto", "device", "tfdata")  # data.pipeline (cnnjax.data.on_device)
SOURCE_KINDS = ("idx", "tfds", "folder", "synthetic")
MAX_IMAGE_PIXELS = 89_478_485  # PIL's Image.MAX_IMAGE_PIXELS: about 0.25 GB as RGB uint8
AUTOTUNE = -1  # the value of tf.data.AUTOTUNE, spelled out so this module needs no TensorFlow

# ImageNet's per-channel statistics in [0, 1] units (the defaults; every dataset's are in presets.py).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DataError(UserError):
    """A data source, split, file or data field the pipelines cannot use (one line, what is accepted)."""


def default_data_config() -> ml_collections.ConfigDict:
    """The data block with every field documented; `config.data = default_data_config()`."""
    c = ml_collections.ConfigDict()
    # Where the examples come from, one string:
    #   'idx:<dir>'              MNIST-format files (train-images-idx3-ubyte.gz, ...); Fashion-MNIST too
    #   'tfds:<name>[:<split>]'  a TensorFlow Datasets dataset: 'tfds:cifar10', 'tfds:mnist:train[:90%]'
    #   'folder:<dir>'           one subfolder of JPEG/PNG files per class (ImageNet layout), or a flat
    #                            folder with labels.csv (columns filename,class_index[,class_name])
    #   'synthetic'              random images of synthetic_shape (benchmarks)
    # Relative paths resolve against the current directory (launch.sh runs from the repository root).
    c.preset = ""               # the dataset preset the fields below came from ('' = none): see presets.py
    c.source = "idx:data/mnist"
    c.eval_source = ""          # '' = the same dataset as `source`, read with eval_split
    c.train_split = "train"     # idx: 'train' or 'test'; folder: a subfolder of that name if it exists,
    c.eval_split = "test"       # else the whole folder; tfds: any TFDS split ('train[:90%]', ...)
    c.data_dir = ""             # tfds data_dir; '' = TFDS's default ($TFDS_DATA_DIR or ~/tensorflow_datasets)

    # Preprocessing (cnnjax.data.transforms; names in transform_names.py). The host sends uint8;
    # normalisation happens on the device.
    c.train_transform = "pad_or_crop"  # none | pad_or_crop (pad or crop the center to image_size)
    #                    | pad_crop_flip (pad 4, random crop, flip) | crop_flip_pca (shorter side
    #                    resize_size, random crop, flip, PCA lighting) | random_resized_crop (crop of
    #                    min_area..1 of the area, aspect_range, resized, flip)
    c.eval_transform = "pad_or_crop"   # none | pad_or_crop | center_crop (shorter side resize_size, crop)
    c.eval_crops = 1             # 1, or 5 / 10 views per example with the softmax averaged: corners and
    #                              centre (+ mirrors), see cnnjax.data.transforms.make_transform
    c.image_size = 32            # side of the square images the pipelines yield (none: the native size)
    c.resize_size = 256          # crop_flip_pca / center_crop / 5- and 10-crop: the shorter side first
    c.pca_lighting_std = 0.1     # crop_flip_pca: std of the PCA lighting coefficients (AlexNet 4.1); 0 = off
    c.min_area = 0.08            # random_resized_crop: smallest crop area, as a fraction of the image
    c.aspect_range = (3 / 4, 4 / 3)  # random_resized_crop: range of the crop's width / height
    c.mean = IMAGENET_MEAN       # per channel (or one value), [0, 1] units: cnnjax.data.normalize
    c.std = IMAGENET_STD
    c.channels = 3               # 3 (RGB) or 1 (grayscale); every source is converted to it
    c.num_classes = 0            # 0 = as the source says (TFDS metadata, class folders, largest label + 1)

    # Reading.
    c.pipeline = "auto"          # auto: a source held as arrays (idx, small tfds, synthetic) with a
    #                              transform JAX implements (none, pad_or_crop, pad_crop_flip; eval:
    #                              none, pad_or_crop) is kept in device memory and augmented there,
    #                              without TensorFlow (cnnjax.data.on_device); anything else goes
    #                              through tf.data | device: always the former (error if impossible)
    #                              | tfdata: always tf.data (the order and random streams differ)
    c.shuffle_buffer = 10_000    # only for TFDS datasets streamed from disk (too large to hold in memory)
    c.cache = False              # keep the encoded files (folder) or records (streamed tfds) in memory
    c.on_corrupt = "skip"        # skip: warn with the file name and leave it out | error: stop at it
    c.max_image_pixels = MAX_IMAGE_PIXELS  # image files whose header states more pixels are skipped as
    #                                  corrupt, never decoded (decompression bombs); PIL's own limit
    c.synthetic_shape = (224, 224, 3)
    c.synthetic_examples = 1024
    c.deterministic = True       # False: tf.data hands out training batches as they finish (a slow JPEG
    #                              no longer stalls the rest), at the price of repeatability: the order
    #                              then varies from run to run and resuming is no longer exact
    c.num_parallel_calls = AUTOTUNE  # tf.data parallelism per stage; -1 = AUTOTUNE (for folders:
    #                                  one call per available core)
    return c


def check_data_config(data: ml_collections.ConfigDict) -> None:
    """Raises DataError (one line) for a field value the pipelines do not accept."""
    transform_name(data.train_transform, train=True)
    transform_name(data.eval_transform, train=False)
    _choice("on_corrupt", data.on_corrupt, ON_CORRUPT)
    _choice("pipeline", data.get("pipeline", "auto"), PIPELINES)
    _choice("channels", data.channels, (1, 3))
    _choice("deterministic", data.get("deterministic", True), (True, False))
    _choice("eval_crops", eval_crops(data), EVAL_CROPS)
    for name in ("image_size", "resize_size", "synthetic_examples", "shuffle_buffer"):
        if int(data[name]) <= 0:
            raise DataError(f"data.{name} must be a positive integer, got {data[name]!r}")
    if max_image_pixels(data) <= 0:
        raise DataError(f"data.max_image_pixels must be a positive integer, got "
                        f"{data.max_image_pixels!r}")
    if data.num_classes < 0:
        raise DataError(f"data.num_classes must be >= 0 (0 = from the source), got {data.num_classes}")
    if not 0.0 < data.min_area <= 1.0:
        raise DataError(f"data.min_area must lie in (0, 1], got {data.min_area}")
    if len(data.aspect_range) != 2 or not 0.0 < data.aspect_range[0] <= data.aspect_range[1]:
        raise DataError(f"data.aspect_range must be (low, high) with 0 < low <= high, got "
                        f"{tuple(data.aspect_range)}")
    if data.pca_lighting_std < 0:
        raise DataError(f"data.pca_lighting_std must be >= 0, got {data.pca_lighting_std}")
    if data.num_parallel_calls != AUTOTUNE and data.num_parallel_calls < 1:
        raise DataError(f"data.num_parallel_calls must be >= 1 or -1 (AUTOTUNE), got "
                        f"{data.num_parallel_calls}")
    if len(data.mean) not in (1, data.channels) or len(data.std) != len(data.mean):
        raise DataError(f"data.mean and data.std need 1 or channels={data.channels} values each, got "
                        f"{tuple(data.mean)} and {tuple(data.std)}")


def eval_crops(data: ml_collections.ConfigDict) -> int:
    """data.eval_crops; 1 for configs saved before the field existed."""
    return data.get("eval_crops", 1)


def max_image_pixels(data: ml_collections.ConfigDict) -> int:
    """data.max_image_pixels; the default for configs saved before the field existed."""
    return int(data.get("max_image_pixels", MAX_IMAGE_PIXELS))


def _choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise DataError(f"data.{name} must be one of {choices}, got {value!r}")


def transform_name(name: str, *, train: bool) -> str:
    """The registered name of transform `name` (itself, or what an alias such as 'cifar' means in that
    role); DataError naming the valid transforms otherwise."""
    canonical = transform_names.canonical(name, train=train)
    if canonical is None:
        field = "train_transform" if train else "eval_transform"
        valid = transform_names.names(train=train)
        aliases = [a for a, meant in transform_names.ALIASES.items() if meant[0 if train else 1]]
        raise DataError(f"data.{field} must be one of {', '.join(valid)} (or the older names "
                        f"{', '.join(aliases)}); got {name!r}")
    return canonical


def check_transform(data: ml_collections.ConfigDict, name: str, *, train: bool, crops: int = 1
                    ) -> str:
    """The registered name of transform `name`; DataError where it cannot run with these data
    fields and `crops` (every evaluation transform takes 1, 5 or 10 crops: make_transform)."""
    given, name = name, transform_name(name, train=train)
    if crops not in EVAL_CROPS:
        raise DataError(f"crops must be one of {EVAL_CROPS}, got {crops!r}")
    if name in ("crop_flip_pca", "center_crop") and data.image_size > data.resize_size:
        raise DataError(f"data.image_size={data.image_size} must not exceed data.resize_size="
                        f"{data.resize_size} for the {given!r} transform")
    if name == "crop_flip_pca" and data.pca_lighting_std > 0 and data.channels != 3:
        raise DataError("PCA lighting (data.pca_lighting_std > 0) works on RGB: set data.channels=3 "
                        "or data.pca_lighting_std=0")
    return name


def output_shape(data: ml_collections.ConfigDict, name: str, source_shape: tuple,
                 crops: int = 1) -> tuple[int | None, ...]:
    """Shape of one example after transform `name`: (H, W, C), or (crops, H, W, C) for crops > 1.

    'none' keeps the source's own (H, W) (None where the files differ in size); every other
    transform yields image_size x image_size.
    """
    if name == "none":  # the one transform that keeps the source's size (it has no alias)
        shape = (*tuple(source_shape)[:2], data.channels)
    else:
        shape = (data.image_size, data.image_size, data.channels)
    return (crops, *shape) if crops > 1 else shape
