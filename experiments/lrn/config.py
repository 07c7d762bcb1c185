"""smallcnn without and with local response normalisation (AlexNet's, Krizhevsky et al. 2012,
Sec. 3.3: n=5, k=2, alpha=1e-4, beta=0.75, after each stage's last ReLU and before its pooling),
three seeds each, short runs on Fashion-MNIST. AlexNet reports LRN lowering ImageNet top-1 /
top-5 error by 1.4% / 1.2% (and CIFAR-10 test error from 13% to 11%); VGG (Simonyan & Zisserman
2015, Sec. 4.1) found no gain from it on their A-LRN network.

    ./launch.sh experiments/lrn/config.py --sweep --workdir workdirs/exp_lrn
    ./launch.sh summarize workdirs/exp_lrn --metric train/loss    # figure.png
    ./launch.sh summarize workdirs/exp_lrn --metric eval/top1     # results.*
    .venv/bin/python experiments/lrn/seed_stats.py workdirs/exp_lrn

The base is configs/ablation_base.py (smallcnn 16-16-32-32, ReLU, max pooling, SGD with
momentum 0.9 at the rate relu_vs_tanh tuned for ReLU), run for MAIN_STEPS. ARG as there: 'cifar10'
switches the data to tfds:cifar10, 'smoke' runs 20 steps per point. Timings and results:
README.md beside this file; the resolved configs: resolved_configs.json.
"""

import pathlib

from cnnjax import config as config_lib
from cnnjax.sweep import product

BASE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "ablation_base.py"
MAIN_STEPS = 400
ARGS = ("cifar10", "smoke")


def get_config(arg: str | None = None):
    """The ablation base (ReLU, max pooling) for MAIN_STEPS; test accuracy at the end."""
    words = config_lib.load_module(str(BASE)).parse_arg(arg, ARGS, "experiments/lrn")
    c = config_lib.load_config(f"{BASE}:{arg}" if arg else str(BASE))
    c.model.activation = "relu"
    c.model.pool = "max"
    c.model.norm = "none"
    # Measured on 2026-11-25 before launch.sh moved XLA:CPU convolutions to Eigen (commit 44cb7ad):
    # pinned to YNNPACK, the numerics its results.csv has (README.md, "Numerics").
    c.xla_cpu_conv = "ynnpack"
    if "smoke" not in words:
        c.num_steps = MAIN_STEPS
    c.log_every_steps = 20
    c.eval_every_steps = MAIN_STEPS
    c.checkpoint_every_steps = MAIN_STEPS
    return c


def get_sweep(arg: str | None = None):
    """norm in (none, lrn) x seed in (0, 1, 2): six points."""
    return product(**{"model.norm": ["none", "lrn"]}, seed=[0, 1, 2])
