#!/usr/bin/env bash
# Every preregistered training experiment, in order, at low priority; run it again to resume.
#
#   nohup experiments/run_all.sh > workdirs/run_all.log 2>&1 &
#   ./launch.sh sweep status workdirs/exp_lrn          # progress and ETA of the sweep under way
#
# Each sweep continues its unfinished points from their checkpoints and skips finished ones, and
# each analysis runs again on what is there (the tuning analyses only when their tuned_lr.json is
# missing: a rate, once picked, is not picked again). The order puts the cheapest decisions first
# (CPU times of one 2-core machine in each README): relu_vs_tanh, lrn, pooling_vs_strided,
# googlenet_aux (about 3.5 hours), plain_vs_residual (about 6.6 hours). NICE (default 19) is the
# priority of the training processes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${CNNJAX_PYTHON:-.venv/bin/python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the analyses import this checkout's cnnjax

say() { echo "run_all $(date -u +%H:%M:%S): $*"; }
# A point that failed (a tuning rate that diverged, say) does not stop the queue: the analysis
# decides whether the sweep is complete enough, and says what is missing.
sweep() {
  nice -n "${NICE:-19}" ./launch.sh "$1" --sweep --workdir "$2" ||
    say "$2: some points failed (./launch.sh sweep status $2)"
}
analyze() { "$PY" "$@" || say "analysis refused: $*"; }

# Two-arm experiments: the rate grid on their tuning seed, the pick, then the seeds.
two_arms() {
  local name=$1
  sweep "experiments/$name/config.py:tune" "workdirs/exp_${name}_tune"
  [[ -f "experiments/$name/tuned_lr.json" ]] ||
    analyze experiments/compare_arms.py "$name" tune "workdirs/exp_${name}_tune"
  sweep "experiments/$name/config.py" "workdirs/exp_$name"
  analyze experiments/compare_arms.py "$name" main "workdirs/exp_$name"
  say "$name done"
}

say "relu_vs_tanh"
sweep experiments/relu_vs_tanh/config.py:tune workdirs/exp_relu_vs_tanh_tune
[[ -f experiments/relu_vs_tanh/tuned_lr.json ]] ||
  analyze experiments/relu_vs_tanh/analyze.py tune workdirs/exp_relu_vs_tanh_tune
sweep experiments/relu_vs_tanh/config.py workdirs/exp_relu_vs_tanh
analyze experiments/relu_vs_tanh/analyze.py main workdirs/exp_relu_vs_tanh
say "relu_vs_tanh done"

two_arms lrn
two_arms pooling_vs_strided

two_arms googlenet_aux

say "plain_vs_residual"
# Trains beside the experiment, whose finished runs are committed (its README, "Runs across machines").
sweep experiments/plain_vs_residual/config.py experiments/plain_vs_residual/runs
analyze experiments/plain_vs_residual/analyze.py experiments/plain_vs_residual/runs
say "plain_vs_residual done"
say "all done"
