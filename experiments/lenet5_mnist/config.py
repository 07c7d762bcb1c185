"""LeNet-5 on MNIST against the paper's 0.95% test error (LeCun et al. 1998, Sec. III-C): the main
job's config (configs/lenet5_mnist.py, 12 epochs) over three seeds.

    ./launch.sh experiments/lenet5_mnist/config.py --sweep --workdir workdirs/exp_lenet5_mnist
    ./launch.sh summarize workdirs/exp_lenet5_mnist --metric eval/top1
    ./launch.sh experiments/lenet5_mnist/config.py:smoke --sweep     # 30 steps per point

About 3-4 minutes per seed on a 2-core CPU (about 12 in all). See README.md beside this file.
"""

import pathlib

from cnnjax.sweeps_lib import product
from cnnjax.train import config_io

BASE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "lenet5_mnist.py"


def get_config(arg: str | None = None):
    """configs/lenet5_mnist.py unchanged (':smoke' for its 30-step version)."""
    if arg not in (None, "smoke"):
        raise ValueError(f"experiments/lenet5_mnist takes no argument or 'smoke', got {arg!r}")
    return config_io.load_config(f"{BASE}:smoke" if arg == "smoke" else str(BASE))


def get_sweep(arg: str | None = None):
    """seed in (0, 1, 2): three points."""
    return product(seed=[0, 1, 2])
