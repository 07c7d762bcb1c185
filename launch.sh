#!/usr/bin/env bash
# The one entry point of cnnjax.
#   ./launch.sh CONFIG.py[:ARG] [--workdir DIR] [--config.key=value ...]   train
#   ./launch.sh test [pytest args]                                          the whole test suite
#   ./launch.sh eval|predict|summary|summarize|sweep ...                    the tools (see README)
#   ./launch.sh bench NAME [args]                      benchmarks/NAME.py (see benchmarks/README.md)
# On first use it creates .venv and installs the project there; later runs reinstall only when
# pyproject.toml has changed, so they start at once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${CNNJAX_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

# The test suite also compares against PyTorch, so `test` installs that extra too.
extras="test"
[[ "${1:-}" == "test" ]] && extras="test,torch"
stamp="$VENV/.cnnjax-installed-${extras/,/-}-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  echo "launch.sh: installing cnnjax[$extras] into $VENV (first run, or pyproject.toml changed) ..." >&2
  [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -e "$ROOT[$extras]" >&2
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
# oneDNN convolutions (impl='onednn', cnnjax/ops/onednn): compiled here against the installed
# headers, again only when conv.cc or the toolchain changed. If it cannot be built, cnnjax says so
# in one line when a oneDNN convolution is asked for, and uses XLA's.
"$VENV/bin/python" "$ROOT/cnnjax/ops/onednn/build.py" --quiet || true
# TensorFlow is used only for tf.data on the host: keep it off any GPU and quiet.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
# XLA:CPU: convolutions on Eigen instead of YNNPACK (its other fusions stay on). Measured on the
# 2-core CPU, a training step of lenet5 / resnet20 took 1.4-1.8x / 1.3-1.4x less time this way
# (benchmarks/README.md, "XLA:CPU flags"). Flags already in XLA_FLAGS come later and win.
export XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type=-individual_convolution ${XLA_FLAGS:-}"
cd "$ROOT"

cmd="${1:-}"
case "$cmd" in
  "")
    echo "usage: ./launch.sh CONFIG.py[:ARG] [flags] | test | eval | predict | summary | summarize" >&2
    exit 2 ;;
  test)
    shift
    ruff check --quiet cnnjax tests benchmarks configs experiments
    exec python -m pytest "$@" ;;
  bench)
    [[ -f "benchmarks/${2:-}.py" ]] || { echo "usage: ./launch.sh bench NAME [args], NAME one of:" \
      $(cd benchmarks && ls *.py | sed 's/\.py$//') >&2; exit 2; }
    name="$2"; shift 2
    exec python "benchmarks/$name.py" "$@" ;;
  *.py|*.py:*)
    exec python -m cnnjax.cli train "$@" ;;
  *)
    exec python -m cnnjax.cli "$@" ;;
esac
