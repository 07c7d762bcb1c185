"""A LeNet-5 run small enough for tests: synthetic 32x32x1 data, constant learning rate, a few steps.

    python -m cnnjax.cli train tests/helpers/tiny_config.py --workdir /tmp/w --config.num_steps=8
"""

from cnnjax.config import default_config


def get_config(arg=None):
    c = default_config()
    c.model.name = arg or "lenet5"
    c.model.conv_impl = "xla"
    c.data.source = "synthetic"
    c.data.synthetic_shape = (32, 32, 1)
    c.data.synthetic_examples = 256
    c.data.image_size = 32
    c.data.channels = 1
    c.data.num_classes = 10
    c.data.train_transform = c.data.eval_transform = "none"
    c.data.mean, c.data.std = (0.5,), (0.25,)
    c.batch_size = 16
    c.eval_batch_size = 64
    c.num_steps = 8
    c.optimizer.name = "sgd"
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "constant"
    c.schedule.base_lr = 0.05
    c.log_every_steps = 2
    c.eval_every_steps = 4
    c.checkpoint_every_steps = 2
    c.keep_checkpoints = 10
    c.async_checkpoints = False
    return c
