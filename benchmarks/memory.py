"""Host memory of a real training run against its step: the peak, and whether it keeps growing.

    ./launch.sh bench memory                                        # the main job, LeNet-5 on MNIST
    ./launch.sh bench memory --steps 1000 -- --config.log_every_steps=50

Runs `cnnjax.cli train CONFIG` in a child process (the whole job: tf.data input, jitted steps,
evaluation, checkpoints, metrics), samples its resident set size from /proc twice a second, and
maps each sample to the last step the job logged. It prints the RSS at every logged step, the
kernel's peak (VmHWM), and the growth between the first logged step after `--warmup` and the end:
a leak shows as steady growth, a healthy run as a flat line after warm-up.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def proc_status_kib(pid: int, field: str) -> int | None:
    """A 'VmRSS'-style field of /proc/PID/status in KiB, or None once the process is gone."""
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def last_step(metrics: pathlib.Path) -> int:
    """The highest training step in a metrics.jsonl so far (0 before the first line)."""
    if not metrics.exists():
        return 0
    steps = [json.loads(line).get("step", 0) for line in metrics.read_text().splitlines() if line]
    return max(steps, default=0)


def watch(cmd: list[str], metrics: pathlib.Path, interval: float) -> tuple[dict[int, int], int, int]:
    """Run cmd; return ({step: max RSS KiB seen while it was the last logged step}, peak KiB, rc)."""
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    by_step: dict[int, int] = {}
    peak = 0
    while child.poll() is None:
        rss = proc_status_kib(child.pid, "VmRSS")
        peak = max(peak, proc_status_kib(child.pid, "VmHWM") or 0)
        if rss is not None:
            step = last_step(metrics)
            by_step[step] = max(by_step.get(step, 0), rss)
        time.sleep(interval)
    return by_step, peak, child.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/lenet5_mnist.py")
    parser.add_argument("--steps", type=int, default=0, help="0: the config's own num_steps")
    parser.add_argument("--warmup", type=int, default=200, help="steps before growth is counted")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("overrides", nargs="*", help="further --config.key=value, after --")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as workdir:
        cmd = [sys.executable, "-m", "cnnjax.cli", "train", args.config, "--workdir", workdir,
               *args.overrides]
        if args.steps:
            cmd.append(f"--config.num_steps={args.steps}")
        start = time.perf_counter()
        by_step, peak, rc = watch(cmd, pathlib.Path(workdir) / "metrics.jsonl", args.interval)
        wall = time.perf_counter() - start
    if rc:
        sys.exit(f"memory.py: the training job failed with exit status {rc}: {' '.join(cmd)}")
    print(f"{' '.join(cmd[2:])}\nwall {wall:.0f} s; peak RSS (VmHWM) {peak / 1024:.0f} MiB")
    print(f"{'step':>6}  {'RSS MiB':>8}")
    for step in sorted(by_step):
        print(f"{step:>6}  {by_step[step] / 1024:>8.1f}")
    counted = [s for s in sorted(by_step) if s >= args.warmup]
    if len(counted) >= 2:
        first, last = by_step[counted[0]], by_step[counted[-1]]
        per_k = (last - first) / 1024 / (counted[-1] - counted[0]) * 1000
        print(f"growth from step {counted[0]} to {counted[-1]}: {(last - first) / 1024:+.1f} MiB "
              f"({per_k:+.2f} MiB per 1,000 steps)")


if __name__ == "__main__":
    main()
