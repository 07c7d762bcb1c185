"""Multi-host start-up: `jax.distributed.initialize()` when a launcher started several processes.

Three ways to start N processes, each finding the others through a coordinator (process 0):
- Slurm: `srun` (SLURM_NTASKS > 1 inside a job step); JAX reads everything from Slurm's variables.
- OpenMPI: `mpirun -np N` (OMPI_COMM_WORLD_SIZE > 1). Open MPI 4 exports its daemon's URI, from
  which JAX finds the coordinator; Open MPI 5 does not, so there JAX_COORDINATOR_ADDRESS (rank 0's
  host:port) must be set, and the count and rank come from OMPI_COMM_WORLD_SIZE / _RANK.
- Plain JAX variables, any launcher or none: JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES=N
  and JAX_PROCESS_ID=i (0 <= i < N) in each process's environment.
JAX_LOCAL_DEVICE_IDS (e.g. '0' for one GPU per process) is read by JAX itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax

from cnnjax.errors import UserError


def launch_arguments(environ: Mapping[str, str] | None = None) -> dict | None:
    """Keyword arguments for jax.distributed.initialize, or None for a single-process run.

    Arguments left out are auto-detected by JAX from the launcher (Slurm, Open MPI 4).
    """
    env = os.environ if environ is None else environ
    address = env.get("JAX_COORDINATOR_ADDRESS", "")
    count, pid = env.get("JAX_NUM_PROCESSES"), env.get("JAX_PROCESS_ID")
    ompi = _int(env, "OMPI_COMM_WORLD_SIZE", "1") > 1
    slurm = _int(env, "SLURM_NTASKS", "1") > 1 and "SLURM_STEP_ID" in env
    if count is not None or pid is not None:
        if not address or count is None or pid is None:
            raise UserError("a multi-process run by JAX variables needs all three of "
                            "JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES=N and "
                            "JAX_PROCESS_ID=i (0 <= i < N)")
        n, i = _int(env, "JAX_NUM_PROCESSES"), _int(env, "JAX_PROCESS_ID")
        if n < 1 or not 0 <= i < n:
            raise UserError(f"JAX_PROCESS_ID={i} must lie in [0, JAX_NUM_PROCESSES={n})")
        return {"coordinator_address": address, "num_processes": n, "process_id": i}
    if ompi:
        if address:
            return {"coordinator_address": address,
                    "num_processes": _int(env, "OMPI_COMM_WORLD_SIZE"),
                    "process_id": _int(env, "OMPI_COMM_WORLD_RANK")}
        if "OMPI_MCA_orte_hnp_uri" not in env:
            raise UserError("an Open MPI launch without ORTE (Open MPI 5) cannot locate the "
                            "coordinator: set JAX_COORDINATOR_ADDRESS=<host of rank 0>:<free port>")
        return {}
    if slurm:
        return {}
    if address:
        raise UserError("JAX_COORDINATOR_ADDRESS is set outside Slurm and Open MPI: also set "
                        "JAX_NUM_PROCESSES=N and JAX_PROCESS_ID=i for each process")
    return None


def maybe_initialize(environ: Mapping[str, str] | None = None) -> None:
    """Connects the processes of a multi-host run; a single process needs nothing (idempotent)."""
    arguments = launch_arguments(environ)
    if arguments is not None and not jax.distributed.is_initialized():
        jax.distributed.initialize(**arguments)


def _int(env: Mapping[str, str], name: str, default: str | None = None) -> int:
    value = env.get(name, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{name}={value!r} must be an integer") from None


def data_mesh() -> jax.sharding.Mesh:
    """A one-axis 'data' mesh over every device of every host.

    The axis is Auto: jit propagates the batch sharding through the model by itself, so per-example
    code (the explicit convolution's reshapes, dropout masks) needs no sharding annotations. JAX's
    make_mesh defaults to Explicit axes, under which such reshapes of a sharded batch are refused.
    """
    return jax.make_mesh((jax.device_count(),), ("data",),
                         axis_types=(jax.sharding.AxisType.Auto,))


def data_shardings(mesh: jax.sharding.Mesh) -> tuple[jax.sharding.NamedSharding,
                                                       jax.sharding.NamedSharding]:
    """(replicated, split): how the training step places its arrays on a data mesh - parameters and
    optimizer state whole on every device, batches split along their first axis."""
    P = jax.sharding.PartitionSpec
    return jax.sharding.NamedSharding(mesh, P()), jax.sharding.NamedSharding(mesh, P("data"))
