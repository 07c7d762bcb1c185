"""launch.sh: no XLA flag of its own for training and the tools (each is a config key, set by
`python -m cnnjax.cli`), the default config's flags for benchmarks on the CPU only and only when the
installed jaxlib knows them, and a preinstalled Python environment used as it is (CNNJAX_PYTHON /
CNNJAX_VENV=system: no venv, no pip).

The environment is a wrapper around this venv's Python that prints what `python -m cnnjax.cli` or a
benchmark would receive, so no training starts; a fake `jaxlib` package on PYTHONPATH stands in for
a build that does not know the CPU flag.
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
case "$1 $2" in "-m cnnjax.cli"|benchmarks/*)
  echo "XLA_FLAGS=[$XLA_FLAGS]"; echo "PYTHONPATH=[$PYTHONPATH]"; exit 0 ;;
esac
exec {sys.executable} "$@"
""")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env.update({"CNNJAX_PYTHON": str(wrapper), **env_extra})
    return subprocess.run(["bash", str(REPO / "launch.sh"), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_launch_sh_sets_no_flag_the_config_did_not_choose(tmp_path):
    for args in (("summary", "lenet5"), ("tests/helpers/tiny_config.py",), ("eval", "--workdir", "w")):
        out = launch(tmp_path, {"JAX_PLATFORMS": "cpu"}, args)
        assert out.returncode == 0, out.stderr
        assert "XLA_FLAGS=[]" in out.stdout, (args, out.stdout)  # cnnjax.cli applies the config's
        assert f"PYTHONPATH=[{REPO}" in out.stdout  # the checkout stands in for `pip install -e`
        assert "installing" not in out.stderr
    out = launch(tmp_path, {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_dump_to=/tmp/x"})
    assert "XLA_FLAGS=[--xla_dump_to=/tmp/x]" in out.stdout  # set by hand: passed on as it is


def test_benchmarks_get_the_default_configs_cpu_flag(tmp_path):
    out = launch(tmp_path, {"JAX_PLATFORMS": "cpu"}, ("bench", "ops"))
    assert out.returncode == 0, out.stderr
    assert f"XLA_FLAGS=[{CPU_FLAG}]" in out.stdout
    by_hand = "--xla_cpu_experimental_ynn_fusion_type="  # compared by hand: it wins
    out = launch(tmp_path, {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": by_hand}, ("bench", "ops"))
    assert f"XLA_FLAGS=[{by_hand}]" in out.stdout


def test_accelerator_benchmarks_never_get_a_cpu_flag(tmp_path):
    for platforms in ("cuda", "tpu", "cuda,cpu"):
        out = launch(tmp_path, {"JAX_PLATFORMS": platforms, "XLA_FLAGS": "--xla_dump_to=/tmp/x"},
                     ("bench", "ops"))
        assert out.returncode == 0, out.stderr
        assert "XLA_FLAGS=[--xla_dump_to=/tmp/x]" in out.stdout, (platforms, out.stdout)


def test_a_jaxlib_that_lacks_the_flag_does_not_get_it(tmp_path):
    fake = tmp_path / "site" / "jaxlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "_jax.so").write_bytes(b"\x7fELF some other xla_cpu_flag names only")
    out = launch(tmp_path, {"JAX_PLATFORMS": "cpu", "PYTHONPATH": str(tmp_path / "site")},
                 ("bench", "ops"))
    assert out.returncode == 0, out.stderr
    assert "XLA_FLAGS=[]" in out.stdout
