"""Plain networks against ResNets with identity shortcuts (option A) at depths 20 and 56 (He et
al. 2016, Sec. 4.2 and Fig. 6 on CIFAR-10, Fig. 4 on ImageNet): the deeper plain network has
higher training and test error than the shallower one (degradation); with shortcuts the deeper
network is better or equal. Short runs on Fashion-MNIST, seed 0.

    ./launch.sh experiments/plain_vs_residual/config.py --sweep --workdir workdirs/exp_plain_vs_residual
    ./launch.sh summarize workdirs/exp_plain_vs_residual --metric train/top1   # results_train_top1.*
    .venv/bin/python experiments/plain_vs_residual/curves.py workdirs/exp_plain_vs_residual

The base is configs/resnet_cifar.py (16-32-64 filters, batch norm, SGD with momentum 0.9, weight
decay 1e-4) with the Fashion-MNIST switch, at batch BATCH with the paper's rate 0.1 scaled
linearly to it, constant (the paper's first decay comes at 32k steps, far beyond these runs).
ARG is a comma-separated subset of ARGS: 'cifar10' trains on tfds:cifar10 (the paper's data,
pad-crop-flip), 'smoke' runs 20 steps per point. Timings and results: README.md beside this file.
"""

import pathlib

from cnnjax import config as config_lib
from cnnjax.config import ConfigError
from cnnjax.sweep import product

BASE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "resnet_cifar.py"
MODELS = ("plain20", "plain56", "resnet20", "resnet56")
BATCH = 32
MAIN_STEPS, SMOKE_STEPS = 600, 20
EVALS = 3  # test-set evaluations per run, evenly spaced (each costs a pass over 10,000 images)
ARGS = ("cifar10", "smoke")


def get_config(arg: str | None = None):
    """resnet_cifar's recipe for MAIN_STEPS at BATCH, training error logged every 10 steps, test
    error EVALS times."""
    words = set(filter(None, (arg or "").split(",")))
    if words - set(ARGS):
        raise ConfigError(f"experiments/plain_vs_residual: ARG must be a comma-separated subset of "
                          f"{ARGS}; got {arg!r}")
    dataset = "cifar10" if "cifar10" in words else "fashion_mnist"
    c = config_lib.load_config(f"{BASE}:{MODELS[0]},{dataset}")
    c.seed = 0
    c.batch_size = BATCH
    c.schedule.name = "constant"
    c.schedule.base_lr = 0.1 * BATCH / 128
    c.schedule.boundaries = ()
    c.schedule.warmup = 0.0
    c.num_steps = SMOKE_STEPS if "smoke" in words else MAIN_STEPS
    c.log_every_steps = 10
    c.eval_every_steps = max(c.num_steps // EVALS, 1)
    c.checkpoint_every_steps = c.num_steps
    c.keep_checkpoints = 1
    c.model.conv_impl = "xla"  # measured with XLA's convolution, before 'auto' chose oneDNN on the CPU
    return c


def get_sweep(arg: str | None = None):
    """model.name over MODELS: four points, seed 0."""
    return product(**{"model.name": list(MODELS)})
