"""smallcnn with 2x2 max pooling against the same network whose two pools are 3x3 stride-2
convolutions (Springenberg et al. 2015, "Striving for simplicity", Sec. 2.1 and Table 3: on
CIFAR-10 the all-convolutional replacement loses no accuracy), on Fashion-MNIST. The rule (no
loss beyond MARGIN points), the budget and the results: README.md beside this file.

    ./launch.sh experiments/pooling_vs_strided/config.py:tune --sweep --workdir DIR_TUNE
    .venv/bin/python experiments/compare_arms.py pooling_vs_strided tune DIR_TUNE
    ./launch.sh experiments/pooling_vs_strided/config.py --sweep --workdir DIR
    .venv/bin/python experiments/compare_arms.py pooling_vs_strided main DIR
    ./launch.sh summary smallcnn --widths=16,16,32,32 --pool=strided_conv        # parameters

The base is configs/ablation_base.py (smallcnn 16-16-32-32, ReLU, SGD with momentum 0.9, batch
128), here with a cosine decay to 0 at the end of each run's budget. ARG is a comma-separated
subset of ARGS: 'tune', 'cifar10' (tfds:cifar10), 'smoke' (20 steps per point).
"""

import pathlib

from cnnjax import config as config_lib
from cnnjax.stats import Rule
from cnnjax.sweep.compare import arms_sweep

HERE = pathlib.Path(__file__).resolve().parent
BASE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "ablation_base.py"
ARM_KEY, ARMS = "model.pool", ("max", "strided_conv")
# Test error of B (strided_conv) - A (max), in points: the claim is that B is no worse, i.e. the
# difference stays below MARGIN.
MARGIN = 0.3
RULE = Rule(direction=-1, claim="no_worse", margin=MARGIN)
# A seed's two runs see the same batches and start from the same weights in every layer but the
# two strided convolutions (Flax derives each layer's initial weights from its name).
PAIRED = True
LR_GRID = (0.01, 0.03, 0.1)
TUNE_SEED = 100
SEEDS = (0, 1, 2, 3)
TUNE_STEPS = 938          # 2 epochs
MAIN_STEPS = 2344         # 5 epochs
TUNED_LR_FILE = HERE / "tuned_lr.json"
ARGS = ("tune", "cifar10", "smoke")


def get_config(arg: str | None = None):
    """The ablation base (ReLU, max pooling) with cosine decay over MAIN_STEPS (TUNE_STEPS with
    'tune'); test accuracy at the last step."""
    words = config_lib.load_module(str(BASE)).parse_arg(arg, ARGS, "experiments/pooling_vs_strided")
    base_words = ",".join(sorted(words - {"tune"}))
    c = config_lib.load_config(f"{BASE}:{base_words}" if base_words else str(BASE))
    c.model.activation, c.model.pool = "relu", "max"
    c.model.conv_impl = "onednn"  # the fastest on the CPU (benchmarks/README.md); XLA elsewhere
    c.data.pipeline = "device"  # arrays on the device, augmented there: no TensorFlow needed
    config_lib.load_module(str(BASE)).preregistered_run(
        c, words, tune_steps=TUNE_STEPS, main_steps=MAIN_STEPS, tune_seed=TUNE_SEED, seed=SEEDS[0])
    c.log_every_steps = 20
    return c


def get_sweep(arg: str | None = None):
    """'tune': pool x LR_GRID on TUNE_SEED; otherwise pool x SEEDS at each arm's tuned rate."""
    words = config_lib.load_module(str(BASE)).parse_arg(arg, ARGS, "experiments/pooling_vs_strided")
    return arms_sweep(ARM_KEY, ARMS, tune="tune" in words, grid=LR_GRID, seeds=SEEDS,
                      rates_file=TUNED_LR_FILE)
