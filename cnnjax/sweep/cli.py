"""The `sweep` command: run a config file's sweep, report on a sweep folder, summarize it.

    ./launch.sh CONFIG.py[:ARG] --sweep [--workdir SWEEP_DIR] [--parallel N] [--devices-per-run K]
                                        [--dry-run] [--backend local|slurm (--slurm) [its options]]
                                        [--config.KEY=VALUE ...]
    ./launch.sh sweep status SWEEP_DIR        finished / failed / running / pending, progress and
                                              ETA per point, the time left for the sweep
    ./launch.sh sweep summarize SWEEP_DIR     the same as ./launch.sh summarize SWEEP_DIR

The points run where the chosen backend runs them (cnnjax.sweep.backends: this machine, or one Slurm
array job). Every point trains in its own process (`python -m cnnjax.cli train CONFIG --workdir
SWEEP_DIR/<name> --config.k=v ...`); this process only resolves configs (building the model modules to check
their knobs, without allocating or compiling anything). Points are named by their overrides
(cnnjax.sweep.points.point_name). Running the sweep again skips the points whose metrics.jsonl reached
the last step and resumes the others (training resumes by itself from the newest checkpoint). Every
point is validated against the config before anything starts.

Exit status: a run is 0 when every point finished and 1 when any failed (each failure is named with
its last log line); `status` is 1 when any point failed, else 0 (also while some run or wait); 2 stays
the usage-error status of the CLI.
"""

from __future__ import annotations

import argparse
import pathlib

from cnnjax import config as config_io
from cnnjax.errors import UserError, unknown_name
from cnnjax.sweep import slurm, status
from cnnjax.sweep.backends import BACKENDS, DEFAULT
from cnnjax.sweep.plan import default_sweep_dir, make_plan

SUBCOMMANDS = ("status", "summarize")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(args, base overrides as 'key=value') from the command line; the options of a backend that is
    not chosen, and those the chosen one cannot honour, are refused in one line."""
    parser = argparse.ArgumentParser(prog="./launch.sh CONFIG.py[:ARG] --sweep",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Run every point of the config's get_sweep(), "
                                     "locally or as a Slurm array job. A sweep folder's state and "
                                     "results: ./launch.sh sweep status|summarize SWEEP_DIR.",
                                     epilog="examples:\n"
                                     "  ./launch.sh configs/lenet5_activation_sweep.py --sweep --dry-run\n"
                                     "  ./launch.sh configs/lenet5_activation_sweep.py --sweep --parallel 2\n"
                                     "  ./launch.sh configs/lenet5_activation_sweep.py --sweep --slurm "
                                     '--slurm-args "--partition=gpu --gres=gpu:1"\n'
                                     "  ./launch.sh sweep status workdirs/lenet5_activation_sweep\n"
                                     "  ./launch.sh sweep summarize workdirs/lenet5_activation_sweep "
                                     "--metric train/loss")
    parser.add_argument("config", help="config file defining get_sweep(), optionally with :ARG")
    parser.add_argument("--sweep", action="store_true", help="(what routes here from ./launch.sh)")
    parser.add_argument("--workdir", help="the sweep folder; each point trains in a subfolder "
                        "(default: workdirs/<config name>_sweep)")
    parser.add_argument("--parallel", type=int, default=1, help="points run side by side (default 1)")
    parser.add_argument("--devices-per-run", type=int, default=0,
                        help="GPUs (or CPU devices) per point; default: the visible ones shared out")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the commands (or write and print the sbatch script); run nothing")
    parser.add_argument("--backend", default=DEFAULT, metavar="|".join(BACKENDS),
                        help=f"where the points run (default {DEFAULT}): " + "; ".join(
                            f"{b.name}: {b.description}" for b in BACKENDS.values()))
    owner = {}
    for backend in BACKENDS.values():
        if backend.name != DEFAULT:
            parser.add_argument(f"--{backend.name}", dest="backend", action="store_const",
                                const=backend.name, help=f"the same as --backend {backend.name}")
        owner.update(dict.fromkeys(backend.add_arguments(parser), backend.name))
    args, rest = parser.parse_known_args(argv)
    overrides = config_io.split_overrides(rest, "--workdir, --parallel, --devices-per-run, --dry-run, "
                                          "--backend, its options and --config.KEY=VALUE")
    if args.backend not in BACKENDS:
        raise unknown_name("sweep backend", args.backend, list(BACKENDS))
    if args.parallel < 1:
        raise UserError(f"--parallel must be at least 1, got {args.parallel}")
    if args.devices_per_run < 0:
        raise UserError(f"--devices-per-run must be positive, got {args.devices_per_run}")
    for dest, name in owner.items():
        if name != args.backend and getattr(args, dest) != parser.get_default(dest):
            raise UserError(f"--{dest.replace('_', '-')} needs --{name}")
    BACKENDS[args.backend].check(args)
    return args, overrides


def run(argv: list[str]) -> int:
    """`./launch.sh CONFIG.py --sweep ...`: plan (every point validated), then hand the plan to the
    chosen backend (cnnjax.sweep.backends), which runs or submits it."""
    args, base = parse_args(argv)
    backend = BACKENDS[args.backend]
    sweep_dir = pathlib.Path(args.workdir) if args.workdir else default_sweep_dir(args.config)
    plan = make_plan(args.config, base, sweep_dir, absolute=backend.absolute_paths)
    finished = sum(r.status == status.FINISHED for r in plan)
    print(f"sweep {args.config}: {len(plan)} points in {sweep_dir} "
          f"({finished} finished, {sum(r.status == status.PARTIAL for r in plan)} to resume, "
          f"{sum(r.status == status.NEW for r in plan)} new)")
    return backend.run(plan, sweep_dir, args.config, base, args)


def status_main(argv: list[str]) -> int:
    """`./launch.sh sweep status DIR`: one line per point; 1 when any point failed."""
    parser = argparse.ArgumentParser(prog="./launch.sh sweep status",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Where each point of a sweep stands: finished, "
                                     "failed (and why), running or pending, with its progress and "
                                     "ETA, and the time left for the whole sweep.",
                                     epilog="example:\n"
                                     "  ./launch.sh sweep status workdirs/lenet5_activation_sweep")
    parser.add_argument("sweep_dir", help="the sweep folder (the --workdir of the sweep)")
    args = parser.parse_args(argv)
    sweep_dir = pathlib.Path(args.sweep_dir)
    states = status.read_sweep(sweep_dir, slurm_lookup=slurm.task_states)
    print(status.report(states, sweep_dir, parallel=status.recorded_parallel(sweep_dir)), end="")
    return 1 if status.counts(states)[status.FAILED] else 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "status":
        return status_main(argv[1:])
    if argv and argv[0] == "summarize":
        from cnnjax.sweep import summarize

        return summarize.main(argv[1:])
    if argv and not argv[0].startswith("-") and not argv[0].partition(":")[0].endswith(".py"):
        # neither a subcommand nor a config file: a misspelt subcommand, not a config to load
        raise unknown_name("sweep subcommand", argv[0], SUBCOMMANDS,
                           "; a sweep runs with ./launch.sh CONFIG.py --sweep")
    return run(argv)
