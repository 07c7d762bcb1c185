"""Helpers for the converter tests: abstract variables of a model, random concrete ones, and
torchvision's counts. Imported as helpers.convert (pyproject puts tests/ on pytest's path)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax import models
from cnnjax.convert import mapping

CIFAR_NAMES = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")

# torchvision's models: (state-dict entries including num_batches_tracked, parameters).
# Parameters are torchvision's published counts (its model docs). Entries: a ResNet has one entry
# per convolution, five per batch norm and the fc's two (resnet18: 20 convs and 20 BNs -> 122;
# resnet50: 53 and 53 -> 320); a VGG two per convolution, five per BN and six for the classifier
# (vgg16_bn: 13 convs -> 26 + 65 + 6 = 97); AlexNet five convolutions and three linear layers -> 16;
# GoogLeNet (with aux heads) 59 BasicConv2d of six entries each and five linear layers -> 364.
TORCHVISION = {
    "resnet18": (122, 11_689_512), "resnet34": (218, 21_797_672),
    "resnet50": (320, 25_557_032), "resnet101": (626, 44_549_160),
    "resnet152": (932, 60_192_808),
    "vgg11": (22, 132_863_336), "vgg11_bn": (62, 132_868_840),
    "vgg13": (26, 133_047_848), "vgg13_bn": (76, 133_053_736),
    "vgg16": (32, 138_357_544), "vgg16_bn": (97, 138_365_992),
    "vgg19": (38, 143_667_240), "vgg19_bn": (118, 143_678_248),
    "alexnet_torchvision": (16, 61_100_840),
    "googlenet_torchvision": (364, 13_004_888),
}


def default_classes(name: str) -> int:
    return 10 if name == "lenet5" or name in CIFAR_NAMES else 1000


def build(name: str, num_classes: int | None = None):
    """The cnnjax module a converter name builds."""
    spec = mapping.spec_for(name)
    classes = default_classes(name) if num_classes is None else num_classes
    return models.build(spec.model, num_classes=classes, **spec.knobs)


@functools.cache
def abstract(name: str, num_classes: int | None = None, hw: int | None = None) -> dict:
    """Abstract variables of converter model `name` for (1, hw, hw, C) inputs (default: the
    model's natural input); nothing allocated or compiled. Cached: callers must not modify it."""
    spec = mapping.spec_for(name)
    (h, w, c), _ = models.natural_input(spec.model)
    shape = (1, hw or h, hw or w, c)
    module = build(name, num_classes)
    return jax.eval_shape(lambda x: module.init(jax.random.key(0), x),
                          jax.ShapeDtypeStruct(shape, jnp.float32))


def random_variables(template: dict, seed: int = 0) -> dict:
    """Concrete float32 variables shaped like `template`: kernels N(0, 2/fan_in), biases and BN
    means N(0, 0.1^2), BN scales and variances U(0.5, 1.5); activations stay of order one."""
    rng = np.random.default_rng(seed)

    def leaf(path, sds):
        name = path[-1].key
        shape = sds.shape
        if name == "kernel":
            std = math.sqrt(2.0 / math.prod(shape[:-1]))
            x = rng.standard_normal(shape, dtype=np.float32)
            x *= np.float32(std)
            return x
        if name in ("scale", "var"):
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.1)

    return jax.tree_util.tree_map_with_path(leaf, template)


def assert_trees_equal(a: dict, b: dict) -> None:
    """Same nested keys, and bitwise-equal arrays of the same shape and dtype."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b),
                            strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape and x.dtype == y.dtype, jax.tree_util.keystr(path)
        assert np.array_equal(x, y), jax.tree_util.keystr(path)
