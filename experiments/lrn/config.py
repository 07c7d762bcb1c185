"""smallcnn without and with local response normalisation (AlexNet's, Krizhevsky et al. 2012,
Sec. 3.3: n=5, k=2, alpha=1e-4, beta=0.75, after each stage's last ReLU and before its pooling) on
Fashion-MNIST: does LRN lower the test error (AlexNet: ImageNet top-1 -1.4 points, CIFAR-10 13% ->
11%) or not (VGG, Simonyan & Zisserman 2015, Sec. 4.1)? The rule, the budget and the results:
README.md beside this file.

    # 1. learning rate per arm on TUNE_SEED: LR_GRID, TUNE_STEPS each
    ./launch.sh experiments/lrn/config.py:tune --sweep --workdir workdirs/exp_lrn_tune
    .venv/bin/python experiments/compare_arms.py lrn tune workdirs/exp_lrn_tune
    # 2. both arms at their tuned rates (tuned_lr.json), SEEDS, MAIN_STEPS each
    ./launch.sh experiments/lrn/config.py --sweep --workdir workdirs/exp_lrn
    .venv/bin/python experiments/compare_arms.py lrn main workdirs/exp_lrn

The base is configs/ablation_base.py (smallcnn 16-16-32-32, ReLU, max pooling, SGD with momentum
0.9, batch 128), here with a cosine decay to 0 at the end of each run's budget. ARG is a
comma-separated subset of ARGS: 'tune', 'cifar10' (tfds:cifar10), 'smoke' (20 steps per point).
"""

import pathlib

from cnnjax import config as config_lib
from cnnjax.stats import Rule
from cnnjax.sweep.compare import arms_sweep

HERE = pathlib.Path(__file__).resolve().parent
BASE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "ablation_base.py"
ARM_KEY, ARMS = "model.norm", ("none", "lrn")
# Test error of B (lrn) - A (none), in points: AlexNet says negative. A margin of 0.3 points lets
# VGG's "no improvement" be shown as equivalence.
RULE = Rule(direction=-1, margin=0.3)
PAIRED = True             # LRN has no parameters: a seed's two runs share weights and batches
LR_GRID = (0.01, 0.03, 0.1)
TUNE_SEED = 100
SEEDS = (0, 1, 2, 3, 4, 5)
TUNE_STEPS = 938          # 2 epochs
MAIN_STEPS = 2344         # 5 epochs
TUNED_LR_FILE = HERE / "tuned_lr.json"
ARGS = ("tune", "cifar10", "smoke")


def get_config(arg: str | None = None):
    """The ablation base (ReLU, max pooling, no norm) with cosine decay over MAIN_STEPS (TUNE_STEPS
    with 'tune'); test accuracy at the last step."""
    words = config_lib.load_module(str(BASE)).parse_arg(arg, ARGS, "experiments/lrn")
    base_words = ",".join(sorted(words - {"tune"}))
    c = config_lib.load_config(f"{BASE}:{base_words}" if base_words else str(BASE))
    c.model.activation, c.model.pool, c.model.norm = "relu", "max", "none"
    c.model.conv_impl = "onednn"  # the fastest on the CPU (benchmarks/README.md); XLA elsewhere
    c.data.pipeline = "device"  # arrays on the device, augmented there: no TensorFlow needed
    config_lib.load_module(str(BASE)).preregistered_run(
        c, words, tune_steps=TUNE_STEPS, main_steps=MAIN_STEPS, tune_seed=TUNE_SEED, seed=SEEDS[0])
    c.log_every_steps = 20
    return c


def get_sweep(arg: str | None = None):
    """'tune': norm x LR_GRID on TUNE_SEED; otherwise norm x SEEDS at each arm's tuned rate."""
    words = config_lib.load_module(str(BASE)).parse_arg(arg, ARGS, "experiments/lrn")
    return arms_sweep(ARM_KEY, ARMS, tune="tune" in words, grid=LR_GRID, seeds=SEEDS,
                      rates_file=TUNED_LR_FILE)
