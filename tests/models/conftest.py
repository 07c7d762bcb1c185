"""Helpers for the model tests: parameter counts without allocating, small real inits."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest


def abstract_variables(model: nn.Module, shape: tuple[int, ...]) -> dict:
    """The model's variables as ShapeDtypeStructs (nothing allocated, nothing compiled)."""
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(lambda x: model.init({"params": jax.random.key(0)}, x), x)


def count(tree) -> int:
    return sum(int(a.size) for a in jax.tree.leaves(tree))


@pytest.fixture
def param_count():
    """param_count(model, (N, H, W, C)) -> number of entries in the 'params' collection."""
    return lambda model, shape: count(abstract_variables(model, shape)["params"])


@pytest.fixture
def variables_of():
    """variables_of(model, (N, H, W, C)) -> abstract variables (ShapeDtypeStruct leaves)."""
    return abstract_variables


@pytest.fixture(scope="session")
def numpy_init():
    """numpy_init(model, (N, H, W, C), seed) -> variables drawn with numpy (see numpy_variables)."""
    return numpy_variables


def numpy_variables(model: nn.Module, shape: tuple[int, ...], seed: int = 0) -> dict:
    """Variables with the model's structure drawn with numpy (no jax compilation, unlike
    model.init): kernels He-normal, biases and BN shifts small, BN scales near 1, running
    means near 0 and running variances in [0.5, 1.5]."""
    rng = np.random.default_rng(seed)
    abstract = abstract_variables(model, shape)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path[-1:], simple=True)
        if name == "kernel":
            return rng.normal(0, np.sqrt(2 / np.prod(leaf.shape[:-1])), leaf.shape)
        if name in ("scale", "var"):
            return rng.uniform(0.5, 1.5, leaf.shape)
        return rng.normal(0, 0.1, leaf.shape)  # bias, mean

    return jax.tree_util.tree_map_with_path(
        lambda p, leaf: jnp.asarray(draw(p, leaf), jnp.float32), abstract)
