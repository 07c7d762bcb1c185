"""Classify image files with a trained run: the top-5 classes and their probabilities per image.

    ./launch.sh predict --workdir DIR [--step N | --step best | --step latest] [--top K]
                        [--config.KEY=VALUE ...] IMAGE_OR_FOLDER...

A folder stands for the image files in it and its subfolders (.jpg, .jpeg, .png, .gif, .bmp). A file
that cannot be read or decoded, or whose header states more than data.max_image_pixels pixels, is
named in one warning line and left out; the others are still classified.

Each image goes through the run's own evaluation transform (config.data.eval_transform, the same
cnnjax.data.transforms code that evaluation uses): 'center_crop' resizes the shorter side to
data.resize_size and takes the central data.image_size square; 'pad_or_crop' (older names 'mnist',
'cifar') pads or center-crops to data.image_size, so give it images at the dataset's own resolution;
'none' keeps the image as it is, after resizing a file of another size to data.image_size. Images are
converted to the config's channels (grayscale for 1-channel models). Class names are printed where the
dataset has them.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from collections.abc import Sequence

import ml_collections
import numpy as np

from cnnjax import config as config_io
from cnnjax import evaluate
from cnnjax.errors import UserError
from cnnjax.train.metrics import read_metrics

# What a folder argument is searched for: the formats the decoders read (cnnjax.data.transforms.decode).
PREDICT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


class UnreadableImageError(UserError):
    """An image file that cannot be read, is over data.max_image_pixels, or does not decode."""

    def __init__(self, path: str | pathlib.Path, why: str):
        self.path, self.why = str(path), why
        super().__init__(f"cannot read image {path}: {why}")


def load_image(path: str | pathlib.Path, data: ml_collections.ConfigDict) -> np.ndarray:
    """The file as the model's input: uint8 (H, W, C) after the config's evaluation transform.

    Raises FileNotFoundError for a path that does not exist, UnreadableImageError (one line naming
    the file and why) for one that cannot be read or decoded, or whose header states more than
    data.max_image_pixels pixels (checked before decoding).
    """
    from cnnjax.data import transforms as T
    from cnnjax.data.config import max_image_pixels
    from cnnjax.data.tf_cpu import tf

    path = pathlib.Path(path)
    if not path.exists() and not path.is_symlink():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        encoded = tf.constant(path.read_bytes())
    except OSError as e:
        raise UnreadableImageError(path, f"cannot be read ({e.strerror})") from None
    problem = T.header_problem(encoded, max_image_pixels(data))  # checked before decoding
    if problem:
        raise UnreadableImageError(path, problem)
    try:
        image = T.decode(encoded, int(data.channels))
    except tf.errors.OpError as e:
        raise UnreadableImageError(path, f"corrupt or unreadable (the decoder refused it: "
                                   f"{type(e).__name__})") from None
    from cnnjax.data.config import transform_name

    name = transform_name(data.eval_transform, train=False)
    size = int(data.image_size)
    height, width = int(image.shape[0]), int(image.shape[1])
    if name == "none" and (height, width) != (size, size):
        # 'none' keeps the dataset's own size, which a file need not have: bring it to the size the
        # model was trained at (data.image_size) first.
        image = T.to_uint8(T.resize(image, size))
    if name == "pad_or_crop" and max(height, width) > 2 * size:
        print(f"note: {path} is {width}x{height}; the {name!r} transform keeps only its central "
              f"{size}x{size} pixels: resize it to the dataset's resolution first", file=sys.stderr)
    transform = T.make_transform(data, name, tuple(image.shape), train=False)
    key = tf.zeros([2], tf.int32)  # evaluation transforms are deterministic; the key is unused
    return transform.on_decoded(image, key, key).numpy()


def top_k(probabilities: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k most probable classes as (class, probability), most probable first; ties by class index."""
    order = np.lexsort((np.arange(probabilities.size), -probabilities))[:k]
    return [(int(i), float(probabilities[i])) for i in order]


def class_label(index: int, class_names: Sequence[str] | None) -> str:
    if class_names and index < len(class_names) and str(class_names[index]) != str(index):
        return f"{class_names[index]} ({index})"
    return str(index)


