"""`./launch.sh eval`: the checkpoints of a run scored: accuracy, error, loss, per-class accuracy,
confusion matrix.

    ./launch.sh eval --workdir DIR [--step N | --step best | --step latest | --all] [--crops 1|5|10]
                     [--split NAME] [--data SOURCE] [--batch-size B] [--config.KEY=VALUE ...]

The checkpoint is restored with the config saved beside it (DIR/config.json); --config. overrides change
how it is evaluated, for this evaluation only (cnnjax.evaluate.overrides.EVAL_KEYS: the eval transform
and its sizes, data.eval_crops, the split and source, the batch size; never the model or the number of
classes). --crops, --split, --data and --batch-size are short for data.eval_crops, data.eval_split,
data.eval_source and eval_batch_size. Multi-crop evaluation averages the softmax over the crops (four
corners and the center, and their mirror images for 10 crops), as AlexNet's test procedure did
(Krizhevsky et al. 2012, Sec. 4.1); cnnjax.data.transforms.make_transform says where each transform
cuts them. Results go to DIR/eval_<step>_<crops>crop.json, which records the overrides, with the
confusion matrix as DIR/eval_<step>_<crops>crop_confusion.png; an override of the result (a source,
split, transform, size) adds itself to the name (report.result_stem). --all evaluates every checkpoint
and adds DIR/eval_all_<crops>crop.{json,csv,png} (accuracy vs. step).

The parts are layered so that parameters can come from elsewhere than a checkpoint: `prepare` needs
only a config, `evaluate_and_report` only that and a state, and `state_from_variables` makes the state
from any variables dict (`restore_checkpoint` reads one from a checkpoint, checked against the model's
shapes).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
from collections.abc import Sequence

import ml_collections

from cnnjax import config as config_io
from cnnjax.errors import UserError
from cnnjax.evaluate.overrides import EVAL_KEYS, SHORTHANDS, apply_eval_overrides, flag_overrides
from cnnjax.evaluate.report import report_lines, result_stem, write_result, write_table
from cnnjax.evaluate.restore import (
    abstract_variables,
    open_run,
    resolve_step,
    restore_checkpoint,
    restore_step,
    state_from_variables,
)
from cnnjax.train.evaluator import CROPS, Evaluator
from cnnjax.train.metrics import read_metrics


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="./launch.sh eval",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Evaluate the checkpoints of a training run.",
                                     epilog="examples:\n"
                                     "  ./launch.sh eval --workdir workdirs/lenet5_mnist --step best\n"
                                     "  ./launch.sh eval --workdir workdirs/r20 --crops 10 --all\n"
                                     "  ./launch.sh eval --weights r50.pth --model resnet50 "
                                     "--data folder:/data/imagenet/val")
    add_source_arguments(parser)
    parser.add_argument("--out", help="with --weights: where the results go "
                        "(default: workdirs/eval_<weights file name>)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--step", default="latest",
                       help="checkpoint step N, 'best' (by the run's best_metric in metrics.jsonl) "
                       "or 'latest' (default)")
    which.add_argument("--all", action="store_true", help="every checkpoint in turn, plus a table "
                       "and a plot of accuracy against step")
    parser.add_argument("--crops", type=int, choices=CROPS,
                        help="1, or 5 / 10 crops with the softmax averaged (AlexNet Sec. 4.1)")
    parser.add_argument("--split", help="split to evaluate (default: the config's data.eval_split)")
    parser.add_argument("--data", help="data source to evaluate on instead of the config's, e.g. "
                        "folder:/data/imagenet/val (sets data.eval_source)")
    parser.add_argument("--batch-size", type=int, help="global batch (default: eval_batch_size)")
    args, rest = parser.parse_known_args(argv)
    overrides = config_io.split_overrides(rest, "--workdir or --weights, --step, --all, --crops, "
                                          "--split, --data, --batch-size and --config.KEY=VALUE")
    if args.weights and not (args.data or args.config):
        raise UserError("--weights needs --data SOURCE (or a --config with the data) and, unless the "
                        "file records it, --model NAME, e.g. --model resnet50 --data "
                        "folder:/data/imagenet/val")
    if not args.weights and (args.model or args.config or args.out or args.knob):
        raise UserError("--model, --knob, --config and --out go with --weights; a --workdir run has "
                        "its own")
    return args, overrides


@dataclasses.dataclass
class Prepared:
    """Everything an evaluation needs besides the parameters: the (overridden) config and what its
    overrides changed, the split's DatasetInfo and class count, the evaluator and the model with its
    abstract variables to check against."""

    config: ml_collections.ConfigDict
    split: str
    info: object  # cnnjax.data.DatasetInfo
    evaluator: Evaluator
    model: object
    abstract: dict
    num_classes: int = 0
    changes: dict = dataclasses.field(default_factory=dict)


def prepare(config: ml_collections.ConfigDict, args: argparse.Namespace, model=None,
            changes: dict | None = None) -> Prepared:
    """Checks the crops against the eval transform, builds the evaluator and the model (or takes
    `model`, already built for imported weights). `changes` are the overrides that changed the config
    (default: the shorthand flags given, for a config built for --weights)."""
    from cnnjax import data
    from cnnjax.data.config import check_transform, eval_crops

    if changes is None:
        changes = {key: getattr(args, flag) for flag, key in SHORTHANDS.items()
                   if getattr(args, flag, None) is not None}
    # the crops and the transform are checked before any model is built
    check_transform(config.data, config.data.eval_transform, train=False,
                    crops=eval_crops(config.data))
    split = config.data.eval_split
    info = data.dataset_info(config.data, split)
    num_classes = int(config.data.num_classes) or info.num_classes  # as training built the model
    evaluator = Evaluator(config)
    shape = info.image_shape
    if None in shape:  # 'none' transform on images of mixed sizes: what the model was built for
        shape = (config.data.image_size, config.data.image_size, config.data.channels)
    if model is None:
        model, abstract = abstract_variables(config, tuple(int(s) for s in shape), num_classes)
    else:
        abstract = {}
    return Prepared(config, split, info, evaluator, model, abstract, num_classes, dict(changes))


def evaluate_and_report(prepared: Prepared, state, step: int | str, out_dir: pathlib.Path,
                        args: argparse.Namespace) -> dict:
    """Evaluates `state`, prints the report, writes <stem>.json and the confusion PNG into out_dir;
    returns the summary row (no per-class values) for the --all table."""
    config, split, crops = prepared.config, prepared.split, prepared.evaluator.crops
    result = {"step": step, "crops": crops, "split": split,
              "data": config.data.eval_source or config.data.source, "overrides": prepared.changes,
              **prepared.evaluator.report(state, prepared.num_classes)}
    stem = result_stem(step, crops, changes=prepared.changes)
    crop_text = f"{crops} crop" + ("s" if crops > 1 else "")
    class_names = prepared.info.class_names
    path, png = write_result(out_dir, stem, result, class_names, f"step {step}, {crop_text}, {split}")
    read = prepared.info.source  # a folder: the one really read, split subfolder or whole folder
    read = read if read.startswith("folder:") else f"{result['data']} split {split!r}"
    print(f"{out_dir} at step {step}, {crop_text}, {read} ({result['examples']} examples)")
    if prepared.changes:
        print("  with " + ", ".join(f"{k}={v!r}" for k, v in prepared.changes.items()))
    for line in report_lines(result, class_names):
        print("  " + line)
    print(f"  wrote {path} and {png.name}")
    return {k: v for k, v in result.items() if k not in ("per_class_accuracy", "confusion_matrix")}


def imagenet_eval_config() -> ml_collections.ConfigDict:
    """The data settings torchvision's ImageNet weights expect: shorter side 256, center 224 crop,
    RGB normalised with ImageNet's mean and std."""
    from cnnjax.config import default_config
    from cnnjax.data.presets import imagenet_data_config

    c = default_config()
    c.data = imagenet_data_config()
    c.eval_batch_size = 50
    return c


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """--workdir or --weights, and --model, --knob, --config for a weights file: what eval, predict
    and visualize read the same way (open_run, or weights_and_config)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="the run's folder (config.json, checkpoints/)")
    source.add_argument("--weights", help="a weights file instead of a run: .pth/.pt, .safetensors "
                        "or .npz (torchvision names, or convert import's .npz)")
    parser.add_argument("--model", help="with --weights: the model the file holds, e.g. resnet50, "
                        "vgg16_bn, lenet5 (python -m cnnjax.convert models); an .npz of convert "
                        "import records it")
    parser.add_argument("--knob", action="append", default=[], metavar="KEY=VALUE",
                        help="with --weights: a model knob, e.g. transform_input=False (repeatable); "
                        "one an imported .npz records must agree with it")
    parser.add_argument("--config", help="with --weights: a config file[:ARG] for the data settings "
                        "(default: those of the dataset --data names, else ImageNet evaluation)")


def weights_and_config(args: argparse.Namespace, overrides: Sequence[str]):
    """(cnnjax.convert.Weights, config) for --weights [--model] [--knob] [--config] [--data]: the
    file read into its model, and the settings to feed it with: --config's; or else the data
    settings of the dataset --data names (data_for_weights) with the images the weights take; then
    the --config. overrides. data.num_classes is the model's."""
    from cnnjax import convert
    from cnnjax.convert.record import parse_knob

    knobs = dict(parse_knob(k) for k in args.knob)  # a malformed one fails before any data is read
    weights = convert.read_weights(pathlib.Path(args.weights), args.model, **knobs)
    if args.config:
        config = config_io.resolve_config(args.config, overrides)
    else:
        config = imagenet_eval_config()
        config.data = data_for_weights(args.data or "", weights)
        config_io.apply_overrides(config, list(overrides))
    config.data.num_classes = int(weights.module.num_classes)
    return weights, config


