"""googlenet_small (GoogLeNet's Table 1 topology with every width / 8, batch norm, for 32x32
inputs) without and with its two auxiliary classifiers on Inception 4a and 4d (Szegedy et al.
2015, Sec. 5: loss weight 0.3, discarded at inference, "relatively minor (around 0.5%)";
Inception-v3, Szegedy et al. 2016, Sec. 4: they do not speed up early training and act as
regularisers), two seeds each, short runs on Fashion-MNIST.

    ./launch.sh experiments/googlenet_aux/config.py --sweep --workdir workdirs/exp_googlenet_aux
    ./launch.sh summarize workdirs/exp_googlenet_aux --metric eval/top1    # results.*
    .venv/bin/python experiments/googlenet_aux/seed_stats.py workdirs/exp_googlenet_aux  # figure
    ./launch.sh summary googlenet_small --norm=batch                        # parameters

The two points of a seed start from the same main-network weights and see the same batches and
dropout masks: they differ only by the heads. Batch norm (norm='batch', as Inception-v2/v3 and
torchvision's GoogLeNet) because without it the network learned too slowly for this CPU budget
(README.md). The data (Fashion-MNIST from ../shared, padded to 32x32) and the switches come from
configs/ablation_base.py: ARG 'cifar10' trains on tfds:cifar10 (3 channels, pad-crop-flip),
'smoke' runs 20 steps per point. Timings and results: README.md beside this file; the resolved
configs: resolved_configs.json.
"""

import pathlib

from cnnjax import config as config_lib
from cnnjax.sweep import product

BASE = pathlib.Path(__file__).resolve().parents[2] / "configs" / "ablation_base.py"
MAIN_STEPS = 300
SEEDS = (0, 1)
ARGS = ("cifar10", "smoke")


def get_config(arg: str | None = None):
    """googlenet_small with batch norm and its auxiliary heads (weight 0.3), batch 64, SGD with
    momentum 0.9 from 0.05 with cosine decay to 0, no weight decay, MAIN_STEPS steps, test
    accuracy at the end."""
    words = config_lib.load_module(str(BASE)).parse_arg(arg, ARGS, "experiments/googlenet_aux")
    c = config_lib.load_config(f"{BASE}:{arg}" if arg else str(BASE))
    # The base trains smallcnn: switch the model as --config.model.name would (googlenet_small's
    # defaults, ReLU and max pooling as in the base), with batch norm.
    config_lib.switch_model(c.model, "googlenet_small")
    c.model.norm = "batch"
    c.loss.aux_weight = 0.3
    c.batch_size = 64
    # Decayed to 0: at a constant 0.05 the test error of the last step swung by several points
    # between seeds and evaluations (README.md, const400_*).
    c.schedule.name = "cosine"
    c.schedule.base_lr = 0.05
    if "smoke" not in words:
        c.num_steps = MAIN_STEPS
    c.log_every_steps = 20
    c.eval_every_steps = MAIN_STEPS
    c.checkpoint_every_steps = MAIN_STEPS
    return c


def get_sweep(arg: str | None = None):
    """aux_heads in (False, True) x seed in SEEDS: four points."""
    return product(**{"model.aux_heads": [False, True]}, seed=list(SEEDS))
