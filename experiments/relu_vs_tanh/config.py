"""smallcnn (four 3x3 conv layers of 16, 16, 32, 32 filters, 2x2 max pooling after the second
and fourth, one FC layer) with ReLU against tanh on Fashion-MNIST, from He-normal weights and from
AlexNet's initialisation (N(0, 0.01) weights, biases of 1 in conv2 and conv4): steps to reach
each of THRESHOLDS of training error (Krizhevsky et al. 2012, Sec. 3.1 and Fig. 1: 25% about six
times sooner with ReLU on CIFAR-10). The rule, the budget and
the results: README.md beside this file.

    # 1. learning rate per arm (activation x init) on TUNE_SEED: LR_GRID, TUNE_STEPS each
    ./launch.sh experiments/relu_vs_tanh/config.py:tune --sweep --workdir workdirs/exp_relu_vs_tanh_tune
    .venv/bin/python experiments/relu_vs_tanh/analyze.py tune workdirs/exp_relu_vs_tanh_tune
    # 2. every arm at its tuned rate (tuned_lr.json), SEEDS, MAIN_STEPS each
    ./launch.sh experiments/relu_vs_tanh/config.py --sweep --workdir workdirs/exp_relu_vs_tanh
    .venv/bin/python experiments/relu_vs_tanh/analyze.py main workdirs/exp_relu_vs_tanh

ARG is a comma-separated list of: 'tune' (the learning-rate grid on TUNE_SEED), 'cifar10'
(tfds:cifar10, 3 channels, pad-crop-flip, CIFAR mean/std in place of Fashion-MNIST), 'smoke' (20
steps per point). The network and data are configs/ablation_base.py's; this file adds the
activation and init arms, the constant rate Fig. 1 used (so that a crossing does not depend on
where a decay ends) and the sweeps.
"""

import pathlib

from cnnjax import config as config_lib
from cnnjax.sweep import chain, product, zip_

HERE = pathlib.Path(__file__).resolve().parent
BASE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "ablation_base.py"
ACTIVATIONS = ("relu", "tanh")
# 'alexnet', not the bare 'normal_0.01' of the first tuning sweep: with zero biases ReLU stayed at
# chance at every rate (README.md, "Amendment").
INITS = ("he_normal", "alexnet")
ARM_KEYS = ("model.activation", "model.weight_init")
LR_GRID = (0.01, 0.03, 0.1, 0.3)
TUNE_SEED = 100           # not one of SEEDS: the rates are chosen on runs the verdict never sees
SEEDS = (0, 1, 2)
EPOCH = 60_000 / 128      # steps per epoch of Fashion-MNIST at batch 128
TUNE_STEPS = 938          # 2 epochs
MAIN_STEPS = 3750         # 8 epochs: the budget of every run
RELU_EPOCHS = 6           # the lowest threshold judged is one every ReLU run reaches within this
THRESHOLDS = (0.25, 0.20, 0.15, 0.12, 0.10, 0.09, 0.08, 0.07, 0.06, 0.05, 0.04)
WINDOW = 5                # training error at a log = 1 - mean train/top1 of the last WINDOW logs
TUNED_LR_FILE = HERE / "tuned_lr.json"
ARGS = ("tune", "cifar10", "smoke")


def parse_arg(arg: str | None) -> set[str]:
    """'tune,cifar10' -> {'tune', 'cifar10'}; ConfigError naming the accepted words otherwise."""
    return config_lib.load_module(str(BASE)).parse_arg(arg, ARGS, "experiments/relu_vs_tanh")


def get_config(arg: str | None = None):
    """configs/ablation_base.py (smallcnn, SGD with momentum 0.9 at a constant rate, batch 128, no
    weight decay; train/top1 logged every 10 steps) for MAIN_STEPS, or TUNE_STEPS with 'tune'."""
    words = parse_arg(arg)
    base_words = ",".join(sorted(words - {"tune"}))
    c = config_lib.load_config(f"{BASE}:{base_words}" if base_words else str(BASE))
    if "smoke" not in words:
        c.num_steps = TUNE_STEPS if "tune" in words else MAIN_STEPS
    c.seed = TUNE_SEED if "tune" in words else SEEDS[0]
    c.model.conv_impl = "onednn"  # the fastest on the CPU (benchmarks/README.md); XLA elsewhere
    c.model.weight_init = INITS[0]
    # Its first tuning runs read Fashion-MNIST through tf.data, before the device path existed:
    # the whole experiment stays on it, so that every recorded run repeats bit for bit.
    c.data.pipeline = "tfdata"
    c.eval_every_steps = c.num_steps
    c.checkpoint_every_steps = 500
    return c


def tuned_rates() -> dict[str, float]:
    """{'relu,he_normal': rate, ...} as analyze.py picked them from the tuning sweep."""
    from cnnjax.sweep.compare import read_tuned_rates

    return read_tuned_rates(TUNED_LR_FILE, [f"{a},{i}" for a in ACTIVATIONS for i in INITS])


def get_sweep(arg: str | None = None):
    """':tune': arms x LR_GRID on TUNE_SEED; otherwise arms x SEEDS, each arm at its tuned rate."""
    arms = [(a, i) for a in ACTIVATIONS for i in INITS]
    if "tune" in parse_arg(arg):
        return product(**{"model.activation": list(ACTIVATIONS), "model.weight_init": list(INITS),
                          "schedule.base_lr": list(LR_GRID)})
    rates = tuned_rates()
    return chain(*(product(zip_(**{"model.activation": [a], "model.weight_init": [i],
                                   "schedule.base_lr": [rates[f"{a},{i}"]]}), seed=list(SEEDS))
                   for a, i in arms))
