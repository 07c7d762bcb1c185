"""Multi-host start-up: `jax.distributed.initialize()` when a cluster launcher started several processes."""

from __future__ import annotations

import os

import jax


def launched_multiprocess() -> bool:
    """True under a launcher that started more than one process (Slurm srun, or JAX's own variables)."""
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        return True
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_STEP_ID" in os.environ


def maybe_initialize() -> None:
    """Connects the processes of a multi-host run; a single process needs nothing (idempotent)."""
    if launched_multiprocess() and not jax.distributed.is_initialized():
        jax.distributed.initialize()
