"""smallcnn (four 3x3 conv layers of 16, 16, 32, 32 filters, 2x2 max pooling after the second
and fourth, one FC layer) with ReLU against tanh on Fashion-MNIST: steps to reach 25% training
error (Krizhevsky et al. 2012, Sec. 3.1 and Fig. 1: about six times fewer with ReLU on CIFAR-10).

    # 1. learning rate per activation: 3 x 2 short runs (200 steps), pick by final train/loss
    ./launch.sh experiments/relu_vs_tanh/config.py:tune --sweep --workdir workdirs/exp_relu_vs_tanh_tune
    ./launch.sh summarize workdirs/exp_relu_vs_tanh_tune --metric train/loss
    # 2. the curves at the chosen rates (TUNED_LR below), seed 0
    ./launch.sh experiments/relu_vs_tanh/config.py --sweep --workdir workdirs/exp_relu_vs_tanh
    ./launch.sh summarize workdirs/exp_relu_vs_tanh --metric train/top1
    .venv/bin/python experiments/relu_vs_tanh/steps_to_error.py workdirs/exp_relu_vs_tanh

ARG is a comma-separated list of: 'tune' (the learning-rate grid, short runs), 'cifar10'
(tfds:cifar10, 3 channels, pad-crop-flip, CIFAR mean/std in place of Fashion-MNIST), 'smoke'
(20 steps per point). The network, data and recipe are configs/ablation_base.py's (shared with
lrn, pooling_vs_strided and googlenet_aux); this file adds the sweeps. Timings and results:
README.md beside this file; the resolved configs: resolved_configs.json.
"""

import pathlib

from cnnjax import config as config_lib
from cnnjax.sweep import product, zip_

BASE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "ablation_base.py"
ACTIVATIONS = ("relu", "tanh")
LR_GRID = (0.01, 0.03, 0.1)
# Picked by `:tune` (lowest final train/loss after TUNE_STEPS; see README.md).
TUNED_LR = {"relu": 0.03, "tanh": 0.03}
TUNE_STEPS = 200
ARGS = ("tune", "cifar10", "smoke")


def parse_arg(arg: str | None) -> set[str]:
    """'tune,cifar10' -> {'tune', 'cifar10'}; ConfigError naming the accepted words otherwise."""
    return config_lib.load_module(str(BASE)).parse_arg(arg, ARGS, "experiments/relu_vs_tanh")


def get_config(arg: str | None = None):
    """configs/ablation_base.py (smallcnn, SGD with momentum 0.9 at a constant rate, batch 128, no
    weight decay, seed 0; train/top1 logged every 10 steps) at the rate tuned for ReLU; 'tune' runs
    TUNE_STEPS."""
    words = parse_arg(arg)
    base_words = ",".join(sorted(words - {"tune"}))
    c = config_lib.load_config(f"{BASE}:{base_words}" if base_words else str(BASE))
    if "tune" in words and "smoke" not in words:
        c.num_steps = TUNE_STEPS
    c.schedule.base_lr = TUNED_LR["relu"]
    # Measured on 2026-11-25 before launch.sh moved XLA:CPU convolutions to Eigen (commit 44cb7ad):
    # pinned to YNNPACK, the numerics its results have (README.md, "Numerics").
    c.xla_cpu_conv = "ynnpack"
    return c


def get_sweep(arg: str | None = None):
    """':tune': activation x base_lr over LR_GRID (six points); otherwise each activation at its
    TUNED_LR (two points), seed 0 throughout."""
    if "tune" in parse_arg(arg):
        return product(**{"model.activation": list(ACTIVATIONS), "schedule.base_lr": list(LR_GRID)})
    return zip_(**{"model.activation": list(ACTIVATIONS),
                   "schedule.base_lr": [TUNED_LR[a] for a in ACTIVATIONS]})
