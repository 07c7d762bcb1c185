"""The dense baseline of the course notes: grayscale 32x32 CIFAR-10 flattened into an MLP.

    ./launch.sh configs/mlp_cifar_gray.py                    # CIFAR-10 through TFDS
    ./launch.sh configs/mlp_cifar_gray.py:fashion_mnist      # offline, on ../shared Fashion-MNIST

1024 inputs -> 1024 -> 512 -> 10 with ReLU: 1,579,530 parameters, against a few thousand for a
convolutional first layer (the notes' "Parameter Sharing" section). Adam-style training (AdamW, lr 1e-3,
cosine decay), 30 epochs. Expected: about 45% test accuracy on grayscale CIFAR-10 (dense networks do
poorly on raw pixels), about 89% on Fashion-MNIST.
"""

from cnnjax.config import ConfigError, default_config
from cnnjax.data.presets import data_config


def get_config(arg: str | None = None):
    c = default_config()
    c.model.name = "mlp"
    if arg in (None, "cifar10"):
        # Grayscale CIFAR-10 (luma of the RGB images) and its statistics, no augmentation.
        c.data = data_config("cifar10", channels=1, mean=(0.4809,), std=(0.2392,),
                             train_transform="none", eval_transform="none")
    elif arg == "fashion_mnist":
        c.data = data_config("fashion_mnist", image_size=32)
    else:
        raise ConfigError(f"mlp_cifar_gray takes no argument, 'cifar10' or 'fashion_mnist', got {arg!r}")

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
