"""ResNet on ImageNet (He et al. 2016), residual and plain, 18 to 152 layers.

    ./launch.sh configs/resnet_imagenet.py:50       # one of 18, 34, 50, 101, 152, plain18, plain34
    ./launch.sh configs/resnet_imagenet.py:50,inception   # throughput: the cheaper Inception crops
    ./launch.sh configs/resnet_imagenet.py:50 --config.model.dtype=float32

Recipe (Sec. 3.4): SGD with momentum 0.9, weight decay 1e-4, batch 256, learning rate 0.1 divided by 10
when the error plateaus (here at epochs 30 and 60, the schedule torchvision and most reproductions use),
90 epochs; batch normalisation after every convolution, no dropout. Augmentation: random 224 crops of the
rescaled image with flips and the AlexNet colour (PCA) augmentation (the default, paper-faithful);
',inception' swaps in random-resized crops with flips (Szegedy et al. 2015; Goyal et al. 2017, the
transform of MLPerf and Flax's ImageNet example), which costs the host less per image
(benchmarks/input_pipeline.py). Computes in bfloat16 with float32 parameters and statistics.
Table 4 (10-crop) reports top-1 error 27.88 (ResNet-34 B), 22.85 (ResNet-50), 21.75 (ResNet-101),
21.43 (ResNet-152). Needs imagenet2012.
"""

from cnnjax.config import ConfigError, default_config
from cnnjax.data.presets import data_config

VARIANTS = ("18", "34", "50", "101", "152", "plain18", "plain34")


def get_config(arg: str | None = "50"):
    arg, _, transform = (arg or "50").partition(",")
    if arg not in VARIANTS or transform not in ("", "inception"):
        raise ConfigError(f"resnet_imagenet takes one of {VARIANTS}, optionally followed by "
                          f"',inception', got {arg + (',' + transform if transform else '')!r}")
    c = default_config()
    c.model.name = arg if arg.startswith("plain") else f"resnet{arg}"
    # bfloat16 compute on accelerators (parameters, batch-norm statistics and the loss stay float32);
    # --config.model.dtype=float32 for the papers' precision.
    c.model.dtype = "bfloat16"

    c.data = data_config("imagenet2012")  # AlexNet's augmentation, center 224 crop of 256
    if transform:  # ',inception': the cheaper Inception-style crop, for throughput runs
        c.data.train_transform = "random_resized_crop"

    c.batch_size = 256
    c.num_epochs = 90.0
    c.optimizer.name = "sgd"
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.schedule.name = "piecewise"
    c.schedule.base_lr = 0.1
    c.schedule.boundaries = (30.0, 60.0)
    c.schedule.decay_factor = 0.1
    c.eval_every_steps = 5_000
    c.checkpoint_every_steps = 5_000
    return c
