"""The command line behind ./launch.sh: train, summary, and the tools of later issues.

    python -m cnnjax.cli train CONFIG.py[:ARG] [--workdir DIR] [--config.KEY=VALUE ...]
    python -m cnnjax.cli summary MODEL [--input 224x224x3] [--KNOB=VALUE ...]
    python -m cnnjax.cli visualize --workdir DIR [--step N] [--image FILE ...] [--layers ...] --out DIR

Every user error ends in one line on stderr and exit status 2; nothing is lost or overwritten.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys
import traceback
import warnings

import ml_collections

from cnnjax import config as config_lib
from cnnjax.errors import EXIT_FINISHED, EXIT_PREEMPTED, UserError
from cnnjax.train import environment
from cnnjax.train import workdir as workdir_lib

# Tools that own their argument parsing: command -> module with main(argv) -> int.
TOOLS = {"summary": "cnnjax.summary", "eval": "cnnjax.evaluate", "predict": "cnnjax.predict",
         "sweep": "cnnjax.sweep.cli", "summarize": "cnnjax.sweep.summarize",
         "convert": "cnnjax.convert.cli", "visualize": "cnnjax.visualize.cli"}
COMMANDS = ("train", *TOOLS)
# Tools that compute with a workdir's model: they get the XLA flags its run chose (config.json).
WORKDIR_NUMERICS = ("eval", "predict")
DECODER_LOG = "decoder_messages.log"  # libjpeg's and libpng's own lines (cnnjax.stderr_filter)


def default_workdir(config_spec: str) -> pathlib.Path:
    """workdirs/<config file stem>[_<arg>] under the current directory."""
    path, _, arg = config_spec.partition(":")
    name = pathlib.Path(path).stem + (f"_{arg}" if arg else "")
    return pathlib.Path("workdirs") / name


def parse_train_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(args, overrides) with overrides as 'key=value' strings from --config.key=value."""
    parser = argparse.ArgumentParser(prog="./launch.sh CONFIG.py[:ARG]",
                                     description="Train the model of a config file.")
    parser.add_argument("config", help="config file, optionally with :ARG for its get_config(arg)")
    parser.add_argument("--workdir", help="where checkpoints, metrics and the config go "
                        "(default: workdirs/<config name>); an existing one is resumed")
    args, rest = parser.parse_known_args(argv)
    return args, config_lib.split_overrides(rest, "--workdir and --config.KEY=VALUE")


def train(argv: list[str]) -> int:
    args, overrides = parse_train_args(argv)
    workdir = pathlib.Path(args.workdir) if args.workdir else default_workdir(args.config)
    config = _check_before_imports(args.config, overrides, workdir)
    # XLA reads XLA_FLAGS once, when JAX starts its backends: set them (or refuse a contradicting
    # hand-set flag) before the heavy imports; train_and_evaluate's own call then changes nothing.
    environment.apply_xla_flags(config)

    from cnnjax.train.loop import train_and_evaluate  # heavy imports only once the config is valid

    result = train_and_evaluate(config, workdir, checked=True)
    return EXIT_PREEMPTED if getattr(result, "preempted", False) else EXIT_FINISHED


def _check_before_imports(spec: str, overrides: list[str], workdir_path: pathlib.Path
                          ) -> ml_collections.ConfigDict:
    """The config of `spec` with the overrides, checked once (cnnjax.config.checked_config: every
    value, the model's knobs, the training and evaluation splits, the batch against the training
    split where its size is cheap to read), and the workdir's lock, before JAX's backends and
    TensorFlow load. train_and_evaluate then adds only what needs the devices."""
    config = config_lib.checked_config(spec, overrides, splits=True)
    workdir_lib.probe_lock(workdir_path)
    return config


def _apply_workdir_xla_flags(argv: list[str]) -> None:
    """XLA_FLAGS as the run in the command's --workdir chose them (config.xla_cpu_conv), before JAX
    starts its backends (in a process where they run already, nothing would change); nothing when
    the command names no workdir (the tool then says so)."""
    workdir = _workdir_arg(argv)
    if workdir is None or environment.backends_started():
        return
    try:
        choice = environment.xla_choice_of_workdir(workdir)
    except UserError:
        return  # an unreadable config.json: the tool itself reports it in one line
    if choice:
        environment.apply_xla_flags(choice)


def _workdir_arg(argv: list[str]) -> pathlib.Path | None:
    """The value of --workdir DIR or --workdir=DIR in `argv`, if any."""
    for i, item in enumerate(argv):
        if item == "--workdir" and i + 1 < len(argv):
            return pathlib.Path(argv[i + 1])
        if item.startswith("--workdir="):
            return pathlib.Path(item.partition("=")[2])
    return None


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings (a skipped image, ...) as one 'warning: ...' line, without Python's source excerpt."""
    return f"warning: {message}\n"


def _quiet_unraisable(unraisable, _default=sys.unraisablehook) -> None:
    """Drops asyncio's 'Event loop is closed' from Orbax's threads at shutdown after a failed save
    (already reported in one line); anything else is reported as Python would."""
    if isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(
            unraisable.exc_value):
        return
    _default(unraisable)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    warnings.formatwarning = _one_line_warning
    sys.unraisablehook = _quiet_unraisable
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; expected a config file (*.py) or one of "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        if command == "train" and "--sweep" in rest:  # ./launch.sh CONFIG.py --sweep ...
            return importlib.import_module(TOOLS["sweep"]).main(rest)
        if command == "train":
            return train(rest)
        if command in WORKDIR_NUMERICS:
            _apply_workdir_xla_flags(rest)
        return importlib.import_module(TOOLS[command]).main(rest)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # user-facing errors: one line; programming errors keep their traceback
        from cnnjax.errors import EXIT_DIVERGED, TrainingDivergedError, is_user_error, traceback_requested

        if not is_user_error(e):
            raise
        if traceback_requested():
            traceback.print_exc()
        for line in str(e).splitlines() or [type(e).__name__]:  # one line per problem
            print(f"error: {line}", file=sys.stderr)
        return EXIT_DIVERGED if isinstance(e, TrainingDivergedError) else 2


def _decoder_log(argv: list[str]) -> pathlib.Path | None:
    """Where the image decoders' messages go: DECODER_LOG in the command's workdir, if it names one."""
    workdir = _workdir_arg(argv)
    if workdir is not None:
        return workdir / DECODER_LOG
    if argv and argv[0] == "train" and len(argv) > 1:
        return default_workdir(argv[1]) / DECODER_LOG
    return None


if __name__ == "__main__":
    from cnnjax import stderr_filter

    stderr_filter.install(_decoder_log(sys.argv[1:]))
    sys.exit(main())
