#!/usr/bin/env bash
# The one entry point of cnnjax: ./launch.sh (or ./launch.sh help) lists every command, from the one
# table in cnnjax/cli.py; ./launch.sh COMMAND --help gives a command's options and examples.
#   ./launch.sh CONFIG.py[:ARG] [--workdir DIR] [--config.KEY=VALUE ...] [--sweep ...]   train (a sweep)
#   ./launch.sh test [pytest args]       run here: ruff, then the test suite
#   ./launch.sh bench NAME [args]        run here: benchmarks/NAME.py with the default config's XLA flags
#   ./launch.sh COMMAND ...              every other command: python -m cnnjax.cli COMMAND ...
# On first use it creates .venv and installs the project there (versions pinned by constraints.txt);
# later runs reinstall only when pyproject.toml or constraints.txt has changed, so they start at once.
# Environment:
#   CNNJAX_EXTRAS=cuda13|cuda12|tpu   also install JAX's accelerator plugin (pyproject.toml extras)
#   CNNJAX_PYTHON=/path/to/python     use an environment that already has JAX etc. (a GPU/TPU image,
#                                     a cluster module): no venv, no pip; cnnjax runs from this checkout
#   CNNJAX_VENV=DIR                   where the venv lives (default .venv); CNNJAX_VENV=system is
#                                     CNNJAX_PYTHON=$(command -v python3)
#   CNNJAX_MALLOC=glibc               keep glibc's malloc defaults (launch.sh otherwise sets
#                                     MALLOC_ARENA_MAX=1, MALLOC_MMAP_MAX_=0, a high trim threshold,
#                                     except for `test`)
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
    # Until 2026-12 cnnjax installed the SYCL build of oneDNN (`onednn`) and its 2 GB of GPU
    # runtimes. The CPU-only build that replaces it writes the same file names, so the old one
    # and its runtimes go first (pip would otherwise leave them, and delete the new files later).
    if "$VENV/bin/python" -m pip show -q onednn >/dev/null 2>&1; then
      "$VENV/bin/python" -m pip uninstall -y -q onednn onednn-devel dpcpp-cpp-rt intel-sycl-rt \
        intel-opencl-rt intel-cmplr-lib-rt intel-cmplr-lib-ur intel-cmplr-lic-rt intel-openmp tbb \
        umf tcmlib >&2
    fi
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
# glibc's malloc gives each thread an arena of its own, and a thread arena serves any block over
# 64 MB with a fresh mmap: XLA:CPU allocates a step's temporaries (200 MB for resnet20 at batch
# 128) on one of its threads at every step, so the kernel page-faulted and zeroed 50,000 pages a
# step, a third of resnet20's step time. One arena, no mmap and no trimming keep those pages
# (benchmarks/README.md, "Memory allocation"). The test suite is compilation, not steps, and one
# arena made XLA's compiles slower (tests/models and tests/ops: 295 s against 224 s), so `test`
# keeps glibc's defaults. A value set by hand wins; CNNJAX_MALLOC=glibc keeps glibc's defaults.
if [[ "${CNNJAX_MALLOC:-}" != glibc && "${1:-}" != test ]]; then
  export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-1}" MALLOC_MMAP_MAX_="${MALLOC_MMAP_MAX_:-0}"
  export MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-68719476736}"
fi
# TensorFlow is used only for tf.data on the host: keep it off any GPU and quiet.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

# XLA flags are not set here: each is a config key (config.xla_cpu_conv: convolutions on Eigen or
# YNNPACK on the CPU), applied by `python -m cnnjax.cli` before JAX starts, only on the CPU and only
# when the installed jaxlib knows it, and recorded in the workdir (config.json, environment.json).
# XLA_FLAGS set by hand are passed on as they are (and recorded).
cd "$ROOT"

cmd="${1:-}"
case "$cmd" in
  test)
    shift
    if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then  # ours, then pytest's own options
      "$PY" -m cnnjax.cli test --help && echo && exec "$PY" -m pytest --help
    fi
    if "$PY" -m ruff --version >/dev/null 2>&1; then
      "$PY" -m ruff check --quiet cnnjax tests benchmarks configs experiments
    else
      echo "launch.sh: ruff is not installed in this environment; linting skipped" >&2
    fi
    exec "$PY" -m pytest "$@" ;;
  bench)
    # No name, --help or a misspelt name: the usage (with the list of benchmarks/*.py) from cnnjax.cli.
    [[ -f "benchmarks/${2:-}.py" ]] || exec "$PY" -m cnnjax.cli "$@"
    name="$2"; shift 2
    # Benchmarks have no config: they get the default config's XLA flags for this platform (a flag
    # set by hand in XLA_FLAGS wins, so that flags can be compared).
    XLA_FLAGS="$("$PY" -m cnnjax.train.environment --xla-flags)"
    export XLA_FLAGS
    exec "$PY" "benchmarks/$name.py" "$@" ;;
  *.py|*.py:*)
    exec "$PY" -m cnnjax.cli train "$@" ;;
  *)  # no command at all included: cnnjax.cli prints the list of commands
    exec "$PY" -m cnnjax.cli "$@" ;;
esac
