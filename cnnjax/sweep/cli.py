"""The `sweep` command: run a config file's sweep, report on a sweep folder, summarize it.

    ./launch.sh CONFIG.py[:ARG] --sweep [--workdir SWEEP_DIR] [--parallel N] [--devices-per-run K]
                                        [--dry-run] [--slurm [--slurm-args "..."]] [--config.KEY=VALUE ...]
    ./launch.sh sweep status SWEEP_DIR        finished / failed / running / pending, per point
    ./launch.sh sweep summarize SWEEP_DIR     the same as ./launch.sh summarize SWEEP_DIR

Every point trains in its own process (`python -m cnnjax.cli train CONFIG --workdir SWEEP_DIR/<name>
--config.k=v ...`); this process only resolves configs (building the model modules to check
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
import os
import pathlib
import shlex

from cnnjax import config as config_io
from cnnjax.errors import UserError
from cnnjax.sweep import status
from cnnjax.sweep.devices import device_slots, visible_gpus
from cnnjax.sweep.plan import default_sweep_dir, make_plan, write_records

SUBCOMMANDS = ("status", "summarize")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(args, base overrides as 'key=value') from the command line."""
    parser = argparse.ArgumentParser(prog="./launch.sh CONFIG.py[:ARG] --sweep",
                                     description="Run every point of the config's get_sweep().",
                                     epilog="A sweep folder's state and results: ./launch.sh sweep "
                                     "status|summarize SWEEP_DIR")
    parser.add_argument("config", help="config file defining get_sweep(), optionally with :ARG")
    parser.add_argument("--sweep", action="store_true", help="(what routes here from ./launch.sh)")
    parser.add_argument("--workdir", help="the sweep folder; each point trains in a subfolder "
                        "(default: workdirs/<config name>_sweep)")
    parser.add_argument("--parallel", type=int, default=1, help="points run side by side (default 1)")
    parser.add_argument("--devices-per-run", type=int, default=0,
                        help="GPUs (or CPU devices) per point; default: the visible ones shared out")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the commands (or write and print the sbatch script); run nothing")
    parser.add_argument("--slurm", action="store_true", help="submit an sbatch array job instead")
    parser.add_argument("--slurm-args", default="",
                        help='extra sbatch options, e.g. "--partition=gpu --gres=gpu:4 --time=8:00:00"')
    args, rest = parser.parse_known_args(argv)
    overrides = config_io.split_overrides(rest, "--workdir, --parallel, --devices-per-run, --dry-run, "
                                          "--slurm, --slurm-args and --config.KEY=VALUE")
    if args.parallel < 1:
        raise UserError(f"--parallel must be at least 1, got {args.parallel}")
    if args.devices_per_run < 0:
        raise UserError(f"--devices-per-run must be positive, got {args.devices_per_run}")
    if args.slurm_args and not args.slurm:
        raise UserError("--slurm-args needs --slurm")
    if args.slurm and args.devices_per_run:
        raise UserError("with --slurm, ask for devices in --slurm-args (e.g. --gres=gpu:4), "
                        "not --devices-per-run")
    return args, overrides


def run(argv: list[str]) -> int:
    """`./launch.sh CONFIG.py --sweep ...`: plan, then run locally or submit to Slurm."""
    args, base = parse_args(argv)
    sweep_dir = pathlib.Path(args.workdir) if args.workdir else default_sweep_dir(args.config)
    plan = make_plan(args.config, base, sweep_dir, absolute=args.slurm)
    finished = sum(r.status == status.FINISHED for r in plan)
    print(f"sweep {args.config}: {len(plan)} points in {sweep_dir} "
          f"({finished} finished, {sum(r.status == status.PARTIAL for r in plan)} to resume, "
          f"{sum(r.status == status.NEW for r in plan)} new)")
    if args.slurm:
        from cnnjax.sweep.slurm import run_slurm

        if not args.dry_run:
            write_records(plan, sweep_dir, args.config, base)
        else:
            sweep_dir.mkdir(parents=True, exist_ok=True)
        return run_slurm(plan, sweep_dir, args.config, args.parallel, args.slurm_args, args.dry_run)

    slots = device_slots(args.parallel, args.devices_per_run, visible_gpus(),
                         sorted(os.sched_getaffinity(0)), os.environ.get("XLA_FLAGS", ""))
    if args.dry_run:
        print(f"{len(slots)} at a time on: " + " | ".join(s.describe() for s in slots))
        for run in plan:
            print(f"[{run.status}] {shlex.join(run.command)} >> {shlex.quote(str(run.log))} 2>&1")
        return 0
    from cnnjax.sweep.local import run_local

    write_records(plan, sweep_dir, args.config, base)
    failed = run_local(plan, slots)
    ran = len(plan) - finished
    print(f"sweep done: {ran} run ({ran - len(failed)} finished, {len(failed)} failed), {finished} "
          f"skipped as already finished; results: ./launch.sh summarize {sweep_dir}")
    for point, reason in failed:
        print(f"  FAILED {point.name}: {reason} [see {point.log}]")
    return 1 if failed else 0


def status_main(argv: list[str]) -> int:
    """`./launch.sh sweep status DIR`: one line per point; 1 when any point failed."""
    parser = argparse.ArgumentParser(prog="./launch.sh sweep status",
                                     description="Where each point of a sweep stands: finished, "
                                     "failed (and why), running or pending.")
    parser.add_argument("sweep_dir", help="the sweep folder (the --workdir of the sweep)")
    args = parser.parse_args(argv)
    sweep_dir = pathlib.Path(args.sweep_dir)
    states = status.read_sweep(sweep_dir)
    print(status.report(states, sweep_dir), end="")
    return 1 if status.counts(states)[status.FAILED] else 0


def main(argv: list[str]) -> int:
    if argv and argv[0] == "status":
        return status_main(argv[1:])
    if argv and argv[0] == "summarize":
        from cnnjax.sweep import summarize

        return summarize.main(argv[1:])
    return run(argv)
