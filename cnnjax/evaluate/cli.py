"""`./launch.sh eval`: the checkpoints of a run scored: accuracy, error, loss, per-class accuracy,
confusion matrix.

    ./launch.sh eval --workdir DIR [--step N | --step best | --step latest | --all] [--crops 1|5|10]
                     [--split NAME] [--data SOURCE] [--batch-size B] [--config.KEY=VALUE ...]

The checkpoint is restored with the config saved beside it (DIR/config.json); --config. overrides change
that config for this evaluation only (e.g. --config.data.resize_size=256). Multi-crop evaluation averages
the softmax over the crops (four corners and the center, and their mirror images for 10 crops), as
AlexNet's test procedure did (Krizhevsky et al. 2012, Sec. 4.1). Results go to
DIR/eval_<step>_<crops>crop.json with the confusion matrix as DIR/eval_<step>_<crops>crop_confusion.png;
--all evaluates every checkpoint and adds DIR/eval_all_<crops>crop.{json,csv,png} (accuracy vs. step).

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
from cnnjax.evaluate.evaluation import CROPS, Evaluator
from cnnjax.evaluate.report import report_lines, result_stem, write_result, write_table
from cnnjax.evaluate.restore import (
    abstract_variables,
    open_run,
    resolve_step,
    restore_checkpoint,
    restore_step,
    state_from_variables,
)
from cnnjax.train.metrics import read_metrics


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="./launch.sh eval",
                                     description="Evaluate the checkpoints of a training run.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="the run's folder (config.json, checkpoints/)")
    source.add_argument("--weights", help="a weights file (.pth/.pt, .safetensors, .npz in torchvision "
                        "naming) to evaluate instead of a run; needs --model and --data")
    parser.add_argument("--model", help="with --weights: the model the file holds, e.g. resnet50, "
                        "vgg16_bn, alexnet_torchvision (see python -m cnnjax.convert models); an "
                        ".npz of convert import records it")
    parser.add_argument("--knob", action="append", default=[], metavar="KEY=VALUE",
                        help="with --weights: a model knob, e.g. transform_input=False (repeatable); "
                        "one an imported .npz records must agree with it")
    parser.add_argument("--config", help="with --weights: a config file[:ARG] for the data settings "
                        "(default: ImageNet evaluation, shorter side 256, center 224, ImageNet mean/std)")
    parser.add_argument("--out", help="with --weights: where the results go "
                        "(default: workdirs/eval_<weights file name>)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--step", default="latest",
                       help="checkpoint step N, 'best' (by the run's best_metric in metrics.jsonl) "
                       "or 'latest' (default)")
    which.add_argument("--all", action="store_true", help="every checkpoint in turn, plus a table "
                       "and a plot of accuracy against step")
    parser.add_argument("--crops", type=int, default=1, choices=CROPS,
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
    """Everything an evaluation needs besides the parameters: the (overridden) config, the split's
    DatasetInfo, the jitted evaluator and the model with its abstract variables to check against."""

    config: ml_collections.ConfigDict
    split: str
    info: object  # cnnjax.data.DatasetInfo
    evaluator: Evaluator
    model: object
    abstract: dict


def prepare(config: ml_collections.ConfigDict, args: argparse.Namespace, model=None) -> Prepared:
    """Applies --data, checks --crops against the eval transform, builds the evaluator and the model
    (or takes `model`, already built for imported weights)."""
    from cnnjax import data
    from cnnjax.data.config import check_transform

    if args.data:
        with config.data.ignore_type():
            config.data.eval_source = args.data
    # the crops and the transform are checked before any model is built
    check_transform(config.data, config.data.eval_transform, train=False, crops=args.crops)
    split = args.split or config.data.eval_split
    info = data.dataset_info(config.data, split)
    num_classes = int(config.data.num_classes) or info.num_classes  # as training built the model
    batch_size = int(config.eval_batch_size) if args.batch_size is None else args.batch_size
    evaluator = Evaluator(config, batch_size, num_classes)
    shape = info.image_shape
    if None in shape:  # 'none' transform on images of mixed sizes: what the model was built for
        shape = (config.data.image_size, config.data.image_size, config.data.channels)
    if model is None:
        model, abstract = abstract_variables(config, tuple(int(s) for s in shape), num_classes)
    else:
        abstract = {}
    return Prepared(config, split, info, evaluator, model, abstract)


def evaluate_and_report(prepared: Prepared, state, step: int | str, out_dir: pathlib.Path,
                        args: argparse.Namespace) -> dict:
    """Evaluates `state`, prints the report, writes <stem>.json and the confusion PNG into out_dir;
    returns the summary row (no per-class values) for the --all table."""
    config, split = prepared.config, prepared.split
    result = {"step": step, "crops": args.crops, "split": split,
              "data": config.data.eval_source or config.data.source,
              **prepared.evaluator(state, split=args.split, crops=args.crops)}
    stem = result_stem(step, args.crops, args.split, args.data)
    crop_text = f"{args.crops} crop" + ("s" if args.crops > 1 else "")
    class_names = prepared.info.class_names
    path, png = write_result(out_dir, stem, result, class_names, f"step {step}, {crop_text}, {split}")
    read = prepared.info.source  # a folder: the one really read, split subfolder or whole folder
    read = read if read.startswith("folder:") else f"{result['data']} split {split!r}"
    print(f"{out_dir} at step {step}, {crop_text}, {read} ({result['examples']} examples)")
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


def evaluate_weights(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    """`eval --weights FILE [--model NAME] [--knob K=V ...]`: weights people already have, on any
    data source; an imported .npz brings its model and knobs (cnnjax.convert.record)."""
    import jax

    from cnnjax import convert
    from cnnjax.convert.cli import parse_knob

    knobs = dict(parse_knob(k) for k in args.knob)  # a malformed one fails before any data is read

    if args.config:
        config = config_io.resolve_config(args.config, overrides)
    else:
        config = imagenet_eval_config()
        config_io.apply_overrides(config, list(overrides))
    if args.data and not args.split and not args.config:
        config.data.eval_split = "validation" if args.data.startswith("tfds:") else "test"
    with jax.default_matmul_precision("highest"):  # keep float32 logits exact where TF32 would round
        weights = convert.read_weights(pathlib.Path(args.weights), args.model, **knobs)
        module, variables = weights.module, weights.variables
        print(f"{args.weights}: {weights.model} with "
              + ", ".join(f"{k}={v!r}" for k, v in weights.record["knobs"].items()))
        config.data.num_classes = int(module.num_classes)
        prepared = prepare(config, args, model=module)
        state = state_from_variables(module, variables, prepared.evaluator.replicated)
        out_dir = pathlib.Path(args.out or pathlib.Path("workdirs") /
                               f"eval_{pathlib.Path(args.weights).stem}")
        out_dir.mkdir(parents=True, exist_ok=True)
        evaluate_and_report(prepared, state, "weights", out_dir, args)
    return 0


def main(argv: list[str]) -> int:
    args, overrides = parse_args(argv)
    if args.weights:
        return evaluate_weights(args, overrides)
    run = open_run(args.workdir, overrides)
    from cnnjax.train.workdir import check_writable

    check_writable(run.workdir, "write the evaluation's results into")  # before, not after, evaluating
    if not args.all:  # a wrong --step is refused before the model is built
        resolve_step(args.step, run.steps, read_metrics(run.workdir), run.config.best_metric,
                     run.config.best_mode)
    prepared = prepare(run.config, args)
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
    written = write_table(run.workdir, result_stem("all", args.crops, args.split, args.data), rows)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
