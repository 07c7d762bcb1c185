"""The `data` block of a cnnjax config: every field the input pipelines read, with its default.

The defaults read the MNIST files shipped in data/mnist with RGB ImageNet statistics (the setting of
most configs); config files override what their dataset and paper need (LeNet-5 on MNIST sets
channels=1 and MNIST's mean and std). This module imports neither TensorFlow nor JAX.
"""

from __future__ import annotations

import ml_collections

TRAIN_TRANSFORMS = ("none", "mnist", "cifar", "alexnet", "inception")
EVAL_TRANSFORMS = ("none", "mnist", "cifar", "center_crop")
EVAL_CROPS = (1, 5, 10)
ON_CORRUPT = ("skip", "error")
SOURCE_KINDS = ("idx", "tfds", "folder", "synthetic")
AUTOTUNE = -1  # the value of tf.data.AUTOTUNE, spelled out so this module needs no TensorFlow

# Per-channel statistics in [0, 1] units, for configs to pick from.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


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
    c.source = "idx:data/mnist"
    c.eval_source = ""          # '' = the same dataset as `source`, read with eval_split
    c.train_split = "train"     # idx: 'train' or 'test'; folder: a subfolder of that name if it exists,
    c.eval_split = "test"       # else the whole folder; tfds: any TFDS split ('train[:90%]', ...)
    c.data_dir = ""             # tfds data_dir; '' = TFDS's default ($TFDS_DATA_DIR or ~/tensorflow_datasets)

    # Preprocessing (cnnjax.data.transforms). The host sends uint8; normalisation happens on the device.
    c.train_transform = "mnist"  # none | mnist (pad to image_size) | cifar (pad 4, random crop, flip)
    #                              | alexnet (shorter side resize_size, random crop, flip, PCA lighting)
    #                              | inception (random-resized crop of min_area..1, aspect_range, flip)
    c.eval_transform = "mnist"   # none | mnist | cifar (center crop image_size) | center_crop (resize, crop)
    c.image_size = 32            # side of the square images the pipelines yield (none: the native size)
    c.resize_size = 256          # alexnet / center_crop / 5- and 10-crop: the shorter side before cropping
    c.pca_lighting_std = 0.1     # alexnet: std of the PCA lighting coefficients (AlexNet Sec. 4.1); 0 = off
    c.min_area = 0.08            # inception: smallest crop area, as a fraction of the image
    c.aspect_range = (3 / 4, 4 / 3)  # inception: range of the crop's width / height
    c.mean = IMAGENET_MEAN       # per channel (or one value), [0, 1] units: cnnjax.data.normalize
    c.std = IMAGENET_STD
    c.channels = 3               # 3 (RGB) or 1 (grayscale); every source is converted to it
    c.num_classes = 0            # 0 = as the source says (TFDS metadata, class folders, largest label + 1)

    # Reading.
    c.shuffle_buffer = 10_000    # only for TFDS datasets streamed from disk (too large to hold in memory)
    c.cache = False              # keep the encoded files (folder) or records (streamed tfds) in memory
    c.on_corrupt = "skip"        # skip: warn with the file name and leave it out | error: stop at it
    c.synthetic_shape = (224, 224, 3)
    c.synthetic_examples = 1024
    c.deterministic = True       # False: tf.data hands out training batches as they finish (a slow JPEG
    #                              no longer stalls the rest), at the price of repeatability: the order
    #                              then varies from run to run and resuming is no longer exact
    c.num_parallel_calls = AUTOTUNE  # tf.data parallelism per stage; -1 = AUTOTUNE (for folders:
    #                                  one call per available core)
    return c


def imagenet_data_config(train_transform: str = "alexnet") -> ml_collections.ConfigDict:
    """The data block of the ImageNet configs: TFDS imagenet2012 (manual download), 1000 classes,
    `train_transform` ('alexnet': shorter side 256, random 224 crop, flip, PCA lighting; 'inception':
    random-resized 224 crop, flip), evaluation on the validation split's central 224 crop of 256."""
    c = default_data_config()
    c.source = "tfds:imagenet2012"
    c.train_split, c.eval_split = "train", "validation"
    c.train_transform, c.eval_transform = train_transform, "center_crop"
    c.image_size, c.resize_size, c.channels = 224, 256, 3
    c.mean, c.std = IMAGENET_MEAN, IMAGENET_STD
    c.pca_lighting_std = 0.1 if train_transform == "alexnet" else 0.0
    c.num_classes = 1000
    return c


