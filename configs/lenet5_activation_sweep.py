"""LeNet-5 on MNIST, tanh (the paper's squashing function, LeCun et al. 1998, Sec. II-B and App. A)
against ReLU, three seeds each: a sweep of six runs of configs/lenet5_mnist.py.

    ./launch.sh configs/lenet5_activation_sweep.py --sweep --dry-run          # the six commands
    ./launch.sh configs/lenet5_activation_sweep.py --sweep --parallel 2       # run them, 2 at a time
    ./launch.sh configs/lenet5_activation_sweep.py:smoke --sweep              # 30 steps per point
    ./launch.sh summarize workdirs/lenet5_activation_sweep              # results.csv, .md, figure

Each point trains in workdirs/lenet5_activation_sweep/<overrides>, e.g.
'model.activation=relu,seed=0'; running the sweep again skips finished points and resumes the others.
"""

import pathlib

from cnnjax import config as config_lib
from cnnjax.config import ConfigError
from cnnjax.sweep import product

BASE = pathlib.Path(__file__).with_name("lenet5_mnist.py")


def get_config(arg: str | None = None):
    """configs/lenet5_mnist.py (':smoke' for its 30-step version) with the activation as a config key."""
    if arg not in (None, "smoke"):
        raise ConfigError(f"lenet5_activation_sweep takes no argument or 'smoke', got {arg!r}")
    c = config_lib.load_config(f"{BASE}:smoke" if arg == "smoke" else str(BASE))
    c.model.activation = "tanh"  # a knob of cnnjax.models.LeNet5; the sweep overrides it
    return c


def get_sweep(arg: str | None = None):
    """activation in (tanh, relu) x seed in (0, 1, 2): six points."""
    return product(**{"model.activation": ["tanh", "relu"]}, seed=[0, 1, 2])
