"""launch.sh: XLA flags chosen per platform and only when the installed jaxlib knows them, and a
preinstalled Python environment used as it is (CNNJAX_PYTHON / CNNJAX_VENV=system: no venv, no pip).

The environment is a wrapper around this venv's Python that prints what `python -m cnnjax.cli` would
receive, so no training starts; a fake `jaxlib` package on PYTHONPATH stands in for a build that does
not know the CPU flag.
"""

import os
import pathlib
import stat
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
CPU_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def launch(tmp_path, env_extra: dict, args=("summary", "lenet5")) -> subprocess.CompletedProcess:
    wrapper = tmp_path / "python"
    wrapper.write_text(f"""#!/bin/sh
if [ "$1" = -m ] && [ "$2" = cnnjax.cli ]; then
  echo "XLA_FLAGS=[$XLA_FLAGS]"; echo "PYTHONPATH=[$PYTHONPATH]"; exit 0
fi
exec {sys.executable} "$@"
""")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env.update({"CNNJAX_PYTHON": str(wrapper), **env_extra})
    return subprocess.run(["bash", str(REPO / "launch.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_cpu_runs_get_the_cpu_flag_without_any_install(tmp_path):
    out = launch(tmp_path, {"JAX_PLATFORMS": "cpu"})
    assert out.returncode == 0, out.stderr
    assert f"XLA_FLAGS=[{CPU_FLAG} ]" in out.stdout
    assert f"PYTHONPATH=[{REPO}" in out.stdout  # the checkout stands in for `pip install -e`
    assert "installing" not in out.stderr


def test_accelerator_runs_never_get_a_cpu_flag(tmp_path):
    for platforms in ("cuda", "tpu", "cuda,cpu"):
        out = launch(tmp_path, {"JAX_PLATFORMS": platforms, "XLA_FLAGS": "--xla_dump_to=/tmp/x"})
        assert out.returncode == 0, out.stderr
        assert "XLA_FLAGS=[--xla_dump_to=/tmp/x]" in out.stdout, (platforms, out.stdout)


def test_a_jaxlib_that_lacks_the_flag_does_not_get_it(tmp_path):
    fake = tmp_path / "site" / "jaxlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "_jax.so").write_bytes(b"\x7fELF some other xla_cpu_flag names only")
    out = launch(tmp_path, {"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(tmp_path / "site")})
    assert out.returncode == 0, out.stderr
    assert "XLA_FLAGS=[]" in out.stdout
