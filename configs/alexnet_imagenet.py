"""AlexNet on ImageNet (Krizhevsky, Sutskever and Hinton 2012), with the paper's training recipe.

    ./launch.sh configs/alexnet_imagenet.py --config.data.data_dir=/path/to/tfds
    ./launch.sh configs/alexnet_imagenet.py:torchvision    # the one-tower variant (64-192-384-256-256)

Two-tower grouping (groups=2 in conv2, conv4, conv5), LRN after conv1 and conv2, overlapping 3/2 max
pooling, dropout 0.5 in the first two FC layers: 60,965,224 parameters. Recipe (Sec. 5): SGD with momentum
0.9, weight decay 5e-4, batch 128, learning rate 0.01 divided by 10 when the validation error stops
improving (three times in the paper), about 90 epochs. Augmentation (Sec. 4.1): shorter side 256, random
224 crops, horizontal flips, PCA lighting noise with std 0.1. The paper reports 40.7% / 18.2% top-1 /
top-5 error with 10-crop testing (one network). Needs imagenet2012 prepared for TFDS (manual download);
runtime: days on one GPU.
"""

from cnnjax.config import ConfigError, default_config
from cnnjax.data.presets import data_config


def get_config(arg: str | None = None):
    c = default_config()
    c.model.name = {None: "alexnet", "torchvision": "alexnet_torchvision"}.get(arg)
    if c.model.name is None:
        raise ConfigError(f"alexnet_imagenet takes no argument or 'torchvision', got {arg!r}")
    # bfloat16 compute on accelerators (parameters, batch-norm statistics and the loss stay float32);
    # --config.model.dtype=float32 for the papers' precision.
    c.model.dtype = "bfloat16"

    c.data = data_config("imagenet2012")  # AlexNet's augmentation, center 224 crop of 256

    c.batch_size = 128
    c.eval_batch_size = 500
    c.num_epochs = 90.0
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.schedule.name = "plateau"
    c.schedule.base_lr = 0.01
    c.schedule.decay_factor = 0.1
    c.schedule.patience = 2
    c.log_every_steps = 100
    c.eval_every_steps = 10_000
    c.checkpoint_every_steps = 10_000
    return c
