"""The Slurm backend: a sweep as an sbatch array job: the script, its submission, and what Slurm
says of its tasks.

Task i of the array trains point i. The script appends the point's output to its log.txt and leaves
the exit status in its exit_code file, also when Slurm ends the task with SIGTERM (scancel, time
limit); a task killed harder leaves none, which `./launch.sh sweep status` reports as a failure
once squeue no longer lists the task (with sacct's state where Slurm keeps accounting).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cnnjax.errors import UserError
from cnnjax.sweep import files, status

if TYPE_CHECKING:  # the plan imports the config machinery; the script writer itself needs none
    from cnnjax.sweep.plan import PointRun


# ---------------------------------------------------------------------------------------------------
# The script
# ---------------------------------------------------------------------------------------------------

def array_spec(indices: Sequence[int], throttle: int = 0) -> str:
    """Slurm's --array value for these task indices: [0,1,2,5,7,8] -> '0-2,5,7-8' (+ '%N' throttle)."""
    if not indices:
        raise UserError("no array tasks to submit")
    ranges, start = [], None
    ordered = sorted(set(indices))
    for i, index in enumerate(ordered):
        if start is None:
            start = index
        if i + 1 == len(ordered) or ordered[i + 1] != index + 1:
            ranges.append(str(start) if start == index else f"{start}-{index}")
            start = None
    spec = ",".join(ranges)
    return f"{spec}%{throttle}" if throttle > 0 else spec


def sbatch_script(*, job_name: str, array: str, output_pattern: str, cwd: str,
                  commands: Sequence[Sequence[str]], logs: Sequence[str],
                  header: Sequence[str] = (), env: Mapping[str, str] | None = None) -> str:
    """An sbatch array script: task i runs commands[i] through srun, appending to logs[i], and
    writes its exit status to exit_code beside logs[i].

    srun starts one process per Slurm task, so a point given several nodes or tasks (through
    --slurm-args, e.g. --nodes=2 --ntasks-per-node=1) runs as a multi-host job whose processes find
    each other with jax.distributed.initialize() (cnnjax.train.distributed reads SLURM_NTASKS).
    """
    exit_file, tmp = f'"$DIR/{files.EXIT_FILE}"', f'"$DIR/.{files.EXIT_FILE}.tmp"'
    lines = ["#!/bin/bash", *[f"# {h}" for h in header],
             f"#SBATCH --job-name={job_name}",
             f"#SBATCH --array={array}",
             f"#SBATCH --output={output_pattern}",
             "set -euo pipefail",
             f"cd {shlex.quote(cwd)}"]
    for key, value in (env or {}).items():
        lines.append(f"export {key}={shlex.quote(value)}")
    lines.append('case "$SLURM_ARRAY_TASK_ID" in')
    for i, (command, log) in enumerate(zip(commands, logs, strict=True)):
        lines.append(f"  {i}) LOG={shlex.quote(log)}; CMD=({shlex.join(command)}) ;;")
    lines += ['  *) echo "no sweep point with index $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
              "esac",
              'DIR="$(dirname "$LOG")"',
              'mkdir -p "$DIR"',
              f"rm -f {exit_file}",
              'echo "[$(date)] array task $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID '
              'on $(hostname): ${CMD[*]}" >>"$LOG"',
              "# Slurm ends a task (scancel, time limit) with SIGTERM to every process: the training "
              "saves and",
              "# exits, and this trap keeps the script alive until then to record the exit status.",
              'trap \'echo "[$(date)] array task $SLURM_ARRAY_TASK_ID: SIGTERM from Slurm '
              '(scancel or time limit)" >>"$LOG"\' TERM',
              "status=0",
              'srun --kill-on-bad-exit=1 "${CMD[@]}" >>"$LOG" 2>&1 || status=$?',
              f'echo "$status" >{tmp} && mv {tmp} {exit_file}',
              'exit "$status"']
    return "\n".join(lines) + "\n"


def slurm_script(plan: list[PointRun], sweep_dir: pathlib.Path, config_spec: str, array: str,
                 slurm_args: str) -> str:
    """The sbatch array script of the sweep (absolute paths, so it runs from any directory)."""
    sweep_dir = sweep_dir.absolute()
    script = sweep_dir / files.SBATCH_FILE
    submit = shlex.join(["sbatch", *shlex.split(slurm_args), str(script)])
    header = [f"cnnjax sweep of {config_spec}: {len(plan)} points, one array task each "
              "(unfinished points only).",
              f"Submitted with: {submit}",
              "Task i appends the output of point i's training to the log.txt in its folder."]
    return sbatch_script(
        job_name=f"cnnjax-{pathlib.Path(config_spec.partition(':')[0]).stem}",
        array=array, output_pattern=str(sweep_dir / files.SLURM_DIR / "%A_%a.out"),
        cwd=str(pathlib.Path.cwd()), commands=[r.command for r in plan],
        logs=[str(r.log.absolute()) for r in plan], header=header)


# ---------------------------------------------------------------------------------------------------
# Submission
# ---------------------------------------------------------------------------------------------------

