"""Every config family's training and evaluation steps.

The small families run one step (and an evaluation) through the whole loop, at tiny sizes on
synthetic data: the configs keep their models, optimizers, schedules and losses; only the data
(synthetic, small images, 10 classes) and the run length are overridden. The ImageNet families go
through the same step functions with jax.eval_shape, at their true sizes (224x224x3, 1,000 classes,
the config's batch and evaluation crops): each would take a minute to compile on the 2-core CPU,
and the loop around the step is the one the small families run.
"""

import pathlib

import jax
import numpy as np
import pytest

from cnnjax import config as config_io
from cnnjax.data.config import eval_crops
from cnnjax.models import split_outputs
from cnnjax.train import distributed, loop
from cnnjax.train.metrics import read_metrics
from cnnjax.train.optim import make_optimizer
from cnnjax.train.steps import jit_steps

REPO = pathlib.Path(__file__).resolve().parents[2]

# (config spec, image side, channels): the smallest inputs each architecture accepts.
FAMILIES = [
    ("lenet5_mnist.py", 32, 1),
    ("mlp_cifar_gray.py:fashion_mnist", 32, 1),
    ("resnet_cifar.py:resnet20", 32, 3),
]
# (config spec, auxiliary classifiers in training)
IMAGENET_FAMILIES = [("alexnet_imagenet.py", 0), ("vgg_imagenet.py:a", 0), ("vgg_imagenet.py:e", 0),
                     ("googlenet_imagenet.py", 2), ("resnet_imagenet.py:18", 0),
                     ("resnet_imagenet.py:50", 0)]
IMAGENET_TRAIN_EXAMPLES = 1_281_167


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
    final = loop.train_and_evaluate(config, tmp_path)
    assert final["eval/examples"] == 8
    losses = [r["train/loss"] for r in read_metrics(tmp_path) if "train/loss" in r]
    assert len(losses) == 2 and all(0.0 < loss < 50.0 for loss in losses)


@pytest.mark.parametrize("spec,aux_heads", IMAGENET_FAMILIES, ids=[f[0] for f in IMAGENET_FAMILIES])
def test_each_imagenet_config_steps_at_its_true_size(spec, aux_heads):
    config = config_io.load_config(str(REPO / "configs" / spec))
    loop.check_run_config(config)
    d = config.data
    image_shape = (d.image_size, d.image_size, d.channels)
    model = loop.build_model(config, d.num_classes)
    steps_per_epoch, total_steps = loop.run_length(config, IMAGENET_TRAIN_EXAMPLES)
    tx, schedule = make_optimizer(config.optimizer, config.schedule, steps_per_epoch, total_steps,
                                  eval_every_steps=config.eval_every_steps)
    assert float(schedule(0)) > 0.0
    state = jax.eval_shape(loop.train_state_init(config, model, tx, image_shape))

    # the training step: a state of the same structure and shapes, scalar metrics, and (GoogLeNet)
    # the auxiliary classifiers' logits in training mode only
    batch = {"image": jax.ShapeDtypeStruct((config.batch_size, *image_shape), np.uint8),
             "label": jax.ShapeDtypeStruct((config.batch_size,), np.int32)}
    replicated, split = distributed.data_shardings(distributed.data_mesh())  # the loop's
    train, evaluate = jit_steps(d.mean, d.std, config.model.dtype, config.loss.label_smoothing,
                                config.loss.aux_weight, replicated, split)
    new_state, metrics = jax.eval_shape(train, state, batch, jax.random.key(0))
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state.params) == jax.tree.map(
        lambda a: (a.shape, a.dtype), state.params)
    assert {k: v.shape for k, v in metrics.items()} == {
        k: () for k in ("loss", "top1", "top5", "grad_norm", "finite")}
    images = jax.ShapeDtypeStruct((2, *image_shape), np.float32)
    for train_mode, heads in ((True, aux_heads), (False, 0)):
        out = jax.eval_shape(lambda v, x, t=train_mode: model.apply(
            v, x, train=t, rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"])[0],
            state.variables(), images)
        logits, aux = split_outputs(out)
        assert logits.shape == (2, d.num_classes) and len(aux) == heads
        assert all(a.shape == (2, d.num_classes) for a in aux)

    # the evaluation step with the config's crops per example
    crops = eval_crops(d)
    shape = (config.eval_batch_size, *((crops,) if crops > 1 else ()), *image_shape)
    sums = jax.eval_shape(evaluate, state, {
        "image": jax.ShapeDtypeStruct(shape, np.uint8),
        "label": jax.ShapeDtypeStruct((config.eval_batch_size,), np.int32),
        "mask": jax.ShapeDtypeStruct((config.eval_batch_size,), np.bool_)})
    assert sums["predictions"].shape == (config.eval_batch_size,)