def data_for_weights(source: str, weights) -> ml_collections.ConfigDict:
    """The data block for evaluating `weights` on `source` without a config file: the preset of the
    dataset `source` names (same kind and folder name as the preset's source, so
    idx:../shared/data/mnist is MNIST; ImageNet's settings otherwise), with the channels the
    weights' first convolution takes and, for a model with a fixed input size (a flattening
    layer: LeNet-5, VGG, AlexNet), its natural image size (LeNet-5's 32 for MNIST's 28; a center
    crop keeps the preset's ratio of resize_size to image_size). Globally pooled models keep the
    dataset's size."""
    from cnnjax import models
    from cnnjax.convert import spec_for
    from cnnjax.data.config import transform_name
    from cnnjax.data.presets import PRESETS, data_config, imagenet_data_config

    def kind_and_name(text: str) -> tuple[str, str]:
        kind, _, where = text.partition(":")
        return kind, pathlib.PurePath(where.split(":")[0]).name if where else ""

    matching = [name for name, fields in PRESETS.items()
                if fields["source"] and kind_and_name(fields["source"]) == kind_and_name(source)]
    data = data_config(matching[0]) if matching else imagenet_data_config()
    if not matching:  # a folder's evaluation split: 'test' unless TFDS names its own
        data.eval_split = "validation" if source.startswith("tfds:") else "test"
    channels = weights.input_channels
    if channels != data.channels:
        # Gray images become RGB by repeating the one channel (the statistics repeat too); RGB
        # becomes gray near the mean of the three (the statistics are averaged).
        data.mean, data.std = ((float(sum(v) / len(v)),) * channels for v in (data.mean, data.std))
        data.channels = channels
    spec = spec_for(weights.model)
    if spec.flatten:  # a fixed input size: the one its flattening layer was made for
        (size, _, _), _ = models.natural_input(spec.model)
        if transform_name(data.eval_transform, train=False) == "center_crop":
            # the shorter side keeps its ratio to the crop (ImageNet's 256 for 224)
            data.resize_size = round(size * data.resize_size / data.image_size)
        data.image_size = size
    return data


