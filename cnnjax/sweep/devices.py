"""Where the points of a local sweep run: the visible GPUs or CPU cores shared out into slots."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess

from cnnjax.errors import UserError
from cnnjax.sweep.slurm import array_spec


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
    return array_spec(ids) if ids else "none"


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
