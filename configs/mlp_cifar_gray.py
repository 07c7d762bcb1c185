"""The dense baseline of the course notes: grayscale 32x32 CIFAR-10 flattened into an MLP.

    ./launch.sh configs/mlp_cifar_gray.py                    # CIFAR-10 through TFDS
    ./launch.sh configs/mlp_cifar_gray.py:fashion_mnist      # offline, on ../shared Fashion-MNIST

1024 inputs -> 1024 -> 512 -> 10 with ReLU: 1,579,530 parameters, against a few thousand for a
convolutional first layer (the notes' "Parameter Sharing" section). Adam-style training (AdamW, lr 1e-3,
cosine decay), 30 epochs. Expected: about 45% test accuracy on grayscale CIFAR-10 (dense networks do
poorly on raw pixels), about 89% on Fashion-MNIST.
"""

from cnnjax.train.defaults import default_config


def get_config(arg: str | None = None):
    c = default_config()
    c.model.name = "mlp"
    if arg in (None, "cifar10"):
        c.data.source = "tfds:cifar10"
        c.data.mean, c.data.std = (0.4809,), (0.2392,)
        c.data.eval_transform = c.data.train_transform = "none"
    elif arg == "fashion_mnist":
        c.data.source = "idx:../shared/data/fashion_mnist"
        c.data.mean, c.data.std = (0.2860,), (0.3530,)
        c.data.eval_transform = c.data.train_transform = "mnist"
    else:
        raise ValueError(f"mlp_cifar_gray takes no argument, 'cifar10' or 'fashion_mnist', got {arg!r}")
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.image_size = 32
    c.data.channels = 1
    c.data.num_classes = 10

    c.batch_size = 128
    c.eval_batch_size = 1000
    c.num_epochs = 30.0
    c.optimizer.name = "adamw"
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "cosine"
    c.schedule.base_lr = 1e-3
    c.eval_every_steps = 2_000
    c.checkpoint_every_steps = 2_000
    return c