def evaluate_weights(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    """`eval --weights FILE [--model NAME] [--knob K=V ...]`: weights people already have, on any
    data source; an imported .npz brings its model and knobs (cnnjax.convert.record). Weights that
    do not fit the images the data gives are refused in one line before any evaluation."""
    import jax

    with jax.default_matmul_precision("highest"):  # keep float32 logits exact where TF32 would round
        weights, config = weights_and_config(args, overrides)
        module, variables = weights.module, weights.variables
        print(f"{args.weights}: {weights.model} with "
              + ", ".join(f"{k}={v!r}" for k, v in weights.record["knobs"].items()))
        prepared = prepare(config, args, model=module)
        check_fits(args.weights, module, variables, prepared.info.image_shape, config)
        state = state_from_variables(module, variables, prepared.evaluator.replicated)
        out_dir = pathlib.Path(args.out or pathlib.Path("workdirs") /
                               f"eval_{pathlib.Path(args.weights).stem}")
        out_dir.mkdir(parents=True, exist_ok=True)
        evaluate_and_report(prepared, state, "weights", out_dir, args)
    return 0


def check_fits(label: str, module, variables: dict, image_shape: Sequence[int | None],
               config: ml_collections.ConfigDict) -> None:
    """One-line UserError when `variables` do not fit `module` applied to images of `image_shape`
    (a None side: data.image_size), naming the first mismatches and the keys that set the input."""
    import jax
    import jax.numpy as jnp

    from cnnjax.train.checkpoint import shape_mismatches

    size = int(config.data.image_size)
    shape = tuple(size if s is None else int(s) for s in image_shape)
    abstract = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False),
                              jax.ShapeDtypeStruct((1, *shape), jnp.float32))
    problems = shape_mismatches(variables, abstract)
    if problems:
        raise UserError(f"{label} does not fit the {'x'.join(map(str, shape))} images the data "
                        f"gives: {'; '.join(problems[:3])}; set the input with "
                        "--config.data.image_size=N or --config.data.channels=C")


