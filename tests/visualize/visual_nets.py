"""Small flax networks whose outputs and gradients can be written down by hand, for the tests."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnnjax.models import layers


def ones(key, shape, dtype=jnp.float32):
    return jnp.ones(shape, dtype)


class LinearBoxNet(nn.Module):
    """Convolutions with all-ones kernels and average pools, no bias, no nonlinearity: the gradient
    of a unit with respect to the input is a repeated convolution of box filters.
    (N, 48, 48, 1) -> c1 (48, 48, 2) -> p1 (24, 24, 2) -> c2 (22, 22, 2) -> p2 (11, 11, 2)
    -> c3 (7, 7, 1)."""

    @nn.compact
    def __call__(self, x, *, train=False):
        conv = dict(use_bias=False, kernel_init=ones)
        x = layers.Conv(2, 3, padding=1, name="c1", **conv)(x)
        x = layers.Pool("avg", 2, 2, name="p1")(x)
        x = layers.Conv(2, 3, padding="VALID", name="c2", **conv)(x)
        x = layers.Pool("avg", 2, 2, name="p2")(x)
        x = layers.Conv(1, 5, padding="VALID", name="c3", **conv)(x)
        return jnp.mean(x, axis=(1, 2))


class TwoLayerNet(nn.Module):
    """conv (3x3, 'SAME', 4 filters) -> tanh -> global average pool -> dense (3 classes)."""

    @nn.compact
    def __call__(self, x, *, train=False):
        x = jnp.tanh(layers.Conv(4, 3, padding=1, name="conv")(x))
        x = layers.GlobalAvgPool(name="gap")(x)
        return layers.Dense(3, name="fc")(x)


class ValidNet(nn.Module):
    """conv 3x3 VALID -> relu -> max pool 2 -> conv 3x3 VALID -> relu: no padding anywhere, so a
    unit computed on its receptive field alone is the same unit."""

    @nn.compact
    def __call__(self, x, *, train=False):
        x = jax.nn.relu(layers.Conv(4, 3, padding="VALID", name="c1")(x))
        x = layers.Pool("max", 2, 2, name="p1")(x)
        x = layers.Conv(5, 3, padding="VALID", name="c2")(x)
        return jnp.mean(x, axis=(1, 2))
