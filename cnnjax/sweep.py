"""Run the points of a config file's get_sweep(), locally side by side or as a Slurm array job.

    ./launch.sh CONFIG.py[:ARG] --sweep [--workdir SWEEP_DIR] [--parallel N] [--devices-per-run K]
                                        [--dry-run] [--slurm [--slurm-args "..."]] [--config.KEY=VALUE ...]

Every point trains in its own process (`python -m cnnjax.cli train CONFIG --workdir SWEEP_DIR/<name>
--config.k=v ...`), so this tool never imports jax. Points are named by their overrides
(cnnjax.sweeps_lib.point_name). Running the sweep again skips the points whose metrics.jsonl reached the
last step and resumes the others (training resumes by itself from the newest checkpoint). Every point is
validated against the config before anything starts. The exit status is 0 when every point finished
and 1 when any did not (the summary line counts them); 2 stays the usage-error status of the CLI.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import dataclasses
import inspect
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time

import ml_collections

from cnnjax import sweeps_lib
from cnnjax.errors import UserError
from cnnjax.train import config_io
from cnnjax.train.metrics import format_duration, read_metrics

POINT_FILE = "sweep_point.json"
SWEEP_FILE = "sweep.json"
LOG_FILE = "log.txt"
SBATCH_FILE = "sweep.sbatch"


@dataclasses.dataclass
class PointRun:
    """One point of the sweep: its overrides, folder, command and whether it already finished."""

    index: int
    name: str
    overrides: dict
    workdir: pathlib.Path
    command: list[str]
    status: str
    num_steps: int
    num_epochs: float

    @property
    def log(self) -> pathlib.Path:
        return self.workdir / LOG_FILE


@dataclasses.dataclass(frozen=True)
class Slot:
    """Where one running point is pinned: environment variables and CPU cores (None: all of them)."""

    env: dict
    cpus: frozenset | None = None

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.env.items()]
        if self.cpus is not None:
            parts.append(f"cpus {_ranges(sorted(self.cpus))}")
        return " ".join(parts) or "all devices"


def _ranges(ids: list[int]) -> str:
    return sweeps_lib.array_spec(ids) if ids else "none"


# ---------------------------------------------------------------------------------------------------
# Arguments and the plan
# ---------------------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(args, base overrides as 'key=value') from the command line."""
    parser = argparse.ArgumentParser(prog="./launch.sh CONFIG.py[:ARG] --sweep",
                                     description="Run every point of the config's get_sweep().")
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


def default_sweep_dir(config_spec: str) -> pathlib.Path:
    """workdirs/<config file stem>[_<arg>]_sweep under the current directory ("_sweep" once: a
    config named lenet5_activation_sweep.py sweeps into workdirs/lenet5_activation_sweep)."""
    path, _, arg = config_spec.partition(":")
    name = pathlib.Path(path).stem.removesuffix("_sweep") + (f"_{arg}" if arg else "")
    return pathlib.Path("workdirs") / f"{name}_sweep"


def load_points(config_spec: str) -> list[dict]:
    """The points of the config file's get_sweep() (called with the :ARG when it takes one)."""
    path, _, arg = config_spec.partition(":")
    module = config_io.load_module(path)
    get_sweep = getattr(module, "get_sweep", None)
    if get_sweep is None:
        raise UserError(f"config file {path!r} defines no get_sweep(); a sweep needs one that returns "
                        "a list of override dicts (see cnnjax.sweeps_lib)")
    takes_arg = len(inspect.signature(get_sweep).parameters) > 0
    return sweeps_lib.check_points(get_sweep(arg or None) if takes_arg else get_sweep())


def validated_config(config: ml_collections.ConfigDict, base: list[str], point: dict, index: int,
                     name: str) -> ml_collections.ConfigDict:
    """The config of one point (base overrides, then the point's), or one line saying what is wrong."""
    resolved = copy.deepcopy(config)
    try:
        config_io.apply_overrides(resolved, base)
        config_io.apply_overrides(resolved, [a[len("--config."):]
                                             for a in sweeps_lib.override_args(point)])
    except ValueError as e:
        raise config_io.ConfigError(f"sweep point {index} ({name}): {e}") from None
    return resolved


