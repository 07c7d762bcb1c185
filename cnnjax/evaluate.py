"""Evaluate the checkpoints of a run: accuracy, error, loss, per-class accuracy, confusion matrix.

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
import csv
import dataclasses
import json
import math
import pathlib
import re
from collections.abc import Sequence

import ml_collections
import numpy as np

from cnnjax.train import config_io
from cnnjax.train.metrics import read_metrics

CROPS = (1, 5, 10)


# ---------------------------------------------------------------------------------------------------
# Pure helpers (numpy only)
# ---------------------------------------------------------------------------------------------------

def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts: row = true class, column = predicted class."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    predictions = np.asarray(predictions, np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes
                        or predictions.min() < 0 or predictions.max() >= num_classes):
        raise ValueError(f"labels and predictions must lie in [0, {num_classes}), got labels in "
                         f"[{labels.min()}, {labels.max()}] and predictions in "
                         f"[{predictions.min()}, {predictions.max()}]")
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_accuracy(confusion: np.ndarray) -> list[float | None]:
    """Top-1 accuracy of each true class (the confusion matrix's diagonal over its row sums);
    None for a class with no examples."""
    totals = confusion.sum(axis=1)
    return [float(confusion[i, i] / totals[i]) if totals[i] else None for i in range(len(totals))]


def best_step(records: Sequence[dict], steps: Sequence[int], metric: str, mode: str) -> int:
    """The checkpointed step whose logged `metric` is best ('max' or 'min'); earliest wins ties.

    A step evaluated twice (a resumed run) counts with its last value.
    """
    logged = {int(r["step"]): float(r[metric]) for r in records if metric in r and "step" in r}
    scored = [(logged[s], s) for s in steps if s in logged and math.isfinite(logged[s])]
    if not scored:
        raise ValueError(f"no checkpoint step has a logged {metric!r} in metrics.jsonl (checkpoint "
                         f"steps: {list(steps)}); use --step latest or --step N")
    if mode == "min":
        return min(scored)[1]
    return max(scored, key=lambda vs: (vs[0], -vs[1]))[1]


def resolve_step(spec: str, steps: Sequence[int], records: Sequence[dict], metric: str,
                 mode: str) -> int:
    """--step as a checkpoint step: a number, 'latest', or 'best' (by the run's best_metric)."""
    if not steps:
        raise ValueError("the run has no checkpoints")
    if spec == "latest":
        return max(steps)
    if spec == "best":
        return best_step(records, steps, metric, mode)
    try:
        step = int(spec)
    except ValueError:
        raise ValueError(f"--step must be a number, 'best' or 'latest', got {spec!r}") from None
    if step not in steps:
        raise ValueError(f"no checkpoint at step {step}; available steps: "
                         f"{', '.join(map(str, steps))}")
    return step


def result_stem(step: int | str, crops: int, split: str | None = None,
                data: str | None = None) -> str:
    """'eval_<step>_<crops>crop', plus '_<data>_<split>' for whichever of --data and --split was given."""
    stem = f"eval_{step}_{crops}crop"
    extra = "_".join(re.sub(r"[^A-Za-z0-9.+-]+", "-", part).strip("-")
                     for part in (data, split) if part)
    return f"{stem}_{extra}" if extra else stem


def summarize_counts(labels: np.ndarray, predictions: np.ndarray, sums: dict,
                     num_classes: int) -> dict:
    """The report of one evaluation from its per-example labels and predictions (real examples only)
    and the summed loss, top-1 and top-5 hits and count of the evaluation step."""
    count = float(sums["count"])
    confusion = confusion_matrix(labels, predictions, num_classes)
    top1, top5 = float(sums["top1"]) / max(count, 1.0), float(sums["top5"]) / max(count, 1.0)
    return {"examples": int(count), "top1": top1, "top5": top5, "top1_error": 1.0 - top1,
            "top5_error": 1.0 - top5, "loss": float(sums["loss"]) / max(count, 1.0),
            "per_class_accuracy": per_class_accuracy(confusion),
            "confusion_matrix": confusion.tolist()}


# ---------------------------------------------------------------------------------------------------
# Restoring
# ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Run:
    """A workdir's saved config (with this evaluation's overrides) and its checkpoints."""

    workdir: pathlib.Path
    config: ml_collections.ConfigDict
    checkpoints: object  # cnnjax.train.checkpoint.Checkpoints
    steps: list[int]


def open_run(workdir: str | pathlib.Path, overrides: Sequence[str] = ()) -> Run:
    """The run in `workdir`, or one line saying why it is not one (no config, no checkpoints)."""
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"workdir {workdir} does not exist")
    config = config_io.load_saved_config(workdir)
    config_io.apply_overrides(config, list(overrides))
    folder = workdir / "checkpoints"
    if not folder.is_dir() or not any(p.name.isdigit() for p in folder.iterdir()):
        raise FileNotFoundError(f"no checkpoints in {folder}: nothing to evaluate (has the run saved "
                                "one yet?)")
    from cnnjax.train.checkpoint import Checkpoints

    checkpoints = Checkpoints(folder, use_async=False)
    steps = checkpoints.all_steps()
    if not steps:
        raise FileNotFoundError(f"no complete checkpoints in {folder}: nothing to evaluate")
    return Run(workdir, config, checkpoints, steps)


def abstract_variables(config: ml_collections.ConfigDict, image_shape: Sequence[int],
                       num_classes: int):
    """(model, shapes and dtypes of its variables {'params', ['batch_stats']}) via jax.eval_shape,
    without allocating them."""
    import jax
    import jax.numpy as jnp

    from cnnjax.train.loop import build_model

    model = build_model(config, num_classes)
    key = jax.random.key(0)
    abstract = jax.eval_shape(lambda: model.init({"params": key, "dropout": key},
                                                 jnp.zeros((1, *image_shape), jnp.float32),
                                                 train=False))
    return model, dict(abstract)


def state_from_variables(model, variables: dict, sharding):
    """A TrainState holding `variables` (replicated by `sharding`) for the evaluation step; its
    optimizer is the identity, as nothing is trained. Parameters from any source enter here."""
    import jax
    import optax

    from cnnjax.train.state import TrainState

    variables = jax.device_put(variables, sharding)
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=optax.identity(),
                             batch_stats=variables.get("batch_stats") or None)


