"""LeNet-5 on MNIST trained with XLA's convolution and with cnnjax's explicit, hand-derived one
(forward from the definition, hand-written backward pass): same seed, same steps, same data order.

    ./launch.sh experiments/conv_impl/config.py --sweep --workdir workdirs/exp_conv_impl
    ./launch.sh summarize workdirs/exp_conv_impl --metric train/loss
    .venv/bin/python experiments/conv_impl/compare.py workdirs/exp_conv_impl

The main job's config (configs/lenet5_mnist.py) shortened to 2 epochs (936 steps, the cosine
schedule over those 2 epochs) and logging every 50 steps; about 1 minute (xla) and a few minutes
(explicit) on a 2-core CPU. ':smoke' runs 30 steps per point. See README.md beside this file.
"""

import pathlib

from cnnjax import config as config_lib
from cnnjax.config import ConfigError
from cnnjax.sweep import product

BASE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "lenet5_mnist.py"


def get_config(arg: str | None = None):
    """configs/lenet5_mnist.py for 2 epochs with model.conv_impl as a config key."""
    if arg not in (None, "smoke"):
        raise ConfigError(f"experiments/conv_impl takes no argument or 'smoke', got {arg!r}")
    c = config_lib.load_config(f"{BASE}:smoke" if arg == "smoke" else str(BASE))
    c.model.conv_impl = "xla"  # a knob of cnnjax.models.LeNet5; the sweep overrides it
    if arg is None:
        c.num_epochs = 2.0
        c.log_every_steps = 50
        c.eval_every_steps = 469
        c.checkpoint_every_steps = 469
    # Measured on 2026-11-25 before launch.sh moved XLA:CPU convolutions to Eigen (commit 44cb7ad):
    # pinned to YNNPACK, the numerics its results have (README.md, "Numerics").
    c.xla_cpu_conv = "ynnpack"
    c.data.pipeline = "tfdata"  # measured through tf.data, before 'auto' served MNIST from the device
    return c


def get_sweep(arg: str | None = None):
    """conv_impl in (xla, explicit), seed 0: two points."""
    return product(**{"model.conv_impl": ["xla", "explicit"]}, seed=[0])
