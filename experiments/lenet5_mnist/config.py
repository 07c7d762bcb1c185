"""LeNet-5 on MNIST against the paper's 0.95% test error (LeCun et al. 1998, Sec. III-C): the main
job's config (configs/lenet5_mnist.py) over three seeds, at the 12 epochs it had when this was measured.

    ./launch.sh experiments/lenet5_mnist/config.py --sweep --workdir workdirs/exp_lenet5_mnist
    ./launch.sh summarize workdirs/exp_lenet5_mnist --metric eval/top1
    ./launch.sh experiments/lenet5_mnist/config.py:smoke --sweep     # 30 steps per point

About 3-4 minutes per seed on a 2-core CPU (about 12 in all). See README.md beside this file.
"""

import pathlib

from cnnjax import config as config_lib
from cnnjax.config import ConfigError
from cnnjax.sweep import product

BASE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "lenet5_mnist.py"


def get_config(arg: str | None = None):
    """configs/lenet5_mnist.py at 12 epochs (':smoke' for its 30-step version). The main job now runs
    10 epochs (99.08%) to stay well inside its 5-minute budget; these results were measured at 12."""
    if arg not in (None, "smoke"):
        raise ConfigError(f"experiments/lenet5_mnist takes no argument or 'smoke', got {arg!r}")
    c = config_lib.load_config(f"{BASE}:smoke" if arg == "smoke" else str(BASE))
    # Measured through tf.data, before 'auto' served MNIST from the device (another shuffle order):
    # pinned, so the command reproduces these results and the trained model experiments/equivariance uses.
    c.data.pipeline = "tfdata"
    if arg == "smoke":
        return c
    c.num_epochs = 12.0
    c.model.conv_impl = "xla"  # measured with XLA's convolution, before 'auto' chose oneDNN on the CPU
    # Measured on 2026-11-25 before launch.sh moved XLA:CPU convolutions to Eigen (commit 44cb7ad):
    # pinned to YNNPACK, the numerics its results have (README.md, "Numerics").
    c.xla_cpu_conv = "ynnpack"
    return c


def get_sweep(arg: str | None = None):
    """seed in (0, 1, 2): three points."""
    return product(seed=[0, 1, 2])
