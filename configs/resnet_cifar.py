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

from cnnjax.train.defaults import default_config

DEPTHS = (20, 32, 44, 56, 110)
DATASETS = {
    "cifar10": dict(source="tfds:cifar10", num_classes=10, channels=3, transform="cifar",
                    eval_transform="none", mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "cifar100": dict(source="tfds:cifar100", num_classes=100, channels=3, transform="cifar",
                     eval_transform="none", mean=(0.5071, 0.4865, 0.4409),
                     std=(0.2673, 0.2564, 0.2762)),
    "fashion_mnist": dict(source="idx:../shared/data/fashion_mnist", num_classes=10, channels=1,
                          transform="mnist", eval_transform="mnist", mean=(0.2860,), std=(0.3530,)),
}


def get_config(arg: str | None = "resnet20"):
    model, _, dataset = (arg or "resnet20").partition(",")
    dataset = dataset or "cifar10"
    kind, depth = model.rstrip("0123456789"), model[len(model.rstrip("0123456789")):]
    if kind not in ("resnet", "plain") or not depth or int(depth) not in DEPTHS:
        raise ValueError(f"resnet_cifar model must be resnet or plain with a depth in {DEPTHS}, "
                         f"got {model!r}")
    if dataset not in DATASETS:
        raise ValueError(f"resnet_cifar dataset must be one of {tuple(DATASETS)}, got {dataset!r}")
    d = DATASETS[dataset]
    c = default_config()
    c.model.name = model

    c.data.source = d["source"]
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.train_transform, c.data.eval_transform = d["transform"], d["eval_transform"]
    c.data.image_size = 32
    c.data.channels = d["channels"]
    c.data.num_classes = d["num_classes"]
    c.data.mean, c.data.std = d["mean"], d["std"]

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
