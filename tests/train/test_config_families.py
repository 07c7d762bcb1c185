"""One training step (and an evaluation) of every config family, at tiny sizes on synthetic data.

The configs keep their models, optimizers, schedules and losses; only the data (synthetic, small
images, 10 classes) and the run length are overridden, so each family's whole path through the loop runs.
"""

import pathlib

import pytest

from cnnjax import config as config_io
from cnnjax.train.loop import train_and_evaluate
from cnnjax.train.metrics import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[2]

# (config spec, image side, channels): the smallest inputs each architecture accepts.
FAMILIES = [
    ("lenet5_mnist.py", 32, 1),
    ("mlp_cifar_gray.py:fashion_mnist", 32, 1),
    ("resnet_cifar.py:resnet20", 32, 3),
    ("alexnet_imagenet.py", 67, 3),
    ("vgg_imagenet.py:a", 32, 3),
    ("googlenet_imagenet.py", 96, 3),
    ("resnet_imagenet.py:18", 32, 3),
]


@pytest.mark.slow  # > 5 s on the 2-core CPU
@pytest.mark.parametrize("spec,size,channels", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_one_step_of_each_config_family(spec, size, channels, tmp_path):
    config = config_io.load_config(str(REPO / "configs" / spec))
    config_io.apply_overrides(config, [
        "data.source=synthetic", f"data.synthetic_shape=({size}, {size}, {channels})",
        "data.synthetic_examples=8", f"data.image_size={size}", f"data.channels={channels}",
        "data.train_transform=none", "data.eval_transform=none", "data.num_classes=10",
        f"data.mean={(0.5,) * channels}", f"data.std={(0.25,) * channels}",
        "batch_size=2", "eval_batch_size=4", "num_steps=2", "log_every_steps=1",
        "eval_every_steps=2", "checkpoint_every_steps=2", "async_checkpoints=false",
        "schedule.unit=steps", "schedule.warmup=0.0"])
    if config.schedule.name == "piecewise":
        config_io.apply_overrides(config, ["schedule.boundaries=(1.0,)"])
    final = train_and_evaluate(config, tmp_path)
    assert final["eval/examples"] == 8
    losses = [r["train/loss"] for r in read_metrics(tmp_path) if "train/loss" in r]
    assert len(losses) == 2 and all(0.0 < loss < 50.0 for loss in losses)
