"""googlenet_small (GoogLeNet's Table 1 topology with every width / 8, batch norm, for 32x32
inputs) without and with its two auxiliary classifiers on Inception 4a and 4d (Szegedy et al.
2015, Sec. 5: loss weight 0.3, discarded at inference, "relatively minor (around 0.5%)";
Inception-v3, Szegedy et al. 2016, Sec. 4: they act as regularisers), on Fashion-MNIST, 8 paired
seeds. The rule, the budget and the results: README.md beside this file.

    ./launch.sh experiments/googlenet_aux/config.py:tune --sweep --workdir DIR_TUNE
    .venv/bin/python experiments/compare_arms.py googlenet_aux tune DIR_TUNE
    ./launch.sh experiments/googlenet_aux/config.py --sweep --workdir DIR
    .venv/bin/python experiments/compare_arms.py googlenet_aux main DIR
    ./launch.sh summary googlenet_small --norm=batch                        # parameters

The two points of a seed start from the same main-network weights and see the same batches and
dropout masks: they differ only by the heads. Batch norm (norm='batch', as Inception-v2/v3 and
torchvision's GoogLeNet) because without it the network learned too slowly for this CPU budget
(README.md). The data (Fashion-MNIST from ../shared, padded to 32x32) and the switches come from
configs/ablation_base.py: ARG is a comma-separated subset of ARGS: 'tune', 'cifar10'
(tfds:cifar10, 3 channels, pad-crop-flip), 'smoke' (20 steps per point).
"""

import pathlib

from cnnjax import config as config_lib
from cnnjax.stats import Rule
from cnnjax.sweep.compare import arms_sweep

HERE = pathlib.Path(__file__).resolve().parent
BASE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "ablation_base.py"
ARM_KEY, ARMS = "model.aux_heads", (False, True)
# Test error of B (heads) - A (none), in points: the paper says negative; 0.3 points is the
# margin within which "no effect" is shown.
RULE = Rule(direction=-1, margin=0.3)
PAIRED = True
LR_GRID = (0.02, 0.05, 0.1)
TUNE_SEED = 100
SEEDS = tuple(range(8))
TUNE_STEPS = 938          # 1 epoch at batch 64
MAIN_STEPS = 1875         # 2 epochs
TUNED_LR_FILE = HERE / "tuned_lr.json"
ARGS = ("tune", "cifar10", "smoke")


def get_config(arg: str | None = None):
    """googlenet_small with batch norm and its auxiliary heads (weight 0.3), batch 64, SGD with
    momentum 0.9 and cosine decay to 0 over MAIN_STEPS (TUNE_STEPS with 'tune'), no weight decay;
    test accuracy at the last step."""
    words = config_lib.load_module(str(BASE)).parse_arg(arg, ARGS, "experiments/googlenet_aux")
    base_words = ",".join(sorted(words - {"tune"}))
    c = config_lib.load_config(f"{BASE}:{base_words}" if base_words else str(BASE))
    # The base trains smallcnn: switch the model as --config.model.name would (googlenet_small's
    # defaults, ReLU and max pooling as in the base), with batch norm.
    config_lib.switch_model(c.model, "googlenet_small")
    c.model.norm = "batch"
    c.model.conv_impl = "onednn"  # the fastest on the CPU (benchmarks/README.md); XLA elsewhere
    c.data.pipeline = "device"  # arrays on the device, augmented there: no TensorFlow needed
    c.loss.aux_weight = 0.3
    c.batch_size = 64
    c.schedule.base_lr = 0.05
    config_lib.load_module(str(BASE)).preregistered_run(
        c, words, tune_steps=TUNE_STEPS, main_steps=MAIN_STEPS, tune_seed=TUNE_SEED, seed=SEEDS[0])
    c.log_every_steps = 20
    return c


def get_sweep(arg: str | None = None):
    """'tune': aux_heads x LR_GRID on TUNE_SEED; otherwise aux_heads x SEEDS at each arm's rate."""
    words = config_lib.load_module(str(BASE)).parse_arg(arg, ARGS, "experiments/googlenet_aux")
    return arms_sweep(ARM_KEY, ARMS, tune="tune" in words, grid=LR_GRID, seeds=SEEDS,
                      rates_file=TUNED_LR_FILE)
