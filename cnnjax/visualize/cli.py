"""`./launch.sh visualize`: what a trained network has learned, as PNGs, visualize.json and an
index.html that lays them out.

    ./launch.sh visualize --workdir DIR [--step best|latest|N] [--image FILE ...] [--layers NAME ...]
                          --out DIR [--config.KEY=VALUE ...]
    ./launch.sh visualize --weights FILE --model NAME [--config FILE[:ARG]] [--data SOURCE]
                          --image FILE ... --out DIR

Draws the first layer's filters (and --filters LAYER ... per input channel), each layer's feature
maps for each image, the effective receptive field of each layer beside its theoretical one, the top
patches of a few units of three layers over the evaluation split, and per image saliency, Grad-CAM
and occlusion sensitivity. Without --image the first two evaluation images are used, with their true
class. Every argument is checked before anything runs; the results appear in --out all at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import shutil
import signal
from collections.abc import Sequence

from cnnjax import config as config_io
from cnnjax.errors import UserError
from cnnjax.visualize import features


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(args, --config. overrides as 'key=value')."""
    p = argparse.ArgumentParser(prog="./launch.sh visualize",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Filters, feature maps, receptive fields and attribution "
                                "of a trained network.",
                                epilog="examples:\n"
                                "  ./launch.sh visualize --workdir workdirs/lenet5_mnist --out vis\n"
                                "  ./launch.sh visualize --workdir workdirs/lenet5_mnist --image "
                                "digit.png --layers c1 c3 --out vis\n"
                                "  ./launch.sh visualize --weights r50.pth --model resnet50 "
                                "--image cat.jpg --out vis_r50")
    from cnnjax.evaluate import add_source_arguments  # read as eval and predict read them

    add_source_arguments(p)
    p.add_argument("--data", help="evaluation data source for top patches and the ERF, e.g. "
                   "folder:/data/imagenet/val (sets data.eval_source)")
    p.add_argument("--step", default="latest", help="checkpoint step N, 'best' or 'latest' (default)")
    p.add_argument("--image", nargs="+", action="extend", default=[], help="JPEG, PNG, GIF, BMP files")
    p.add_argument("--layers", nargs="+", help="layers to draw, or 'all' (default: every conv, "
                   "pooling and block outside a block)")
    p.add_argument("--out", required=True, help="folder for the PNGs, visualize.json, index.html")
    p.add_argument("--filters", nargs="+", default=[], help="layers whose kernels to draw per input "
                   "channel (the first layer's are always drawn)")
    p.add_argument("--patch-layers", nargs="+", help="layers for top patches (default: three depths)")
    p.add_argument("--units", type=int, default=6, help="channels 0..N-1 of each patch layer (6)")
    p.add_argument("--top-k", type=int, default=8, help="patches per unit (8)")
    p.add_argument("--patch-examples", type=int, default=1024,
                   help="evaluation examples searched for top patches (1024; 0: the whole split)")
    p.add_argument("--erf-images", type=int, default=8, help="images the ERF is averaged over (8)")
    p.add_argument("--gradcam-layer", help="layer for Grad-CAM (default: the last conv or block "
                   "with more than 1x1 outputs)")
    p.add_argument("--occlusion-patch", type=int, help="side of the grey square (image size / 8)")
    p.add_argument("--occlusion-stride", type=int, help="its step (half the patch)")
    p.add_argument("--class", dest="cls", type=int, help="class to explain (default: the true class "
                   "of evaluation images, the predicted class of --image files)")
    p.add_argument("--max-channels", type=int, default=64, help="channels per feature-map grid (64)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (64)")
    args, rest = p.parse_known_args(argv)
    overrides = config_io.split_overrides(rest, "--workdir or --weights, --step, --image, --layers, "
                                          "--out, the options in --help and --config.KEY=VALUE")
    if not args.weights and (args.model or args.config or args.knob):
        raise UserError("--model, --knob and --config go with --weights; a --workdir run has its own")
    for name in ("units", "top_k", "erf_images", "max_channels", "batch_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("patch_examples",):
        if getattr(args, name) < 0:
            raise UserError(f"--patch-examples must be 0 (whole split) or more, got {args.patch_examples}")
    for name in ("occlusion_patch", "occlusion_stride"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    return args, overrides


@dataclasses.dataclass
class Loaded:
    """A model with its variables and the config whose data settings feed it."""

    model: object
    variables: dict
    config: object
    label: str          # what the figures say the parameters are
    has_data: bool      # whether an evaluation split is on hand


def load(args: argparse.Namespace, overrides: Sequence[str]) -> Loaded:
    """The run's checkpoint at --step, or the weights file, with its config (one line if not)."""
    import jax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from cnnjax import evaluate
    from cnnjax.train.distributed import data_mesh

    if args.weights:  # read, and its data settings made, as eval --weights does
        weights, config = evaluate.weights_and_config(args, overrides)
        if args.data:
            with config.data.ignore_type():
                config.data.eval_source = args.data
        return Loaded(weights.module, jax.device_get(weights.variables), config,
                      f"{weights.model} from {pathlib.Path(args.weights).name}",
                      bool(args.data or args.config))
    from cnnjax.train.metrics import read_metrics

    run = evaluate.open_run(args.workdir, overrides)
    config = run.config
    if args.data:
        with config.data.ignore_type():
            config.data.eval_source = args.data
    evaluate.resolve_step(args.step, run.steps, read_metrics(run.workdir), config.best_metric,
                          config.best_mode)  # a wrong --step is refused before the model is built
    num_classes = int(config.data.num_classes) or _num_classes(config)
    with config.model.ignore_type():
        config.model.dtype = "float32"  # gradients and maps in full precision, whatever training used
    shape = (int(config.data.image_size),) * 2 + (int(config.data.channels),)
    model, abstract = evaluate.abstract_variables(config, shape, num_classes)
    step, state = evaluate.restore_step(run, args.step, model, abstract,
                                        NamedSharding(data_mesh(), P()))
    return Loaded(model, jax.device_get(state.variables()), config,
                  f"{config.model.name} at step {step} of {run.workdir}", True)


def _num_classes(config) -> int:
    from cnnjax import data

    try:
        return data.dataset_info(config.data, config.data.eval_split).num_classes
    except (ValueError, FileNotFoundError, OSError):
        raise UserError("the run's config has data.num_classes=0 and its dataset is not on hand to "
                        "say how many classes the model has; pass --config.data.num_classes=N") from None


def choose_layers(table: list[features.Layer], names: Sequence[str] | None, option: str
                  ) -> list[features.Layer]:
    """The layers named (all of them for 'all'; by default those outside a block), or one line with
    the valid names."""
    by_name = {t.name: t for t in table}
    if not names:
        return [t for t in table if not any(t.name.startswith(o.name + "/") for o in table)]
    if list(names) == ["all"]:
        return list(table)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UserError(f"{option}: no layer {', '.join(map(repr, unknown))} in this model; "
                        f"choose from: all, {', '.join(by_name)}")
    return [by_name[n] for n in names]


def main(argv: list[str]) -> int:
    args, overrides = parse_args(argv)
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    from cnnjax.train.workdir import check_writable

    check_writable(out, "write the figures into")
    loaded = load(args, overrides)
    data = loaded.config.data
    from cnnjax.predict import load_image

    images = [load_image(path, data) for path in args.image]  # every file read before any work
    if not images and not loaded.has_data:
        raise UserError("--weights without --data or --config needs --image FILE ...: no evaluation "
                        "split is on hand to take images from")
    shape = images[0].shape if images else (int(data.image_size),) * 2 + (int(data.channels),)
    _check_fits(loaded, shape)
    table = features.layers(loaded.model, shape)
    if not table:
        raise UserError(f"{loaded.label} has no convolution, pooling or block with a spatial output "
                        "to draw (a multilayer perceptron?)")
    chosen = choose_layers(table, args.layers, "--layers")
    deeper = choose_layers(table, args.filters, "--filters") if args.filters else []
    spatial = [t for t in table if t.output_shape[0] * t.output_shape[1] > 1 and t.kind != "Pool"]
    cam_layer = (choose_layers(table, [args.gradcam_layer], "--gradcam-layer")[0]
                 if args.gradcam_layer else (spatial or table)[-1])
    patch_layers = (choose_layers(table, args.patch_layers, "--patch-layers") if args.patch_layers
                    else [chosen[i] for i in sorted({0, len(chosen) // 2, len(chosen) - 1})])
    for t in deeper:
        if t.kind != "Conv":
            raise UserError(f"--filters: {t.name} is a {t.kind}, which has no kernel; conv layers: "
                            + ", ".join(c.name for c in table if c.kind == "Conv"))
    classes = getattr(loaded.model, "num_classes", None)
    if args.cls is not None and classes and not 0 <= args.cls < classes:
        raise UserError(f"--class {args.cls} is not a class of this model: 0 to {classes - 1}")
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # SIGTERM (kill, a scheduler's time limit) unwinds like Ctrl-C, so the partial folder goes too
    previous = signal.signal(signal.SIGTERM, _exit_on_term)
    try:
        from cnnjax.visualize.run import Job

        Job(args, loaded, images, table, chosen, deeper, cam_layer, patch_layers, tmp).run()
        _publish(tmp, out)
    finally:
        signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {out / 'index.html'}")
    return 0


def _check_fits(loaded: Loaded, shape: tuple[int, ...]) -> None:
    """One line when the variables do not take images of `shape` (H, W, C), e.g. an RGB ImageNet
    config in front of a grayscale model; checked abstractly (jax.eval_shape)."""
    import flax
    import jax

    x = jax.ShapeDtypeStruct((1, *shape), jax.numpy.float32)
    try:
        jax.eval_shape(lambda v, x: loaded.model.apply(v, x, train=False), loaded.variables, x)
    except (flax.errors.FlaxError, TypeError, ValueError) as e:
        detail = str(e).splitlines()[0].split(" (https:")[0] if str(e) else type(e).__name__
        raise UserError(f"images of {'x'.join(map(str, shape))} (the data settings of "
                        f"{'the config' if loaded.has_data else 'ImageNet evaluation'}) do not fit "
                        f"{loaded.label}: {detail}; give --config with the model's data settings"
                        ) from None


def _exit_on_term(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _publish(tmp: pathlib.Path, out: pathlib.Path) -> None:
    """Moves the finished files into --out: all at once where it does not exist yet, else file by
    file (each os.replace is atomic), index.html last so that it never links to a missing figure."""
    if not out.exists():
        os.replace(tmp, out)
        return
    names = sorted(p.name for p in tmp.iterdir())
    names.sort(key=lambda n: n == "index.html")
    for name in names:
        os.replace(tmp / name, out / name)

