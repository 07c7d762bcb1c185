"""Command line of the weight converter (also `python -m cnnjax.convert ...`).

    ./launch.sh convert export --workdir DIR [--step N] --out FILE.safetensors|.npz|.pth
        a cnnjax run's checkpoint (the latest, or step N) as a torchvision-named state dict; each
        batch norm's num_batches_tracked is the checkpoint's step
    ./launch.sh convert export --weights IMPORTED.npz --out FILE.safetensors|.npz|.pth
        weights `convert import` wrote, back in torch names, with the buffers they came with
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
import ast
import pathlib
import sys
import traceback
from typing import Any

from cnnjax.convert.io import ConvertError


def parse_knob(text: str) -> tuple[str, Any]:
    """'dtype=bfloat16' -> ('dtype', 'bfloat16'); values are Python literals where they parse."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConvertError(f"--knob takes KEY=VALUE (e.g. --knob dtype=bfloat16); got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def export(workdir: pathlib.Path, out: pathlib.Path, step: int | None) -> str:
    """Writes the checkpoint of `workdir` at `step` (default: the latest) to `out` in torch names;
    num_batches_tracked is the step (one batch-norm update per training step)."""
    from cnnjax.config import load_saved_config
    from cnnjax.convert import save_state_dict, variables_to_torch
    from cnnjax.train.checkpoint import Checkpoints

    config = load_saved_config(workdir)
    directory = workdir / "checkpoints"
    steps = Checkpoints(directory, read_only=True).all_steps() if directory.is_dir() else []
    if not steps:
        raise ConvertError(f"no checkpoint in {directory}: train the run first")
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise ConvertError(f"no checkpoint at step {step} in {directory}; available steps: {steps}")
    arrays = Checkpoints(directory, read_only=True).read_arrays(step)
    variables = {"params": arrays["params"]}
    if arrays.get("batch_stats"):
        variables["batch_stats"] = arrays["batch_stats"]
    state = variables_to_torch(variables, config.model.name, num_batches_tracked=step)
    save_state_dict(state, out)
    return f"wrote {len(state)} tensors of {config.model.name} (step {step}) to {out}"


def export_weights(path: pathlib.Path, out: pathlib.Path) -> str:
    """Writes the weights `convert import` wrote to `path` to `out` in torch names, with the
    num_batches_tracked they were imported with."""
    from cnnjax.convert import load_state_dict, read_weights, record, save_state_dict, variables_to_torch

    if record.RECORD_KEY not in load_state_dict(path):
        raise ConvertError(f"{path} does not record its model (a state dict, or imported before "
                           f"records): run convert import {path} --model NAME --out NEW.npz first")
    weights = read_weights(path)
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
                                     description="Convert weights between PyTorch and cnnjax.")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="a run's checkpoint, or imported weights, as a torchvision "
                        "state dict")
    source = ex.add_mutually_exclusive_group(required=True)
    source.add_argument("--workdir", type=pathlib.Path)
    source.add_argument("--weights", type=pathlib.Path, help="an .npz written by convert import")
    ex.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    ex.add_argument("--out", required=True, type=pathlib.Path,
                    help="output file: .safetensors, .npz, or .pth (needs torch)")
    im = sub.add_parser("import", help="a torch state dict as cnnjax variables (.npz)")
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
                raise ConvertError("--step goes with --workdir; imported weights have one state")
            message = export_weights(args.weights, args.out)
        elif args.command == "export":
            message = export(args.workdir, args.out, args.step)
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
