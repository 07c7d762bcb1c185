"""Classify image files with a trained run: the top-5 classes and their probabilities per image.

    ./launch.sh predict --workdir DIR [--step N | --step best | --step latest] [--top K]
                        [--config.KEY=VALUE ...] IMAGE_OR_FOLDER...
    ./launch.sh predict --weights FILE [--model NAME] [--data SOURCE | --config FILE] IMAGE...

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

--config. overrides may change how the images are cut (cnnjax.evaluate.overrides.PREDICT_KEYS: the
eval transform and its sizes, data.eval_crops, data.max_image_pixels), never the model; with
data.eval_crops=5 or 10 the probabilities are the softmax averaged over the crops, as in eval.
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
    """The file as the model's input: uint8 (H, W, C) after the config's evaluation transform, or
    (crops, H, W, C) with data.eval_crops 5 or 10.

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
    from cnnjax.data.config import eval_crops, transform_name

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
    transform = T.make_transform(data, name, tuple(image.shape), train=False, crops=eval_crops(data))
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
    """Softmax of the model's logits for uint8 images (N, H, W, C) -> (N, num_classes); for
    (N, crops, H, W, C) the softmax averaged over the crops."""
    import jax

    from cnnjax.data.device import normalize
    from cnnjax.models import split_outputs

    @jax.jit
    def forward(state, images):
        flat = images.reshape((-1, *images.shape[-3:]))
        x = normalize(flat, config.data.mean, config.data.std, jax.numpy.dtype(config.model.dtype))
        logits, _ = split_outputs(state.apply_fn(state.variables(), x, train=False))
        probs = jax.nn.softmax(logits.astype(jax.numpy.float32))
        return probs.reshape(images.shape[0], -1, probs.shape[-1]).mean(1)

    return np.asarray(forward(state, images))


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(args, --config. overrides as 'key=value')."""
    parser = argparse.ArgumentParser(prog="./launch.sh predict",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Top-k classes of image files under a trained run "
                                     "or a weights file.",
                                     epilog="examples:\n"
                                     "  ./launch.sh predict --workdir workdirs/lenet5_mnist digit.png\n"
                                     "  ./launch.sh predict --workdir workdirs/r20 --step best --top 3 "
                                     "photos/\n"
                                     "  ./launch.sh predict --weights l5.pth --model lenet5 "
                                     "--data idx:data/mnist digit.png")
    evaluate.add_source_arguments(parser)
    parser.add_argument("--step", help="checkpoint step N, 'best' or 'latest' (default)")
    parser.add_argument("--data", help="with --weights: the dataset the weights were trained on, for "
                        "its settings and class names (e.g. idx:data/mnist; default: ImageNet's "
                        "settings, with the model's channels)")
    parser.add_argument("--top", type=int, default=5, help="how many classes to print (default 5)")
    parser.add_argument("images", nargs="+", help="JPEG, PNG, GIF or BMP files, or folders of "
                        "them (their subfolders too)")
    args, rest = parser.parse_known_args(argv)
    overrides = config_io.split_overrides(
        rest, "--workdir, --step, --top, --config.KEY=VALUE and image files")
    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    if args.weights and args.step is not None:
        raise UserError("--step goes with --workdir; a weights file has one state")
    if not args.weights and (args.model or args.knob or args.config or args.data):
        raise UserError("--model, --knob, --config and --data go with --weights; a --workdir run has "
                        "its own")
    args.step = "latest" if args.step is None else args.step
    return args, overrides


def main(argv: list[str]) -> int:
    args, overrides = parse_args(argv)
    if args.weights:
        return predict_weights(args, overrides)
    run = evaluate.open_run(args.workdir)
    config = run.config
    changes = evaluate.apply_eval_overrides(config, overrides, evaluate.PREDICT_KEYS, "predict")
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
    model, abstract = evaluate.abstract_variables(config, images.shape[-3:], num_classes)
    step, state = evaluate.restore_step(run, args.step, model, abstract, replicated)
    with_changes = " with " + ", ".join(f"{k}={v!r}" for k, v in changes.items()) if changes else ""
    print_top(args, paths, predict_probabilities(state, config, images), info,
              f"{run.workdir} at step {step}{with_changes}")
    return 0


def predict_weights(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    """`predict --weights FILE [--model] [--knob] [--config | --data]`: the file read as eval
    --weights reads it (evaluate.weights_and_config), the images fed as those settings say."""
    weights, config = evaluate.weights_and_config(args, overrides)  # before any image is read
    paths, images = read_images(args.images, config.data)
    evaluate.check_fits(args.weights, weights.module, weights.variables, images.shape[-3:],
                       config)
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from cnnjax.train.distributed import data_mesh

    state = evaluate.state_from_variables(weights.module, weights.variables,
                                          NamedSharding(data_mesh(), P()))
    if args.data:
        config.data.eval_source = args.data
    info = _dataset_info(config) if args.data or args.config else None
    print_top(args, paths, predict_probabilities(state, config, images), info,
              f"{args.weights} ({weights.model})")
    return 0


def print_top(args: argparse.Namespace, paths: Sequence[str], probabilities: np.ndarray, info,
              label: str) -> None:
    class_names = info.class_names if info else None
    print(f"{label}:")
    for path, probs in zip(paths, probabilities, strict=True):
        ranked = top_k(probs, min(args.top, probs.size))
        print(f"{path}: " + ", ".join(f"{class_label(c, class_names)} {p:.2%}" for c, p in ranked))


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
