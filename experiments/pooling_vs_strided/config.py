"""smallcnn with 2x2 max pooling against the same network whose two pools are 3x3 stride-2
convolutions (Springenberg et al. 2015, "Striving for simplicity", Sec. 2.1 and Table 3: on
CIFAR-10 the all-convolutional replacement matches or beats max pooling), at equal depth of
ordinary convolutions, two seeds each, on Fashion-MNIST.

    ./launch.sh experiments/pooling_vs_strided/config.py --sweep --workdir workdirs/exp_pooling_vs_strided
    ./launch.sh summarize workdirs/exp_pooling_vs_strided --metric train/loss   # figure.png
    ./launch.sh summarize workdirs/exp_pooling_vs_strided --metric eval/top1    # results.*
    ./launch.sh summary smallcnn --widths=16,16,32,32 --pool=strided_conv        # parameters

The base is configs/ablation_base.py (smallcnn 16-16-32-32, ReLU, SGD with momentum
0.9), at learning rate 0.01, run for MAIN_STEPS. ARG as there: 'cifar10' switches the
data to tfds:cifar10, 'smoke' runs 20 steps per point. Timings and results: README.md beside
this file; the resolved configs: resolved_configs.json.
"""

import pathlib

from cnnjax import config as config_lib
from cnnjax.sweep import product

BASE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "ablation_base.py"
MAIN_STEPS = 750
ARGS = ("cifar10", "smoke")


def get_config(arg: str | None = None):
    """The ablation base (ReLU) for MAIN_STEPS, test accuracy every 250 steps."""
    words = config_lib.load_module(str(BASE)).parse_arg(arg, ARGS, "experiments/pooling_vs_strided")
    c = config_lib.load_config(f"{BASE}:{arg}" if arg else str(BASE))
    c.model.activation = "relu"
    c.model.pool = "max"
    # 0.01, not the 0.03 tuned for the max-pooling net in relu_vs_tanh: at 0.03 one of the two
    # strided-conv runs blew up at step 50 and never left chance (README.md, lr0.03_results.md).
    c.schedule.base_lr = 0.01
    if "smoke" not in words:
        c.num_steps = MAIN_STEPS
    c.log_every_steps = 25
    c.eval_every_steps = 250
    c.checkpoint_every_steps = 250
    # Measured on 2026-11-25 before launch.sh moved XLA:CPU convolutions to Eigen (commit 44cb7ad):
    # pinned to YNNPACK, the numerics its results have (README.md, "Numerics").
    c.xla_cpu_conv = "ynnpack"
    return c


def get_sweep(arg: str | None = None):
    """pool in (max, strided_conv) x seed in (0, 1): four points."""
    return product(**{"model.pool": ["max", "strided_conv"]}, seed=[0, 1])
