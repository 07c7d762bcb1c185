"""GoogLeNet on ImageNet (Szegedy et al. 2015), with its two auxiliary classifiers.

    ./launch.sh configs/googlenet_imagenet.py
    ./launch.sh configs/googlenet_imagenet.py --config.model.aux_heads=false

The network of Table 1 with 1x1 reductions, the auxiliary classifiers after 4a and 4d weighted 0.3 in the
loss (Sec. 5), dropout 0.4. Recipe (Sec. 6): SGD with momentum 0.9, learning rate decreased by 4% every 8
epochs; random-resized crops of 8%-100% of the area with aspect ratio in [3/4, 4/3]. The paper gives no
base rate, batch size or weight decay: we take Caffe's bvlc_googlenet solver (lr 0.01 at batch 32, weight
decay 2e-4) scaled linearly to batch 256. Table 5 reports 10.07% top-5 error for one model
with one crop and 6.67% for the 7-model, 144-crop ensemble. Needs imagenet2012 for TFDS.
"""

from cnnjax.config import ConfigError, default_config
from cnnjax.data.presets import data_config


def get_config(arg: str | None = None):
    if arg:
        raise ConfigError(f"googlenet_imagenet takes no argument, got {arg!r}")
    c = default_config()
    c.model.name = "googlenet"
    c.model.aux_heads = True
    # bfloat16 compute on accelerators (parameters, batch-norm statistics and the loss stay float32);
    # --config.model.dtype=float32 for the papers' precision.
    c.model.dtype = "bfloat16"

    c.data = data_config("imagenet2012", train_transform="random_resized_crop", pca_lighting_std=0.0)

    c.batch_size = 256
    c.num_epochs = 120.0
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 2e-4
    c.schedule.name = "exponential"
    c.schedule.base_lr = 0.08
    c.schedule.decay_factor = 0.96
    c.schedule.decay_every = 8.0
    c.loss.aux_weight = 0.3
    c.eval_every_steps = 5_000
    c.checkpoint_every_steps = 5_000
    return c