def check_data_config(data: ml_collections.ConfigDict) -> None:
    """Raises ValueError (one line) for a field value the pipelines do not accept."""
    _choice("train_transform", data.train_transform, TRAIN_TRANSFORMS)
    _choice("eval_transform", data.eval_transform, EVAL_TRANSFORMS)
    _choice("on_corrupt", data.on_corrupt, ON_CORRUPT)
    _choice("channels", data.channels, (1, 3))
    _choice("deterministic", data.get("deterministic", True), (True, False))
    for name in ("image_size", "resize_size", "synthetic_examples", "shuffle_buffer"):
        if int(data[name]) <= 0:
            raise ValueError(f"data.{name} must be a positive integer, got {data[name]!r}")
    if data.num_classes < 0:
        raise ValueError(f"data.num_classes must be >= 0 (0 = from the source), got {data.num_classes}")
    if not 0.0 < data.min_area <= 1.0:
        raise ValueError(f"data.min_area must lie in (0, 1], got {data.min_area}")
    lo, hi = data.aspect_range
    if not 0.0 < lo <= hi:
        raise ValueError(f"data.aspect_range must be (low, high) with 0 < low <= high, got "
                         f"{tuple(data.aspect_range)}")
    if data.pca_lighting_std < 0:
        raise ValueError(f"data.pca_lighting_std must be >= 0, got {data.pca_lighting_std}")
    if data.num_parallel_calls != AUTOTUNE and data.num_parallel_calls < 1:
        raise ValueError(f"data.num_parallel_calls must be >= 1 or -1 (AUTOTUNE), got "
                         f"{data.num_parallel_calls}")
    if len(data.mean) not in (1, data.channels) or len(data.std) != len(data.mean):
        raise ValueError(f"data.mean and data.std need 1 or channels={data.channels} values each, got "
                         f"{tuple(data.mean)} and {tuple(data.std)}")


def _choice(name: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"data.{name} must be one of {choices}, got {value!r}")


def check_transform(data: ml_collections.ConfigDict, name: str, *, train: bool, crops: int = 1
                    ) -> None:
    """Raises ValueError where transform `name` cannot run with these data fields and `crops`."""
    _choice("train_transform" if train else "eval_transform", name,
            TRAIN_TRANSFORMS if train else EVAL_TRANSFORMS)
    if crops not in EVAL_CROPS:
        raise ValueError(f"crops must be one of {EVAL_CROPS}, got {crops!r}")
    if crops > 1 and name != "center_crop":
        raise ValueError(f"crops={crops} cuts the crops from the image resized to resize_size: it needs "
                         f"data.eval_transform='center_crop', got {name!r}")
    if name in ("alexnet", "center_crop") and data.image_size > data.resize_size:
        raise ValueError(f"data.image_size={data.image_size} must not exceed data.resize_size="
                         f"{data.resize_size} for the {name!r} transform")
    if name == "alexnet" and data.pca_lighting_std > 0 and data.channels != 3:
        raise ValueError("PCA lighting (data.pca_lighting_std > 0) works on RGB: set data.channels=3 "
                         "or data.pca_lighting_std=0")


def output_shape(data: ml_collections.ConfigDict, name: str, source_shape: tuple,
                 crops: int = 1) -> tuple[int | None, ...]:
    """Shape of one example after transform `name`: (H, W, C), or (crops, H, W, C) for crops > 1.

    'none' keeps the source's own (H, W) (None where the files differ in size); every other
    transform yields image_size x image_size.
    """
    if name == "none":
        shape = (*tuple(source_shape)[:2], data.channels)
    else:
        shape = (data.image_size, data.image_size, data.channels)
    return (crops, *shape) if crops > 1 else shape
