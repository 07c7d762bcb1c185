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


def data_mesh() -> jax.sharding.Mesh:
    """A one-axis 'data' mesh over every device of every host.

    The axis is Auto: jit propagates the batch sharding through the model by itself, so per-example
    code (the explicit convolution's reshapes, dropout masks) needs no sharding annotations. JAX's
    make_mesh defaults to Explicit axes, under which such reshapes of a sharded batch are refused.
    """
    return jax.make_mesh((jax.device_count(),), ("data",),
                         axis_types=(jax.sharding.AxisType.Auto,))
