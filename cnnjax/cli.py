"""The command line behind ./launch.sh: one table of every command (COMMANDS), the usage listing
printed from it, the dispatch to each tool's main(argv), and one-line errors.

    python -m cnnjax.cli COMMAND [args]     (./launch.sh COMMAND [args]; ./launch.sh help lists them)

`./launch.sh` runs `test` and `bench` itself and hands everything else here, the listing included, so
the table below is the only list of commands. A misspelt command says which one was meant. Every user
error ends in one line on stderr and exit status 2; nothing is lost or overwritten.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import pathlib
import sys
import traceback
import warnings

import ml_collections

from cnnjax import config as config_lib
from cnnjax.errors import EXIT_FINISHED, EXIT_PREEMPTED, UserError, unknown_name
from cnnjax.train import environment
from cnnjax.train import workdir as workdir_lib


@dataclasses.dataclass(frozen=True)
class Command:
    """One command of ./launch.sh: what it does, the module whose main(argv) runs it (None: run by
    launch.sh itself, or by this module), and its arguments where no parser of its own says them."""

    description: str
    module: str | None = None
    args: str = ""


COMMANDS: dict[str, Command] = {
    "train": Command("train a config file's model (`train` may be left out); --sweep runs its "
                     "get_sweep()"),
    "test": Command("ruff, then the test suite (pytest)", args="[PYTEST_ARGS ...]"),
    "bench": Command("a benchmark script, benchmarks/NAME.py (benchmarks/README.md)",
                     args="NAME [args]"),
    "eval": Command("evaluate a run's checkpoints or a weights file", "cnnjax.evaluate"),
    "predict": Command("top-k classes of image files under a trained run", "cnnjax.predict"),
    "summary": Command("a model's layers, parameters, multiply-adds and knobs (nothing allocated)",
                       "cnnjax.summary"),
    "summarize": Command("a sweep's results table and figure", "cnnjax.sweep.summarize"),
    "sweep": Command("a sweep folder's points: where each stands, or its results (run one with "
                     "CONFIG.py --sweep)", "cnnjax.sweep.cli"),
    "convert": Command("weights between PyTorch state dicts and cnnjax", "cnnjax.convert.cli"),
    "visualize": Command("filters, feature maps, receptive fields and attribution of a trained "
                         "network", "cnnjax.visualize.cli"),
    "help": Command("this list, or a command's --help (help COMMAND)"),
}
# Examples of the commands whose help is not an argparse parser's (run by launch.sh).
EXAMPLES = {
    "test": ["./launch.sh test tests/ops -q -x", "./launch.sh test -k summary"],
    "bench": ["./launch.sh bench ops", "./launch.sh bench train_step --help"],
}
REPO = pathlib.Path(__file__).resolve().parents[1]
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
    parser = argparse.ArgumentParser(
        prog="./launch.sh CONFIG.py[:ARG]", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train the model of a config file. Any config key can be changed with "
        "--config.KEY=VALUE (a misspelt key lists the valid ones); --sweep runs every point of the "
        "file's get_sweep() instead (./launch.sh CONFIG.py --sweep --help).",
        epilog="examples:\n"
        "  ./launch.sh configs/lenet5_mnist.py:smoke\n"
        "  ./launch.sh configs/resnet_cifar.py:resnet20 --workdir workdirs/r20 --config.batch_size=256\n"
        "  ./launch.sh configs/lenet5_mnist.py --config.model.activation=relu "
        "--config.schedule.base_lr=0.05\n"
        "  ./launch.sh configs/lenet5_activation_sweep.py --sweep --dry-run")
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


def usage() -> str:
    """The listing of every command, one line each, from COMMANDS."""
    rows = [("CONFIG.py[:ARG]" if name == "train" else name, c) for name, c in COMMANDS.items()]
    width = max(len(label) for label, _ in rows)
    lines = ["usage: ./launch.sh COMMAND [args]; ./launch.sh COMMAND --help gives its options and "
             "examples", ""]
    lines += [f"  {label:<{width}}  {c.description}" for label, c in rows]
    return "\n".join(lines) + "\n"


def benchmarks() -> list[str]:
    """The names ./launch.sh bench takes: the scripts in the checkout's benchmarks/."""
    return sorted(p.stem for p in (REPO / "benchmarks").glob("*.py"))


def _launcher_help(name: str) -> str:
    """--help of a command launch.sh runs itself (test, bench)."""
    text = (f"usage: ./launch.sh {name} {COMMANDS[name].args}\n\n{COMMANDS[name].description}\n")
    if name == "bench":
        text += f"\nNAME is one of: {', '.join(benchmarks())}\n"
    return text + "\nexamples:\n" + "".join(f"  {e}\n" for e in EXAMPLES[name])


def _launcher_command(name: str, rest: list[str]) -> int:
    """`test` and `bench` reach Python only for their help or a bad benchmark name (launch.sh runs
    them); run directly, they say where they run."""
    if not rest or rest[0] in ("-h", "--help"):
        print(_launcher_help(name), end="", file=sys.stdout if rest else sys.stderr)
        return 0 if rest else 2
    if name == "bench" and rest[0] not in benchmarks():
        raise unknown_name("benchmark", rest[0], benchmarks())
    raise UserError(f"{name} runs through launch.sh: ./launch.sh {name} {' '.join(rest)}")


def _help(rest: list[str]) -> int:
    """`help`: the listing; `help COMMAND`: that command's --help."""
    if not rest:
        print(usage(), end="")
        return 0
    return main([rest[0], "--help"])


@contextlib.contextmanager
def _one_line_usage_errors():
    """Every tool's argparse usage error (a missing argument, a bad choice) as one UserError line that
    names the tool's --help, instead of argparse's usage block; only while a command runs here."""
    def error(parser: argparse.ArgumentParser, message: str):
        raise UserError(f"{parser.prog}: {message} (see {parser.prog} --help)")

    original = argparse.ArgumentParser.error
    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="", file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    warnings.formatwarning = _one_line_warning
    sys.unraisablehook = _quiet_unraisable
    try:
        with _one_line_usage_errors():
            return _dispatch(command, rest)
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


def _dispatch(command: str, rest: list[str]) -> int:
    """Runs `command` with its arguments `rest`; returns its exit status."""
    if command not in COMMANDS:
        raise unknown_name("command", command, list(COMMANDS), "; a config file to train ends in .py")
    if command == "help":
        return _help(rest)
    if command in ("test", "bench"):
        return _launcher_command(command, rest)
    if command == "train" and "--sweep" in rest:  # ./launch.sh CONFIG.py --sweep ...
        return importlib.import_module(COMMANDS["sweep"].module).main(rest)
    if command == "train":
        return train(rest)
    if command in WORKDIR_NUMERICS:
        _apply_workdir_xla_flags(rest)
    module = importlib.import_module(COMMANDS[command].module)
    _check_subcommand(command, module, rest)
    return module.main(rest)


def _check_subcommand(command: str, module, rest: list[str]) -> None:
    """A misspelt subcommand of a tool built on argparse subparsers (convert) in one line with the
    closest name, instead of argparse's usage and choice list."""
    make_parser = getattr(module, "_parser", None)
    if not rest or rest[0].startswith("-") or make_parser is None:
        return
    choices = [name for action in make_parser()._actions
               if isinstance(action, argparse._SubParsersAction) for name in action.choices]
    if choices and rest[0] not in choices:
        raise unknown_name(f"{command} subcommand", rest[0], choices)


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
