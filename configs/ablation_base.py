"""The shared base of the short smallcnn ablations on Fashion-MNIST: experiments/relu_vs_tanh, lrn,
pooling_vs_strided and googlenet_aux start from this config and change only what they study.

    ./launch.sh configs/ablation_base.py                   # smallcnn, ReLU, 1,000 steps (about 3 min)
    ./launch.sh configs/ablation_base.py:cifar10,smoke     # CIFAR-10 (TFDS), 20 steps

smallcnn (four 3x3 convolutions of 16, 16, 32, 32 filters, 2x2 max pooling after the second and
fourth, one FC layer; ReLU, no normalisation, no dropout), Fashion-MNIST padded to 32x32, batch 128,
SGD with momentum 0.9 at a constant rate of 0.03 (the rate relu_vs_tanh tuned for both activations),
no weight decay, seed 0, train/top1 logged every 10 steps, test accuracy every 500. ARG is a
comma-separated subset of ARGS: 'cifar10' trains on tfds:cifar10 (3 channels, pad-crop-flip, CIFAR
mean/std), 'smoke' runs 20 steps.

This file changes only on purpose: every experiment built on it records its resolved configs in
experiments/NAME/resolved_configs.json, and tests/experiments/test_config_records.py fails until
those are re-recorded (python tests/experiments/test_config_records.py --write) with the results.
"""

from cnnjax.config import ConfigError, default_config
from cnnjax.data.presets import data_config

ARGS = ("cifar10", "smoke")
BASE_LR = 0.03
MAIN_STEPS, SMOKE_STEPS = 1000, 20


def parse_arg(arg: str | None, accepted: tuple[str, ...] = ARGS, owner: str = "ablation_base"
              ) -> set[str]:
    """'cifar10,smoke' -> {'cifar10', 'smoke'}; ConfigError naming the `accepted` words otherwise."""
    words = set(filter(None, (arg or "").split(",")))
    if words - set(accepted):
        raise ConfigError(f"{owner}: ARG must be a comma-separated subset of {accepted}; got {arg!r}")
    return words


def get_config(arg: str | None = None):
    """smallcnn on Fashion-MNIST (or CIFAR-10), SGD with momentum at a constant rate."""
    words = parse_arg(arg)
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

    c.data = data_config("cifar10") if "cifar10" in words else data_config("fashion_mnist", image_size=32)
    c.data.num_classes = 10

    c.batch_size = 128
    c.eval_batch_size = 1000
    c.num_steps = SMOKE_STEPS if "smoke" in words else MAIN_STEPS
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 0.0
    c.optimizer.clip_grad_norm = 0.0
    c.schedule.name = "constant"
    c.schedule.unit = "steps"
    c.schedule.base_lr = BASE_LR
    c.schedule.warmup = 0.0
    c.loss.label_smoothing = 0.0

    c.log_every_steps = 10
    c.eval_every_steps = 500
    c.checkpoint_every_steps = 500
    c.keep_checkpoints = 1
    c.best_metric = "eval/top1"
    c.best_mode = "max"
    return c


def preregistered_run(c, words: set[str], *, tune_steps: int, main_steps: int, tune_seed: int,
                      seed: int) -> None:
    """Sets `c` up as the tuning run ('tune' in words) or a main run of a preregistered experiment:
    its length ('smoke' keeps SMOKE_STEPS), its seed, a cosine decay to 0 at its end (so that the
    weights and batch-norm statistics settle before the one evaluation, there) and a checkpoint
    every 500 steps."""
    if "smoke" not in words:
        c.num_steps = tune_steps if "tune" in words else main_steps
    c.seed = tune_seed if "tune" in words else seed
    c.schedule.name = "cosine"
    c.eval_every_steps = c.num_steps
    c.checkpoint_every_steps = 500