def predict_probabilities(state, config: ml_collections.ConfigDict, images: np.ndarray) -> np.ndarray:
    """Softmax of the model's logits for uint8 images (N, H, W, C) -> (N, num_classes)."""
    import jax

    from cnnjax.data.device import normalize
    from cnnjax.models import split_outputs

    @jax.jit
    def forward(state, images):
        x = normalize(images, config.data.mean, config.data.std, jax.numpy.dtype(config.model.dtype))
        logits, _ = split_outputs(state.apply_fn(state.variables(), x, train=False))
        return jax.nn.softmax(logits.astype(jax.numpy.float32))

    return np.asarray(forward(state, images))


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(args, --config. overrides as 'key=value')."""
    parser = argparse.ArgumentParser(prog="./launch.sh predict",
                                     description="Top-k classes of image files under a trained run.")
    parser.add_argument("--workdir", required=True, help="the run's folder (config.json, checkpoints/)")
    parser.add_argument("--step", default="latest", help="checkpoint step N, 'best' or 'latest'")
    parser.add_argument("--top", type=int, default=5, help="how many classes to print (default 5)")
    parser.add_argument("images", nargs="+", help="JPEG, PNG, GIF or BMP files, or folders of "
                        "them (their subfolders too)")
    args, rest = parser.parse_known_args(argv)
    overrides = config_io.split_overrides(
        rest, "--workdir, --step, --top, --config.KEY=VALUE and image files")
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    return args, overrides


def main(argv: list[str]) -> int:
    args, overrides = parse_args(argv)
    run = evaluate.open_run(args.workdir, overrides)
    config = run.config
    evaluate.resolve_step(args.step, run.steps, read_metrics(run.workdir), config.best_metric,
                          config.best_mode)  # a wrong --step is refused before any work
    paths, images = read_images(args.images, config.data)  # all read first

    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from cnnjax.train.distributed import data_mesh

    replicated = NamedSharding(data_mesh(), P())
    info = _dataset_info(config)
    num_classes = int(config.data.num_classes) or (info.num_classes if info else 0)
    if num_classes <= 0:
        raise UserError("the run's config has data.num_classes=0 and its dataset is not on hand to "
                        "say how many classes the model has; pass --config.data.num_classes=N")
    model, abstract = evaluate.abstract_variables(config, images.shape[1:], num_classes)
    step, state = evaluate.restore_step(run, args.step, model, abstract, replicated)
    probabilities = predict_probabilities(state, config, images)
    class_names = info.class_names if info else None
    print(f"{run.workdir} at step {step}:")
    for path, probs in zip(paths, probabilities, strict=True):
        ranked = top_k(probs, min(args.top, probs.size))
        print(f"{path}: " + ", ".join(f"{class_label(c, class_names)} {p:.2%}" for c, p in ranked))
    return 0


def read_images(arguments: Sequence[str], data: ml_collections.ConfigDict
                ) -> tuple[list[str], np.ndarray]:
    """(the paths read, their images (N, H, W, C)) for image files and folders of them. A file that
    cannot be read or decoded is named once (a warning), left out, and counted in a last warning;
    a missing path, a folder without images or nothing readable at all is a one-line error."""
    from cnnjax.data import SkippedImages
    from cnnjax.data.sources import scan_images

    skipped = SkippedImages()
    paths: list[str] = []
    for argument in arguments:
        if not pathlib.Path(argument).is_dir():
            paths.append(argument)
            continue
        files, left_out = scan_images(argument, PREDICT_EXTENSIONS, recursive=True)
        for path, why in left_out:
            skipped.add(path, why)
        if not files and not left_out:
            raise UserError(f"folder {argument} holds no image file ({', '.join(PREDICT_EXTENSIONS)}"
                            ", in it or its subfolders)")
        paths += files
    read, images = [], []
    for path in paths:
        try:
            images.append(load_image(path, data))
            read.append(path)
        except UnreadableImageError as e:
            skipped.add(e.path, e.why)
    if skipped.summary():
        print(f"warning: {skipped.summary()}", file=sys.stderr)
    if not images:
        raise UserError(f"none of the {len(skipped.counts)} image file(s) given could be read (each is "
                        "named in a warning above)")
    return read, np.stack(images)


def _dataset_info(config: ml_collections.ConfigDict):
    """The evaluation split's DatasetInfo (class count and names), or None where it is not on hand."""
    from cnnjax import data

    try:
        return data.dataset_info(config.data, config.data.eval_split)
    except (ValueError, FileNotFoundError, OSError):
        return None
