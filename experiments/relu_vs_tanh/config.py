"""smallcnn (four 3x3 conv layers of 16, 16, 32, 32 filters, 2x2 max pooling after the second
and fourth, one FC layer) with ReLU against tanh on Fashion-MNIST: steps to reach 25% training
error (Krizhevsky et al. 2012, Sec. 3.1 and Fig. 1: about six times fewer with ReLU on CIFAR-10).

    # 1. learning rate per activation: 3 x 2 short runs (200 steps), pick by final train/loss
    ./launch.sh experiments/relu_vs_tanh/config.py:tune --sweep --workdir workdirs/exp_relu_vs_tanh_tune
    ./launch.sh summarize workdirs/exp_relu_vs_tanh_tune --metric train/loss
    # 2. the curves at the chosen rates (TUNED_LR below), seed 0
    ./launch.sh experiments/relu_vs_tanh/config.py --sweep --workdir workdirs/exp_relu_vs_tanh
    ./launch.sh summarize workdirs/exp_relu_vs_tanh --metric train/top1
    .venv/bin/python experiments/relu_vs_tanh/steps_to_error.py workdirs/exp_relu_vs_tanh

ARG is a comma-separated list of: 'tune' (the learning-rate grid, short runs), 'cifar10'
(tfds:cifar10, 3 channels, pad-crop-flip, CIFAR mean/std in place of Fashion-MNIST), 'smoke'
(20 steps per point). Other experiments on smallcnn (pooling_vs_strided, lrn) start from this
file's get_config. Timings and results: README.md beside this file.
"""

from cnnjax.sweep import product, zip_
from cnnjax.train.defaults import default_config

DATASETS = {
    "fashion_mnist": dict(source="idx:../shared/data/fashion_mnist", channels=1,
                          train_transform="mnist", eval_transform="mnist",
                          mean=(0.2860,), std=(0.3530,)),
    "cifar10": dict(source="tfds:cifar10", channels=3, train_transform="cifar",
                    eval_transform="none", mean=(0.4914, 0.4822, 0.4465),
                    std=(0.2470, 0.2435, 0.2616)),
}
ACTIVATIONS = ("relu", "tanh")
LR_GRID = (0.01, 0.03, 0.1)
# Picked by `:tune` (lowest final train/loss after TUNE_STEPS; see README.md).
TUNED_LR = {"relu": 0.03, "tanh": 0.03}
MAIN_STEPS, TUNE_STEPS, SMOKE_STEPS = 1000, 200, 20
ARGS = ("tune", "cifar10", "smoke")


def parse_arg(arg: str | None) -> set[str]:
    """'tune,cifar10' -> {'tune', 'cifar10'}; ValueError naming the accepted words otherwise."""
    words = set(filter(None, (arg or "").split(",")))
    if words - set(ARGS):
        raise ValueError(f"experiments/relu_vs_tanh: ARG must be a comma-separated subset of "
                         f"{ARGS}; got {arg!r}")
    return words


def get_config(arg: str | None = None):
    """smallcnn, SGD with momentum 0.9 at a constant rate, batch 128, no weight decay, seed 0;
    train/top1 logged every 10 steps (the mean over those 10 training batches)."""
    words = parse_arg(arg)
    d = DATASETS["cifar10" if "cifar10" in words else "fashion_mnist"]
    c = default_config()
    c.seed = 0
    c.model.name = "smallcnn"
    c.model.dtype = "float32"
    c.model.widths = (16, 16, 32, 32)
    c.model.activation = "relu"
    c.model.norm = "none"
    c.model.pool = "max"
    c.model.conv_impl = "xla"
    c.model.dropout_rate = 0.0

    c.data.source = d["source"]
    c.data.eval_source = ""
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.train_transform, c.data.eval_transform = d["train_transform"], d["eval_transform"]
    c.data.image_size = 32
    c.data.channels = d["channels"]
    c.data.num_classes = 10
    c.data.mean, c.data.std = d["mean"], d["std"]

    c.batch_size = 128
    c.eval_batch_size = 1000
    c.num_steps = SMOKE_STEPS if "smoke" in words else TUNE_STEPS if "tune" in words else MAIN_STEPS
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 0.0
    c.optimizer.clip_grad_norm = 0.0
    c.schedule.name = "constant"
    c.schedule.unit = "steps"
    c.schedule.base_lr = TUNED_LR["relu"]
    c.schedule.warmup = 0.0
    c.loss.label_smoothing = 0.0

    c.log_every_steps = 10
    c.eval_every_steps = 500
    c.checkpoint_every_steps = 500
    c.keep_checkpoints = 1
    c.best_metric = "eval/top1"
    c.best_mode = "max"
    return c


def get_sweep(arg: str | None = None):
    """':tune': activation x base_lr over LR_GRID (six points); otherwise each activation at its
    TUNED_LR (two points), seed 0 throughout."""
    if "tune" in parse_arg(arg):
        return product(**{"model.activation": list(ACTIVATIONS), "schedule.base_lr": list(LR_GRID)})
    return zip_(**{"model.activation": list(ACTIVATIONS),
                   "schedule.base_lr": [TUNED_LR[a] for a in ACTIVATIONS]})
