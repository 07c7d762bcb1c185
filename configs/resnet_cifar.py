"""ResNet and plain networks on CIFAR-10 (He et al. 2016, Sec. 4.2), depths 20 to 110.

    ./launch.sh configs/resnet_cifar.py:resnet20               # CIFAR-10 through TFDS
    ./launch.sh configs/resnet_cifar.py:plain56,fashion_mnist  # offline, on ../shared Fashion-MNIST

ARG is '<plain|resnet><20|32|44|56|110>[,<cifar10|cifar100|fashion_mnist>]'. 6n+2 layers with 16, 32, 64
filters, identity shortcuts padded with zeros (option A). Recipe: SGD with momentum 0.9, weight decay
1e-4, batch 128, learning rate 0.1 divided by 10 at 32k and 48k iterations, stop at 64k; 4-pixel padding,
random 32x32 crops and flips. (ResNet-110 warms up at 0.01 for 400 iterations, here a linear warm-up.)
Table 6 reports test error 8.75 (ResNet-20), 7.51 (32), 7.17 (44), 6.97 (56), 6.43 (110); Fig. 6 shows
plain-56 training error above plain-20's (degradation).
"""

from cnnjax.config import ConfigError, default_config
from cnnjax.data.presets import data_config

DEPTHS = (20, 32, 44, 56, 110)
DATASETS = ("cifar10", "cifar100", "fashion_mnist")  # presets of cnnjax.data.presets


def get_config(arg: str | None = "resnet20"):
    model, _, dataset = (arg or "resnet20").partition(",")
    dataset = dataset or "cifar10"
    kind, depth = model.rstrip("0123456789"), model[len(model.rstrip("0123456789")):]
    if kind not in ("resnet", "plain") or not depth or int(depth) not in DEPTHS:
        raise ConfigError(f"resnet_cifar model must be resnet or plain with a depth in {DEPTHS}, "
                          f"got {model!r}")
    if dataset not in DATASETS:
        raise ConfigError(f"resnet_cifar dataset must be one of {DATASETS}, got {dataset!r}")
    c = default_config()
    c.model.name = model

    c.data = data_config(dataset, image_size=32)  # Fashion-MNIST padded 28x28 -> 32x32

    c.batch_size = 128
    c.eval_batch_size = 1000
    c.num_steps = 64_000
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "piecewise"
    c.schedule.unit = "steps"
    c.schedule.base_lr = 0.1
    c.schedule.boundaries = (32_000.0, 48_000.0)
    c.schedule.warmup = 400.0 if depth == "110" else 0.0
    c.eval_every_steps = 2_000
    c.checkpoint_every_steps = 2_000
    return c
