"""The command line behind ./launch.sh: train, summary, and the tools of later issues.

    python -m cnnjax.cli train CONFIG.py[:ARG] [--workdir DIR] [--config.KEY=VALUE ...]
    python -m cnnjax.cli summary MODEL [--input 224x224x3] [--KNOB=VALUE ...]

Every user error ends in one line on stderr and exit status 2; nothing is lost or overwritten.
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys
import traceback

# Tools that own their argument parsing: command -> module with main(argv) -> int.
TOOLS = {"summary": "cnnjax.summary", "eval": "cnnjax.evaluate", "predict": "cnnjax.predict",
         "sweep": "cnnjax.sweep.cli", "summarize": "cnnjax.sweep.summarize",
         "convert": "cnnjax.convert.cli"}
COMMANDS = ("train", *TOOLS)


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
    from cnnjax.train import config_io

    return args, config_io.split_overrides(rest, "--workdir and --config.KEY=VALUE")


def train(argv: list[str]) -> int:
    from cnnjax.train import config_io

    args, overrides = parse_train_args(argv)
    config = config_io.resolve_config(args.config, overrides)
    workdir = pathlib.Path(args.workdir) if args.workdir else default_workdir(args.config)

    from cnnjax.train.loop import train_and_evaluate  # heavy imports only once the config is valid

    train_and_evaluate(config, workdir)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; expected a config file (*.py) or one of "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        if command == "train" and "--sweep" in rest:  # ./launch.sh CONFIG.py --sweep ...
            return importlib.import_module(TOOLS["sweep"]).main(rest)
        if command == "train":
            return train(rest)
        return importlib.import_module(TOOLS[command]).main(rest)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # user-facing errors: one line; programming errors keep their traceback
        from cnnjax.errors import is_user_error, traceback_requested

        if not is_user_error(e):
            raise
        if traceback_requested():
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
