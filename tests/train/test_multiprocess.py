"""Multi-process training started by JAX's own variables (no Slurm): 2 processes x 1 CPU device on
127.0.0.1 end bit-identical to 1 process x 2 devices (every logged metric and the saved state), both
on synthetic data gathered on the device and through the per-host tf.data path. Also the launcher
detection of cnnjax.train.distributed, from environment variables alone."""

import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from cnnjax.errors import UserError
from cnnjax.train.checkpoint import Checkpoints
from cnnjax.train.distributed import launch_arguments

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "helpers" / "tiny_config.py"
TIMING = {"time", "train/steps_per_sec", "train/images_per_sec", "compile_seconds"}

SCRIPT = """
import sys
from cnnjax import config as config_io
from cnnjax.train.loop import train_and_evaluate
config = config_io.load_config(sys.argv[1])
config_io.apply_overrides(config, sys.argv[3:])
train_and_evaluate(config, sys.argv[2])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(workdir, devices: int, overrides, extra_env: dict) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR", "JAX_NUM_PROC", "JAX_PROCESS"))}
    env.update({"JAX_PLATFORMS": "cpu", **extra_env,
                "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(TINY), str(workdir), *overrides],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def finish(procs) -> None:
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-3000:]


def records(workdir) -> list[dict]:
    lines = (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


@pytest.mark.parametrize(("transform", "pipeline"), [("pad_crop_flip", "device"), ("mnist", "tfdata")],
                         ids=["device_synthetic", "host_tfdata"])
def test_two_processes_match_one_process_with_two_devices(tmp_path, transform, pipeline):
    overrides = ["num_steps=6", f"data.train_transform={transform}", f"data.pipeline={pipeline}"]
    finish([start(tmp_path / "one", 2, overrides, {})])
    port = free_port()
    finish([start(tmp_path / "two", 1, overrides,
                  {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
                   "JAX_PROCESS_ID": str(i)}) for i in range(2)])
    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    assert len(one) > 5 and one == two
    a = Checkpoints(tmp_path / "one" / "checkpoints").read_arrays(6)
    b = Checkpoints(tmp_path / "two" / "checkpoints").read_arrays(6)
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_launcher_detection_from_the_environment():
    assert launch_arguments({}) is None
    assert launch_arguments({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "4",
                             "JAX_PROCESS_ID": "3"}) == {
        "coordinator_address": "h:1", "num_processes": 4, "process_id": 3}
    # Slurm and Open MPI 4: JAX detects everything itself.
    assert launch_arguments({"SLURM_NTASKS": "2", "SLURM_STEP_ID": "0"}) == {}
    assert launch_arguments({"SLURM_NTASKS": "2"}) is None  # sbatch's shell, not an srun step
    assert launch_arguments({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1",
                             "OMPI_MCA_orte_hnp_uri": "1.2.3.4:5"}) == {}
    # Open MPI 5 (no ORTE): the coordinator is given, count and rank come from Open MPI.
    assert launch_arguments({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1",
                             "JAX_COORDINATOR_ADDRESS": "h:9"}) == {
        "coordinator_address": "h:9", "num_processes": 2, "process_id": 1}
    assert launch_arguments({"OMPI_COMM_WORLD_SIZE": "1"}) is None
    for env, message in [
            ({"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"}, "JAX_COORDINATOR_ADDRESS"),
            ({"JAX_COORDINATOR_ADDRESS": "h:1"}, "JAX_NUM_PROCESSES"),
            ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "JAX_COORDINATOR_ADDRESS"),
            ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
             "[0, JAX_NUM_PROCESSES=2)"),
            ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
             "must be an integer")]:
        with pytest.raises(UserError, match=re.escape(message)):
            launch_arguments(env)


def test_preemption_is_gathered_only_at_boundaries(monkeypatch):
    """With several processes the SIGTERM flags are gathered (a collective plus a host read) only
    at log/checkpoint boundaries; between them a step costs no host synchronisation."""
    from jax.experimental import multihost_utils

    from cnnjax.train import loop

    gathers = []

    def allgather(flag):
        gathers.append(bool(flag))
        return np.asarray([flag, True])  # the other process was told to stop

    monkeypatch.setattr(loop.jax, "process_count", lambda: 2)
    monkeypatch.setattr(multihost_utils, "process_allgather", allgather)
    preemption = loop._Preemption()
    assert [preemption.any_process(at_boundary=False) for _ in range(5)] == [False] * 5
    assert gathers == []
    assert preemption.any_process(at_boundary=True) is True and gathers == [False]