def has_checkpoints(workdir: pathlib.Path) -> bool:
    folder = workdir / "checkpoints"
    return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


def current_status(run: PointRun) -> str:
    return sweeps_lib.point_status(read_metrics(run.workdir), has_checkpoints(run.workdir),
                                   run.num_steps, run.num_epochs)


def make_plan(config_spec: str, base: list[str], sweep_dir: pathlib.Path,
              python: str = sys.executable, absolute: bool = False) -> list[PointRun]:
    """Every point validated, named and given its command and current status; nothing is written.

    `absolute` puts absolute paths in the commands (for a batch system that may start elsewhere).
    """
    points = load_points(config_spec)
    config = config_io.load_config(config_spec)
    names = sweeps_lib.point_names(points)
    if absolute:
        path, sep, arg = config_spec.partition(":")
        config_spec = str(pathlib.Path(path).absolute()) + sep + arg
        sweep_dir = sweep_dir.absolute()
    plan = []
    for index, (point, name) in enumerate(zip(points, names, strict=True)):
        resolved = validated_config(config, base, point, index, name)
        workdir = sweep_dir / name
        command = sweeps_lib.train_command(python, config_spec, str(workdir), base, point)
        run = PointRun(index, name, point, workdir, command, sweeps_lib.NEW,
                       int(resolved.num_steps), float(resolved.num_epochs))
        run.status = current_status(run)
        plan.append(run)
    return plan