def restore_checkpoint(run: Run, step: int, model, abstract: dict, sharding):
    """The model's variables saved at `step` (the optimizer state is not needed and not read back
    onto the devices) as a TrainState.

    Raises CheckpointMismatchError (one line, the arrays that differ) when the checkpoint does not
    fit the config's model, and ValueError when the checkpoint cannot be read.
    """
    from cnnjax.train.checkpoint import CheckpointMismatchError, shape_mismatches

    try:
        arrays = run.checkpoints.read_arrays(step)
    except Exception as e:  # a damaged checkpoint surfaces as many error types
        raise ValueError(f"the checkpoint at step {step} in {run.workdir} cannot be read "
                         f"({type(e).__name__}); other steps: "
                         f"{', '.join(str(s) for s in run.steps if s != step) or 'none'}") from None
    variables = {"params": arrays.get("params", {})}
    if arrays.get("batch_stats") or "batch_stats" in abstract:
        variables["batch_stats"] = arrays.get("batch_stats") or {}
    problems = shape_mismatches(variables, abstract)
    if problems:
        raise CheckpointMismatchError(
            f"checkpoint at step {step} in {run.workdir} does not match the config: "
            + "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else ""))
    variables = {k: _cast_like(v, abstract[k]) for k, v in variables.items()}
    return state_from_variables(model, variables, sharding)


def _cast_like(tree: dict, like: dict) -> dict:
    return {k: _cast_like(v, like[k]) if isinstance(v, dict) else np.asarray(v, like[k].dtype)
            for k, v in tree.items()}


# ---------------------------------------------------------------------------------------------------
# Evaluating
# ---------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Evaluator:
    """The jitted evaluation step on a data-parallel mesh of every device, compiled once per shape."""

    config: ml_collections.ConfigDict
    batch_size: int
    num_classes: int

    def __post_init__(self):
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        from cnnjax.train.distributed import data_mesh
        from cnnjax.train.evaluation import padded_batch_size
        from cnnjax.train.steps import jit_steps

        if self.batch_size <= 0:
            raise ValueError(f"--batch-size {self.batch_size} must be positive (it is padded up to a "
                             "multiple of the devices)")
        self.batch_size = padded_batch_size(self.batch_size)  # padding rows are masked out

        mesh = data_mesh()
        self.replicated = NamedSharding(mesh, P())
        self.batch_sharding = NamedSharding(mesh, P("data"))
        c = self.config
        _, self.eval_fn = jit_steps(c.data.mean, c.data.std, c.model.dtype, 0.0, 0.0,
                                    self.replicated, self.batch_sharding)

    def __call__(self, state, split: str | None = None, crops: int = 1) -> dict:
        """summarize_counts over one pass of the split (default: the config's eval_split)."""
        from cnnjax import data
        from cnnjax.train.evaluation import evaluation_pass

        if crops not in CROPS:
            raise ValueError(f"--crops must be one of {CROPS}, got {crops}")
        batches = data.eval_batches(self.config.data, global_batch_size=self.batch_size,
                                    split=split, crops=crops)
        sums, labels, predictions = evaluation_pass(self.eval_fn, state, batches,
                                                    self.batch_sharding, keep_predictions=True)
        return summarize_counts(np.concatenate(labels or [np.zeros(0)]),
                                np.concatenate(predictions or [np.zeros(0)]), sums, self.num_classes)


# ---------------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------------

def write_result(directory: pathlib.Path, stem: str, result: dict,
                 class_names: Sequence[str] | None, title: str) -> tuple[pathlib.Path, pathlib.Path]:
    """<stem>.json (everything) and <stem>_confusion.png."""
    from cnnjax import plots

    png = plots.confusion_plot(directory / f"{stem}_confusion.png",
                               np.asarray(result["confusion_matrix"]), class_names, title)
    path = directory / f"{stem}.json"
    path.write_text(json.dumps({**result, "class_names": list(class_names) if class_names else None,
                                "confusion_png": png.name}, indent=1) + "\n")
    return path, png


def report_lines(result: dict, class_names: Sequence[str] | None, show: int = 20) -> list[str]:
    """The console report: accuracies, errors and loss, then per-class accuracy (all classes up to
    `show`, else the five lowest and highest)."""
    lines = [f"top-1 accuracy {result['top1']:.2%} (error {result['top1_error']:.2%})  "
             f"top-5 accuracy {result['top5']:.2%} (error {result['top5_error']:.2%})  "
             f"loss {result['loss']:.4f}"]
    names = list(class_names) if class_names else [str(i) for i in
                                                   range(len(result["per_class_accuracy"]))]
    scored = [(acc, names[i] if i < len(names) else str(i))
              for i, acc in enumerate(result["per_class_accuracy"]) if acc is not None]
    if len(scored) <= show:
        lines.append("per-class accuracy: " + ", ".join(f"{n} {a:.1%}" for a, n in scored))
    else:
        ordered = sorted(scored)
        lines.append("per-class accuracy, lowest: " + ", ".join(f"{n} {a:.1%}" for a, n in ordered[:5])
                     + "; highest: " + ", ".join(f"{n} {a:.1%}" for a, n in ordered[-5:]))
    return lines


def write_table(directory: pathlib.Path, stem: str, rows: list[dict]) -> list[pathlib.Path]:
    """<stem>.json, <stem>.csv and <stem>.png (top-1 and top-5 accuracy against step)."""
    from cnnjax import plots

    keys = ["step", "examples", "top1", "top5", "top1_error", "top5_error", "loss"]
    (directory / f"{stem}.json").write_text(json.dumps(rows, indent=1) + "\n")
    with (directory / f"{stem}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    steps = [r["step"] for r in rows]
    plots.line_plot(directory / f"{stem}.png",
                    [("top-1", steps, [r["top1"] for r in rows]),
                     ("top-5", steps, [r["top5"] for r in rows])],
                    xlabel="step", ylabel="accuracy", title=f"{directory.name}: {stem}")
    return [directory / f"{stem}.{ext}" for ext in ("json", "csv", "png")]


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="./launch.sh eval",
                                     description="Evaluate the checkpoints of a training run.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", help="the run's folder (config.json, checkpoints/)")
    source.add_argument("--weights", help="a weights file (.pth/.pt, .safetensors, .npz in torchvision "
                        "naming) to evaluate instead of a run; needs --model and --data")
    parser.add_argument("--model", help="with --weights: the model the file holds, e.g. resnet50, "
                        "vgg16_bn, alexnet_torchvision (see python -m cnnjax.convert models)")
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
    overrides = []
    for item in rest:
        if not item.startswith("--config."):
            raise ValueError(f"unrecognised argument {item!r}; eval takes --workdir or --weights, "
                             "--step, --all, --crops, --split, --data, --batch-size and "
                             "--config.KEY=VALUE")
        overrides.append(item[len("--config."):])
    if args.weights and not (args.model and (args.data or args.config)):
        raise ValueError("--weights needs --model NAME and --data SOURCE (or a --config with the data), "
                         "e.g. --model resnet50 --data folder:/data/imagenet/val")
    if not args.weights and (args.model or args.config or args.out):
        raise ValueError("--model, --config and --out go with --weights; a --workdir run has its own")
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
    print(f"{out_dir} at step {step}, {crop_text}, {result['data']} split {split!r} "
          f"({result['examples']} examples)")
    for line in report_lines(result, class_names):
        print("  " + line)
    print(f"  wrote {path} and {png.name}")
    return {k: v for k, v in result.items() if k not in ("per_class_accuracy", "confusion_matrix")}


def imagenet_eval_config() -> ml_collections.ConfigDict:
    """The data settings torchvision's ImageNet weights expect: shorter side 256, center 224 crop,
    RGB normalised with ImageNet's mean and std."""
    from cnnjax.data.config import imagenet_data_config
    from cnnjax.train.defaults import default_config

    c = default_config()
    c.data = imagenet_data_config()
    c.eval_batch_size = 50
    return c


def evaluate_weights(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    """`eval --weights FILE --model NAME`: weights people already have, on any data source."""
    import jax

    from cnnjax import convert

    config = config_io.load_config(args.config) if args.config else imagenet_eval_config()
    config_io.apply_overrides(config, list(overrides))
    if args.data and not args.split and not args.config:
        config.data.eval_split = "validation" if args.data.startswith("tfds:") else "test"
    with jax.default_matmul_precision("highest"):  # keep float32 logits exact where TF32 would round
        module, variables = convert.load_weights(args.weights, args.model)
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
    steps = run.steps if args.all else [resolve_step(
        args.step, run.steps, read_metrics(run.workdir), run.config.best_metric,
        run.config.best_mode)]
    prepared = prepare(run.config, args)
    rows = []
    for step in steps:
        state = restore_checkpoint(run, step, prepared.model, prepared.abstract,
                                   prepared.evaluator.replicated)
        rows.append(evaluate_and_report(prepared, state, step, run.workdir, args))
    if args.all:
        written = write_table(run.workdir, result_stem("all", args.crops, args.split, args.data), rows)
        print("wrote " + ", ".join(str(p) for p in written))
    return 0
