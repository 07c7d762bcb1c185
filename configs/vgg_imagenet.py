"""VGG on ImageNet (Simonyan and Zisserman 2015), configurations A to E of Table 1.

    ./launch.sh configs/vgg_imagenet.py:d       # VGG-16; one of a, a_lrn, b, c, d, e
    ./launch.sh configs/vgg_imagenet.py:e --config.model.norm=batch  # VGG-19 with batch norm

Recipe (Sec. 3.1): SGD with momentum 0.9, batch 256, weight decay 5e-4, dropout 0.5 on the first two FC
layers, learning rate 0.01 divided by 10 when the validation accuracy stops improving (three times, 74
epochs). Single-scale training with 224 crops of images rescaled to S=256 (the paper's S=256 setting).
Table 3 reports top-1 / top-5 val. error at S=256 of 29.6/10.4 (A), 29.7/10.5 (A-LRN), 28.7/9.9 (B),
28.1/9.4 (C), 27.0/8.8 (D), 27.3/9.0 (E). Needs imagenet2012 for TFDS; runtime: weeks on one GPU.
"""

from cnnjax.config import ConfigError, default_config
from cnnjax.data.presets import data_config

VARIANTS = ("a", "a_lrn", "b", "c", "d", "e")


def get_config(arg: str | None = "d"):
    arg = arg or "d"
    if arg not in VARIANTS:
        raise ConfigError(f"vgg_imagenet takes one of {VARIANTS}, got {arg!r}")
    c = default_config()
    c.model.name = f"vgg_{arg}"
    # bfloat16 compute on accelerators (parameters, batch-norm statistics and the loss stay float32);
    # --config.model.dtype=float32 for the papers' precision.
    c.model.dtype = "bfloat16"

    c.data = data_config("imagenet2012")  # AlexNet's augmentation, center 224 crop of 256

    c.batch_size = 256
    c.num_epochs = 74.0
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.schedule.name = "plateau"
    c.schedule.base_lr = 0.01
    c.schedule.patience = 2
    c.eval_every_steps = 5_000
    c.checkpoint_every_steps = 5_000
    return c