def write_records(plan: list[PointRun], sweep_dir: pathlib.Path, config_spec: str,
                  base: list[str]) -> None:
    """sweep.json (the whole sweep) and each point's sweep_point.json, which summarize reads."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    points = [{"name": r.name, "overrides": r.overrides} for r in plan]
    (sweep_dir / SWEEP_FILE).write_text(json.dumps(
        {"config": config_spec, "base_overrides": base, "points": points}, indent=2, default=repr))
    for run in plan:
        run.workdir.mkdir(parents=True, exist_ok=True)
        (run.workdir / POINT_FILE).write_text(json.dumps(
            {"index": run.index, "name": run.name, "overrides": run.overrides,
             "command": run.command}, indent=2, default=repr))


# ---------------------------------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------------------------------

def visible_gpus(env: dict | None = None) -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        return [d.strip() for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in out.splitlines() if l.startswith("GPU "))]


def device_slots(parallel: int, per_run: int, gpus: list[str], cpus: list[int],
                 xla_flags: str = "") -> list[Slot]:
    """`parallel` disjoint places to run points.

    GPUs: each slot gets `per_run` GPUs through CUDA_VISIBLE_DEVICES (default: the visible GPUs shared
    out evenly). CPU only: each slot gets its own share of the cores (XLA sizes its thread pool by the
    cores a process may run on, so side-by-side runs do not oversubscribe), and per_run > 1 splits the
    host into that many XLA devices for data parallelism.
    """
    if gpus:
        if parallel == 1 and not per_run:
            return [Slot({})]
        per_run = per_run or len(gpus) // parallel
        if per_run < 1 or parallel * per_run > len(gpus):
            raise UserError(f"--parallel {parallel} x --devices-per-run {max(per_run, 1)} needs "
                            f"{parallel * max(per_run, 1)} GPUs; {len(gpus)} are visible "
                            f"({','.join(gpus)})")
        return [Slot({"CUDA_VISIBLE_DEVICES": ",".join(gpus[i * per_run:(i + 1) * per_run])})
                for i in range(parallel)]
    env = {}
    if per_run > 1:
        env["XLA_FLAGS"] = f"{xla_flags} --xla_force_host_platform_device_count={per_run}".strip()
    if parallel == 1 or parallel > len(cpus):
        return [Slot(dict(env)) for _ in range(parallel)]
    share = len(cpus) // parallel
    return [Slot(dict(env), frozenset(cpus[i * share:(i + 1) * share])) for i in range(parallel)]


# ---------------------------------------------------------------------------------------------------
# Running locally
# ---------------------------------------------------------------------------------------------------

def _last_line(path: pathlib.Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip()[:200] if lines else ""


def _result_text(run: PointRun) -> str:
    records = read_metrics(run.workdir)
    if not records:
        return ""
    step = max(int(r.get("step", 0)) for r in records)
    evals = [r for r in records if "eval/top1" in r]
    text = f"step {step}"
    if evals:
        text += f", eval/top1 {evals[-1]['eval/top1']:.2%}"
    return text


class _Say:
    """Numbered one-line status messages: '[3/6] name: what happened'."""

    def __init__(self, total: int):
        self.total = total
        self.width = len(str(total))

    def __call__(self, run: PointRun, text: str) -> None:
        print(f"[{run.index + 1:>{self.width}}/{self.total}] {run.name}: {text}", flush=True)


def _start(run: PointRun, slot: Slot, cwd: pathlib.Path) -> tuple[subprocess.Popen, object]:
    env = {**os.environ, **slot.env}  # a slot's XLA_FLAGS already include the inherited ones
    run.workdir.mkdir(parents=True, exist_ok=True)
    log = run.log.open("a")
    log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {slot.describe()} {shlex.join(run.command)}\n")
    log.flush()
    # Own session: Ctrl-C reaches only this tool, which then asks each point to save and stop (SIGTERM).
    proc = subprocess.Popen(run.command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                            start_new_session=True)
    if slot.cpus:
        # Pinned right after exec, while the interpreter is still starting: the threads XLA and
        # TensorFlow create later inherit the mask. (A preexec_fn would run Python between fork
        # and exec, which is unsafe in a multithreaded parent.)
        try:
            os.sched_setaffinity(proc.pid, slot.cpus)
        except (ProcessLookupError, PermissionError):
            pass  # it already exited; its status is collected as usual
    return proc, log


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (a batch system ending this tool) is handled like Ctrl-C: the points are told to save."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run_local(plan: list[PointRun], slots: list[Slot], cwd: pathlib.Path | None = None,
              poll_seconds: float = 0.2) -> int:
    """Runs the unfinished points, len(slots) at a time; returns how many did not finish."""
    cwd = cwd or pathlib.Path.cwd()
    say = _Say(len(plan))
    pending = collections.deque(r for r in plan if r.status != sweeps_lib.FINISHED)
    free = list(slots)
    running: dict[subprocess.Popen, tuple[PointRun, Slot, float, object]] = {}
    failed = 0
    with _sigterm_as_interrupt():
        try:
            while pending or running:
                while pending and free:
                    run, slot = pending.popleft(), free.pop(0)
                    proc, log = _start(run, slot, cwd)
                    running[proc] = (run, slot, time.monotonic(), log)
                    verb = "resuming" if run.status == sweeps_lib.PARTIAL else "started"
                    say(run, f"{verb} on {slot.describe()} (log: {run.log})")
                time.sleep(poll_seconds)
                for proc in [p for p in running if p.poll() is not None]:
                    run, slot, t0, log = running.pop(proc)
                    log.close()
                    free.append(slot)
                    took = format_duration(time.monotonic() - t0)
                    result = _result_text(run)
                    if proc.returncode == 0 and current_status(run) == sweeps_lib.FINISHED:
                        say(run, f"finished in {took} ({result})")
                        continue
                    failed += 1
                    why = (f"exit status {proc.returncode}" if proc.returncode
                           else "stopped before its last step")
                    say(run, f"FAILED ({why}) after {took}: {_last_line(run.log)} [see {run.log}]")
        except KeyboardInterrupt:
            for proc in running:
                proc.terminate()  # SIGTERM: the training loop saves a checkpoint and exits
            for proc, (run, _, _, log) in running.items():
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                log.close()
                say(run, "interrupted; run the sweep again to resume it")
            raise
    return failed


# ---------------------------------------------------------------------------------------------------
# Slurm
# ---------------------------------------------------------------------------------------------------

def slurm_script(plan: list[PointRun], sweep_dir: pathlib.Path, config_spec: str, array: str,
                 slurm_args: str) -> str:
    """The sbatch array script of the sweep (absolute paths, so it runs from any directory)."""
    sweep_dir = sweep_dir.absolute()
    script = sweep_dir / SBATCH_FILE
    submit = shlex.join(["sbatch", *shlex.split(slurm_args), str(script)])
    header = [f"cnnjax sweep of {config_spec}: {len(plan)} points, one array task each "
              "(unfinished points only).",
              f"Submitted with: {submit}",
              "Task i appends the output of point i's training to the log.txt in its folder."]
    return sweeps_lib.sbatch_script(
        job_name=f"cnnjax-{pathlib.Path(config_spec.partition(':')[0]).stem}",
        array=array, output_pattern=str(sweep_dir / "slurm" / "%A_%a.out"), cwd=str(pathlib.Path.cwd()),
        commands=[r.command for r in plan], logs=[str(r.log.absolute()) for r in plan], header=header)


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


def run_slurm(plan: list[PointRun], args: argparse.Namespace, sweep_dir: pathlib.Path) -> int:
    todo = [r.index for r in plan if r.status != sweeps_lib.FINISHED]
    if not todo:
        print(f"all {len(plan)} points have finished; nothing to submit")
        return 0
    text = slurm_script(plan, sweep_dir, args.config, sweeps_lib.array_spec(
        todo, args.parallel if args.parallel > 1 else 0), args.slurm_args)
    script = sweep_dir / SBATCH_FILE
    (sweep_dir / "slurm").mkdir(parents=True, exist_ok=True)
    script.write_text(text)
    if args.dry_run:
        print(f"# {script} (not submitted: --dry-run)")
        print(text, end="")
        return 0
    job = submit(script, args.slurm_args)
    print(f"submitted array job {job}: {len(todo)} of {len(plan)} points "
          f"(script {script}; logs in {sweep_dir}/<point>/{LOG_FILE}); "
          f"when done: ./launch.sh summarize {sweep_dir}")
    return 0


# ---------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    args, base = parse_args(argv)
    sweep_dir = pathlib.Path(args.workdir) if args.workdir else default_sweep_dir(args.config)
    plan = make_plan(args.config, base, sweep_dir, absolute=args.slurm)
    finished = sum(r.status == sweeps_lib.FINISHED for r in plan)
    print(f"sweep {args.config}: {len(plan)} points in {sweep_dir} "
          f"({finished} finished, {sum(r.status == sweeps_lib.PARTIAL for r in plan)} to resume, "
          f"{sum(r.status == sweeps_lib.NEW for r in plan)} new)")
    if args.slurm:
        if not args.dry_run:
            write_records(plan, sweep_dir, args.config, base)
        else:
            sweep_dir.mkdir(parents=True, exist_ok=True)
        return run_slurm(plan, args, sweep_dir)

    slots = device_slots(args.parallel, args.devices_per_run, visible_gpus(),
                         sorted(os.sched_getaffinity(0)), os.environ.get("XLA_FLAGS", ""))
    if args.dry_run:
        print(f"{len(slots)} at a time on: " + " | ".join(s.describe() for s in slots))
        for run in plan:
            print(f"[{run.status}] {shlex.join(run.command)} >> {shlex.quote(str(run.log))} 2>&1")
        return 0
    write_records(plan, sweep_dir, args.config, base)
    failed = run_local(plan, slots)
    ran = len(plan) - finished
    print(f"sweep done: {ran} run ({ran - failed} finished, {failed} failed), {finished} skipped as "
          f"already finished; results: ./launch.sh summarize {sweep_dir}")
    return 1 if failed else 0