def main(argv: list[str]) -> int:
    args, overrides = parse_args(argv)
    overrides = flag_overrides(args) + overrides  # the flags are short for their keys
    if args.weights:
        return evaluate_weights(args, overrides)
    run = open_run(args.workdir)
    changes = apply_eval_overrides(run.config, overrides, EVAL_KEYS, "eval")
    from cnnjax.train.workdir import check_writable

    check_writable(run.workdir, "write the evaluation's results into")  # before, not after, evaluating
    if not args.all:  # a wrong --step is refused before the model is built
        resolve_step(args.step, run.steps, read_metrics(run.workdir), run.config.best_metric,
                     run.config.best_mode)
    prepared = prepare(run.config, args, changes=changes)
    restore_args = (prepared.model, prepared.abstract, prepared.evaluator.replicated)
    if not args.all:
        step, state = restore_step(run, args.step, *restore_args)
        evaluate_and_report(prepared, state, step, run.workdir, args)
        return 0
    from cnnjax.train.checkpoint import CheckpointVanishedError

    rows = []
    for step in run.steps:  # those that existed when the run was opened
        try:
            state = restore_checkpoint(run, step, *restore_args)
        except CheckpointVanishedError:
            print(f"step {step}: removed by the running training's clean-up (keep_checkpoints="
                  f"{run.config.keep_checkpoints}) before it was read; skipped")
            continue
        rows.append(evaluate_and_report(prepared, state, step, run.workdir, args))
    if not rows:  # every listed step removed meanwhile: the newest one that exists now
        step, state = restore_step(run, "latest", *restore_args)
        rows.append(evaluate_and_report(prepared, state, step, run.workdir, args))
    written = write_table(run.workdir, result_stem("all", prepared.evaluator.crops,
                                                   changes=prepared.changes), rows)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
