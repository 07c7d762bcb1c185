"""Plain networks against ResNets with identity shortcuts (option A) at depths 20 and 56 (He et
al. 2016, Sec. 4.2 and Fig. 6 on CIFAR-10): trained to convergence, the deeper plain network has
higher training (and test) error than the shallower one (degradation); with shortcuts the deeper
network is better. On Fashion-MNIST, with the paper's recipe scaled to a 20-epoch budget. The
rules, the budget and the results: README.md beside this file.

    ./launch.sh experiments/plain_vs_residual/config.py --sweep --workdir experiments/plain_vs_residual/runs
    .venv/bin/python experiments/plain_vs_residual/analyze.py experiments/plain_vs_residual/runs

The base is configs/resnet_cifar.py (16-32-64 filters, batch norm, SGD with momentum 0.9, weight
decay 1e-4, batch 128, rate 0.1 divided by 10 at 50% and 75% of the budget: the paper's 32k and
48k of 64k steps) with the Fashion-MNIST switch. No rate is tuned: the paper's recipe is the one
under test. ARG is a comma-separated subset of ARGS: 'cifar10' trains on tfds:cifar10 (the
paper's data), 'smoke' runs 20 steps per point.
"""

import pathlib

from cnnjax import config as config_lib
from cnnjax.config import ConfigError

BASE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "resnet_cifar.py"
MODELS = ("plain20", "plain56", "resnet20", "resnet56")
# One run of each plain net (degradation needs the pair) and three seeds of each ResNet, whose
# spread also sizes the noise of a single plain run.
SEEDS = {"plain20": (0,), "resnet20": (0, 1, 2), "plain56": (0,), "resnet56": (0, 1, 2)}
EPOCH = 60_000 / 128
MAIN_STEPS, SMOKE_STEPS = 9375, 20   # 20 epochs
ARGS = ("cifar10", "smoke")


def get_config(arg: str | None = None):
    """resnet_cifar's recipe for MAIN_STEPS with its two decays at 50% and 75%, training error
    logged every 20 steps, test error every epoch."""
    words = set(filter(None, (arg or "").split(",")))
    if words - set(ARGS):
        raise ConfigError(f"experiments/plain_vs_residual: ARG must be a comma-separated subset of "
                          f"{ARGS}; got {arg!r}")
    dataset = "cifar10" if "cifar10" in words else "fashion_mnist"
    c = config_lib.load_config(f"{BASE}:{MODELS[0]},{dataset}")
    c.seed = 0
    c.num_steps = SMOKE_STEPS if "smoke" in words else MAIN_STEPS
    c.schedule.name = "piecewise"
    c.schedule.unit = "steps"
    c.schedule.base_lr = 0.1
    c.schedule.boundaries = (0.5 * c.num_steps, 0.75 * c.num_steps)
    c.schedule.warmup = 0.0
    c.log_every_steps = 20
    c.eval_every_steps = min(469, c.num_steps)
    c.checkpoint_every_steps = min(469, c.num_steps)
    c.keep_checkpoints = 1
    c.model.conv_impl = "onednn"  # the fastest on the CPU (benchmarks/README.md); XLA elsewhere
    c.data.pipeline = "device"  # arrays on the device, augmented there: no TensorFlow needed
    return c


def get_sweep(arg: str | None = None):
    """The eight points of SEEDS, depth 20 first: three hours of a 2-core CPU finish the four
    runs of depth 20 (34-46 minutes each, measured) or one of depth 56 (about 100), and finished
    runs are kept in runs/ beside this file (README.md, "Runs across machines")."""
    return [{"model.name": m, "seed": s} for m, seeds in SEEDS.items() for s in seeds]
