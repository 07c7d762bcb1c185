"""Command line of the weight converter (also `python -m cnnjax.convert ...`).

    ./launch.sh convert export --workdir DIR [--step best|latest|N] --out FILE.safetensors|.npz|.pth
        a cnnjax run's checkpoint (--step as in eval and predict; default the latest) as a
        torchvision-named state dict; each batch norm's num_batches_tracked is the checkpoint's step
    ./launch.sh convert export --weights FILE [--model NAME] --out FILE.safetensors|.npz|.pth
        any weights file cnnjax reads (an .npz of `convert import`, which records its model, or a
        state dict, which needs --model) in torch names, with the buffers it holds
    ./launch.sh convert import FILE.pth|.safetensors|.npz [--model NAME] [--knob K=V ...]
            --out FILE.npz
        checks that a torch state dict fits model NAME and writes its cnnjax variables, one array
        per 'params/conv1/kernel'-style path, with a record of the model and its knobs (see
        cnnjax.convert.record); knobs a state dict cannot show (googlenet_torchvision's
        transform_input) must be passed. An imported .npz without a record (written before
        records) re-imports into one with --model and those knobs.
    ./launch.sh convert models
        the supported model names

User errors end in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import traceback
from typing import Any

from cnnjax.convert.io import ConvertError
from cnnjax.convert.record import parse_knob


def export(workdir: pathlib.Path, out: pathlib.Path, step: str = "latest") -> str:
    """Writes the checkpoint of `workdir` that --step `step` names ('latest', 'best' or a number,
    as in eval and predict: cnnjax.evaluate.read_step) to `out` in torch names; num_batches_tracked
    is the step (one batch-norm update per training step)."""
    from cnnjax.convert import save_state_dict, spec_for, variables_to_torch
    from cnnjax.convert.io import check_suffix
    from cnnjax.evaluate.restore import open_run, read_step

    check_suffix(out)  # before anything is read
    run = open_run(workdir)
    spec_for(run.config.model.name)  # a model the converter does not know, before reading arrays
    step_number, arrays = read_step(run, step)
    variables = {"params": arrays["params"]}
    if arrays.get("batch_stats"):
        variables["batch_stats"] = arrays["batch_stats"]
    name = run.config.model.name
    state = variables_to_torch(variables, name, num_batches_tracked=step_number)
    save_state_dict(state, out)
    return f"wrote {len(state)} tensors of {name} (step {step_number}) to {out}"


def export_weights(path: pathlib.Path, out: pathlib.Path, model: str | None,
                   knobs: dict[str, Any]) -> str:
    """Writes the weights file `path` (any that cnnjax reads: an .npz of convert import, or a state
    dict in .pth/.pt, .safetensors or .npz, which needs `model`) to `out` in torch names, with the
    torch buffers (num_batches_tracked) it holds."""
    from cnnjax.convert import read_weights, save_state_dict, variables_to_torch
    from cnnjax.convert.io import check_suffix

    check_suffix(out)
    weights = read_weights(path, model, **knobs)
    state = variables_to_torch(weights.variables, weights.model, weights.buffers)
    save_state_dict(state, out)
    return f"wrote {len(state)} tensors of {weights.model} to {out}"


def import_(path: pathlib.Path, model: str | None, knobs: dict[str, Any],
            out: pathlib.Path) -> str:
    """Converts the torch state dict in `path` for `model` and writes the variables, with the
    record of the model and knobs they fit and torch's buffers, to `out`."""
    from cnnjax.convert import read_weights, record, spec_for

    if out.suffix.lower() != ".npz":
        raise ConvertError(f"--out must name an .npz file for the cnnjax variables; got {str(out)!r}")
    weights = read_weights(path, model, **knobs)
    written = weights.record
    record.write_imported(out, written, weights.variables, weights.buffers)
    stated = ", ".join(f"{k}={v!r}" for k, v in written["knobs"].items()
                       if k == "num_classes" or k in spec_for(weights.model).unstated
                       or k in knobs)
    return (f"wrote {len(record.flatten(weights.variables))} arrays of {weights.model} ({stated}) "
            f"to {out}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="./launch.sh convert",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Convert weights between PyTorch and cnnjax.",
                                     epilog="examples:\n"
                                     "  ./launch.sh convert export --workdir workdirs/r20 --out "
                                     "r20.safetensors\n"
                                     "  ./launch.sh convert import resnet18.pth --model resnet18 --out "
                                     "r18.npz\n"
                                     "  ./launch.sh convert models\n"
                                     "  ./launch.sh convert export --help (each subcommand's options)")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="a run's checkpoint, or imported weights, as a torchvision "
                        "state dict", formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="examples:\n"
                        "  ./launch.sh convert export --workdir workdirs/r20 --out r20.safetensors\n"
                        "  ./launch.sh convert export --weights g.npz --out googlenet.pth")
    source = ex.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", type=pathlib.Path)
    source.add_argument("--weights", type=pathlib.Path, help="a weights file: an .npz written by "
                        "convert import, or a state dict (.pth/.pt, .safetensors, .npz) with --model")
    ex.add_argument("--step", help="with --workdir: checkpoint step N, 'best' (by the run's "
                    "best_metric) or 'latest' (default), as in eval and predict")
    ex.add_argument("--model", help="with --weights: the model a state dict holds (an .npz of "
                    "convert import records it)")
    ex.add_argument("--knob", action="append", default=[], metavar="KEY=VALUE",
                    help="with --weights: a model knob a state dict cannot show (repeatable)")
    ex.add_argument("--out", required=True, type=pathlib.Path,
                    help="output file: .safetensors, .npz, or .pth (needs torch)")
    im = sub.add_parser("import", help="a torch state dict as cnnjax variables (.npz)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="examples:\n"
                        "  ./launch.sh convert import resnet18.pth --model resnet18 --out r18.npz\n"
                        "  ./launch.sh convert import googlenet.pth --model googlenet_torchvision "
                        "--knob transform_input=True --out g.npz")
    im.add_argument("file", type=pathlib.Path)
    im.add_argument("--model", help="supported model name (see 'models'); may be left out for an "
                    "imported .npz, which records it")
    im.add_argument("--knob", action="append", default=[], metavar="KEY=VALUE",
                    help="model knob, e.g. dtype=bfloat16 (repeatable)")
    im.add_argument("--out", required=True, type=pathlib.Path)
    sub.add_parser("models", help="list the supported model names")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns the exit status (0, or 2 after a one-line user error)."""
    from cnnjax.errors import is_user_error, traceback_requested

    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "export" and args.weights:
            if args.step is not None:
                raise ConvertError("--step goes with --workdir; a weights file has one state")
            knobs = dict(parse_knob(k) for k in args.knob)
            message = export_weights(args.weights, args.out, args.model, knobs)
        elif args.command == "export":
            if args.model or args.knob:
                raise ConvertError("--model and --knob go with --weights; a --workdir run records "
                                   "its model")
            message = export(args.workdir, args.out, "latest" if args.step is None else args.step)
        elif args.command == "import":
            knobs = dict(parse_knob(k) for k in args.knob)
            message = import_(args.file, args.model, knobs, args.out)
        else:
            from cnnjax.convert import supported_models

            message = "\n".join(supported_models())
    except Exception as e:
        if not is_user_error(e):
            raise
        if traceback_requested():
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(message)
    return 0