def submit(script: pathlib.Path, slurm_args: str) -> str:
    """Submits with sbatch and returns the job id."""
    if shutil.which("sbatch") is None:
        raise FileNotFoundError("sbatch not found: Slurm is not installed here; --dry-run writes the "
                                "script without submitting it")
    result = subprocess.run(["sbatch", "--parsable", *shlex.split(slurm_args), str(script)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise UserError(f"sbatch refused {script}: {reason[-1] if reason else result.returncode}")
    return result.stdout.strip().split(";")[0]


def record_submission(sweep_dir: pathlib.Path, job: str, plan: list[PointRun],
                      indices: Sequence[int]) -> None:
    """Appends the job to slurm/jobs.jsonl (the status command's map from point to task) and clears
    the submitted points' last exit status, so a stale failure does not show while they wait."""
    line = json.dumps({"job": job, "indices": list(indices), "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    with (sweep_dir / files.SLURM_DIR / files.JOBS_FILE).open("a") as f:
        f.write(line + "\n")
    for index in indices:
        (plan[index].workdir / files.EXIT_FILE).unlink(missing_ok=True)


def run_slurm(plan: list[PointRun], sweep_dir: pathlib.Path, config_spec: str, parallel: int,
              slurm_args: str, dry_run: bool) -> int:
    """Writes the array script for the unfinished points and submits it (or prints it: dry_run)."""
    todo = [r.index for r in plan if r.status != status.FINISHED]
    if not todo:
        print(f"all {len(plan)} points have finished; nothing to submit")
        return 0
    text = slurm_script(plan, sweep_dir, config_spec,
                        array_spec(todo, parallel if parallel > 1 else 0), slurm_args)
    script = sweep_dir / files.SBATCH_FILE
    (sweep_dir / files.SLURM_DIR).mkdir(parents=True, exist_ok=True)
    script.write_text(text)
    if dry_run:
        print(f"# {script} (not submitted: --dry-run)")
        print(text, end="")
        return 0
    job = submit(script, slurm_args)
    record_submission(sweep_dir, job, plan, todo)
    print(f"submitted array job {job}: {len(todo)} of {len(plan)} points "
          f"(script {script}; logs in {sweep_dir}/<point>/{files.LOG_FILE}); "
          f"progress: ./launch.sh sweep status {sweep_dir}; "
          f"when done: ./launch.sh summarize {sweep_dir}")
    return 0


class SlurmBackend:
    """cnnjax.sweep.backends.Backend as one sbatch array job (--parallel throttles it); its commands
    use absolute paths, as Slurm may start them in another directory."""

    name = "slurm"
    description = "submit the points as one sbatch array job (--slurm-args for sbatch's options)"
    absolute_paths = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> list[str]:
        parser.add_argument("--slurm-args", default="", help='with --slurm: extra sbatch options, '
                            'e.g. "--partition=gpu --gres=gpu:4 --time=8:00:00"')
        return ["slurm_args"]

    def check(self, args: argparse.Namespace) -> None:
        if args.devices_per_run:
            raise UserError("with --slurm, ask for devices in --slurm-args (e.g. --gres=gpu:4), "
                            "not --devices-per-run")

    def run(self, plan: list[PointRun], sweep_dir: pathlib.Path, config_spec: str, base: list[str],
            args: argparse.Namespace) -> int:
        from cnnjax.sweep.plan import write_records  # the config machinery, only to run a sweep

        if args.dry_run:
            sweep_dir.mkdir(parents=True, exist_ok=True)
        else:
            # --parallel 1 leaves the array unthrottled: how many run at once is Slurm's call
            write_records(plan, sweep_dir, config_spec, base,
                          parallel=args.parallel if args.parallel > 1 else None)
        return run_slurm(plan, sweep_dir, config_spec, args.parallel, args.slurm_args, args.dry_run)


BACKEND = SlurmBackend()


# ---------------------------------------------------------------------------------------------------
# What Slurm says
# ---------------------------------------------------------------------------------------------------

def _output(command: list[str]) -> str | None:
    """stdout of a Slurm client command, or None when it is missing or fails."""
    if shutil.which(command[0]) is None:
        return None
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout if result.returncode == 0 else None


def task_states(tasks: Sequence[str]) -> tuple[dict[str, tuple[str, str]], bool]:
    """({task: (state, reason)} for the array tasks ('JOB_INDEX') Slurm knows, whether squeue answered).

    squeue lists the queued and running tasks (one line each with -r); sacct, where Slurm keeps
    accounting, gives the final state (TIMEOUT, CANCELLED, OUT_OF_MEMORY, ...) of those that ended.
    """
    wanted = set(tasks)
    states: dict[str, tuple[str, str]] = {}
    queue = _output(["squeue", "-h", "-r", "-o", "%i|%T|%r"])
    for line in (queue or "").splitlines():
        task, _, rest = line.strip().partition("|")
        state, _, reason = rest.partition("|")
        if task in wanted:
            states[task] = (state, reason)
    ended = wanted - set(states)
    if ended:
        jobs = ",".join(sorted({t.split("_")[0] for t in ended}))
        accounting = _output(["sacct", "-n", "-P", "-X", "-j", jobs, "-o", "JobID,State"])
        for line in (accounting or "").splitlines():
            task, _, state = line.strip().partition("|")
            if task in ended and state.split():
                states[task] = (state.split()[0], "")
    return states, queue is not None
