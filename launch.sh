#!/usr/bin/env bash
# The one entry point of cnnjax.
#   ./launch.sh CONFIG.py[:ARG] [--workdir DIR] [--config.key=value ...]   train
#   ./launch.sh test [pytest args]                                          the whole test suite
#   ./launch.sh eval|predict|summary|summarize|sweep|convert ...            the tools (see README)
#   ./launch.sh sweep status|summarize SWEEP_DIR                            a sweep's points, its results
#   ./launch.sh bench NAME [args]                      benchmarks/NAME.py (see benchmarks/README.md)
# On first use it creates .venv and installs the project there (versions pinned by constraints.txt);
# later runs reinstall only when pyproject.toml or constraints.txt has changed, so they start at once.
# Environment:
#   CNNJAX_EXTRAS=cuda13|cuda12|tpu   also install JAX's accelerator plugin (pyproject.toml extras)
#   CNNJAX_PYTHON=/path/to/python     use an environment that already has JAX etc. (a GPU/TPU image,
#                                     a cluster module): no venv, no pip; cnnjax runs from this checkout
#   CNNJAX_VENV=DIR                   where the venv lives (default .venv); CNNJAX_VENV=system is
#                                     CNNJAX_PYTHON=$(command -v python3)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${CNNJAX_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

[[ "$VENV" == system && -z "${CNNJAX_PYTHON:-}" ]] && CNNJAX_PYTHON="$(command -v python3)"
if [[ -n "${CNNJAX_PYTHON:-}" ]]; then
  # Preinstalled JAX: nothing is installed; the checkout is put on the path instead of `pip install -e`.
  PY="$CNNJAX_PYTHON"
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="$(dirname "$PY"):$PATH"
else
  # The test suite also compares against PyTorch, so `test` installs that extra too.
  extras="test"
  [[ "${1:-}" == "test" ]] && extras="test,torch"
  [[ -n "${CNNJAX_EXTRAS:-}" ]] && extras="$extras,$CNNJAX_EXTRAS"
  hash="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -c1-16)"
  stamp="$VENV/.cnnjax-installed-${extras//,/-}-$hash"
  if [[ ! -f "$stamp" ]]; then
    echo "launch.sh: installing cnnjax[$extras] into $VENV (first run, or pyproject.toml changed) ..." >&2
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" -e "$ROOT[$extras]" >&2
    touch "$stamp"
  fi
  PY="$VENV/bin/python"
  export PATH="$VENV/bin:$PATH"
fi
# oneDNN convolutions (impl='onednn', cnnjax/ops/onednn): compiled here against the installed
# headers, again only when conv.cc or the toolchain changed. If it cannot be built, cnnjax says so
# in one line when a oneDNN convolution is asked for, and uses XLA's.
"$PY" "$ROOT/cnnjax/ops/onednn/build.py" --quiet || true
# TensorFlow is used only for tf.data on the host: keep it off any GPU and quiet.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

# XLA flags per platform. XLA aborts at start-up on a flag its build does not know, so a CPU flag is
# set only (a) when the run is on the CPU: JAX_PLATFORMS says cpu, or, when it is unset, no GPU/TPU
# plugin is installed (JAX would pick that accelerator), and (b) when the installed jaxlib contains
# the flag's name (grepped once per jaxlib and cached next to it in $cache).
# XLA:CPU: convolutions on Eigen instead of YNNPACK (its other fusions stay on). Measured on the
# 2-core CPU, a training step of lenet5 / resnet20 took 1.4-1.8x / 1.3-1.4x less time this way
# (benchmarks/README.md, "XLA:CPU flags"). Flags already in XLA_FLAGS come later and win.
CPU_FLAG="xla_cpu_experimental_ynn_fusion_type"
read -r platform jaxlib_dir < <("$PY" - <<'PYEOF'
import importlib.metadata as md, importlib.util as u, os
accelerator = any((d.metadata["Name"] or "").lower().startswith(("jax-cuda", "jax_cuda", "jax-rocm", "libtpu"))
                  for d in md.distributions())
want = [p.strip() for p in os.environ.get("JAX_PLATFORMS", "").split(",") if p.strip()]
on_cpu = want[:1] == ["cpu"] if want else not accelerator
spec = u.find_spec("jaxlib")
print("cpu" if on_cpu else "accelerator", spec.submodule_search_locations[0] if spec else "-")
PYEOF
)
if [[ "$platform" == cpu && "$jaxlib_dir" != - ]]; then
  cache="$ROOT/build/xla-flags/$(echo "$jaxlib_dir $CPU_FLAG" | sha256sum | cut -c1-16)"
  if [[ ! -f "$cache" || "$cache" -ot "$jaxlib_dir" ]]; then
    mkdir -p "$(dirname "$cache")"
    if grep -rqaF --include='*.so*' -- "$CPU_FLAG" "$jaxlib_dir"; then echo yes; else echo no; fi > "$cache"
  fi
  [[ "$(cat "$cache")" == yes ]] && export XLA_FLAGS="--$CPU_FLAG=-individual_convolution ${XLA_FLAGS:-}"
fi
cd "$ROOT"

cmd="${1:-}"
case "$cmd" in
  "")
    echo "usage: ./launch.sh CONFIG.py[:ARG] [flags] | test | eval | predict | summary | summarize" >&2
    exit 2 ;;
  test)
    shift
    if "$PY" -m ruff --version >/dev/null 2>&1; then
      "$PY" -m ruff check --quiet cnnjax tests benchmarks configs experiments
    else
      echo "launch.sh: ruff is not installed in this environment; linting skipped" >&2
    fi
    exec "$PY" -m pytest "$@" ;;
  bench)
    [[ -f "benchmarks/${2:-}.py" ]] || { echo "usage: ./launch.sh bench NAME [args], NAME one of:" \
      $(cd benchmarks && ls *.py | sed 's/\.py$//') >&2; exit 2; }
    name="$2"; shift 2
    exec "$PY" "benchmarks/$name.py" "$@" ;;
  *.py|*.py:*)
    exec "$PY" -m cnnjax.cli train "$@" ;;
  *)
    exec "$PY" -m cnnjax.cli "$@" ;;
esac
