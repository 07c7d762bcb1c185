"""Real forward and backward runs of the small models on the CPU: shapes, train vs eval,
xla vs explicit convolutions, bfloat16 compute, finite gradients.

Variables come from numpy (conftest.numpy_variables) rather than model.init, whose random
initialisers would each be compiled; one test runs the real init of LeNet-5.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from cnnjax import models
from cnnjax.models import layers


@pytest.fixture(scope="module")
def lenet():
    from conftest import numpy_variables
    model = models.build("lenet5", num_classes=10, dropout_rate=0.5)
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 1))
    return model, numpy_variables(model, x.shape), x


@pytest.fixture(scope="module")
def resnet20():
    from conftest import numpy_variables
    model = models.build("resnet20", num_classes=10)
    x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
    return model, numpy_variables(model, x.shape), x


@pytest.mark.parametrize(("name", "shape"), [
    ("lenet5", (3, 32, 32, 1)),
    ("mlp", (3, 32, 32, 1)),
    ("allconv", (3, 32, 32, 3)),
    ("resnet20", (3, 32, 32, 3)),
    ("plain20", (3, 16, 16, 3)),
])
def test_forward_shapes(numpy_init, name, shape):
    model = models.build(name, num_classes=10)
    y = model.apply(numpy_init(model, shape), jnp.ones(shape))
    assert (y.shape, y.dtype) == ((3, 10), jnp.float32)
    assert bool(jnp.all(jnp.isfinite(y)))


def test_lenet_real_init(variables_of):
    """model.init builds the abstract structure; C3's weights lie in LeCun et al. 1998's
    (-2.4/F, 2.4/F) with F = 5*5*6 (Appendix C)."""
    model = models.build("lenet5", num_classes=10)
    x = jnp.zeros((1, 32, 32, 1))
    variables = model.init(jax.random.key(0), x)
    assert (jax.tree.map(lambda a: a.shape, variables)
            == jax.tree.map(lambda a: a.shape, variables_of(model, x.shape)))
    kernel = np.asarray(variables["params"]["c3"]["kernel"])
    assert np.abs(kernel).max() <= 2.4 / 150
    assert np.abs(kernel).max() > 0.95 * 2.4 / 150  # uses the whole range (2,400 draws)
    assert np.all(np.asarray(variables["params"]["c3"]["bias"]) == 0)


def test_dropout_only_in_training(lenet):
    model, variables, x = lenet
    eval1 = model.apply(variables, x)
    np.testing.assert_array_equal(eval1, model.apply(variables, x))
    # In eval mode dropout is the identity: the same as the network built without dropout.
    no_dropout = models.build("lenet5", num_classes=10)
    np.testing.assert_array_equal(eval1, no_dropout.apply(variables, x, train=True))

    def train(seed):
        return model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(seed)})

    np.testing.assert_array_equal(train(0), train(0))
    assert not np.allclose(train(0), train(1))
    assert not np.allclose(train(0), eval1)


def test_batch_norm_statistics_update_in_training_only(resnet20):
    """Running averages as torch's BN: new = 0.9 old + 0.1 batch statistic; eval uses them."""
    model, variables, x = resnet20
    logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    conv1 = np.asarray(lax.conv_general_dilated(
        x, variables["params"]["conv1"]["kernel"], (1, 1), ((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC")))
    old = variables["batch_stats"]["bn1"]
    new = updates["batch_stats"]["bn1"]
    np.testing.assert_allclose(new["mean"], 0.9 * old["mean"] + 0.1 * conv1.mean(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new["var"], 0.9 * old["var"] + 0.1 * conv1.var(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-5)
    # Eval mode updates nothing, and BN there is the affine map of the running statistics:
    # each example's output ignores the rest of the batch.
    out, same = model.apply(variables, x, train=False, mutable=["batch_stats"])
    for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(variables["batch_stats"]),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(model.apply(variables, x[:1]), out[:1], rtol=1e-4, atol=1e-3)
    # In training the batch statistics make each output depend on the other examples.
    alone = model.apply(variables, x[:2], train=True, mutable=["batch_stats"])[0]
    assert not np.allclose(alone, logits[:2], atol=1e-3)


@pytest.mark.parametrize("fixture", ["lenet", "resnet20"])
def test_explicit_and_xla_convolutions_agree(fixture, request):
    model, variables, x = request.getfixturevalue(fixture)
    explicit = model.clone(conv_impl="explicit")
    np.testing.assert_allclose(explicit.apply(variables, x), model.apply(variables, x),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fixture", ["lenet", "resnet20"])
def test_bfloat16_compute_gives_float32_logits_close_to_float32(fixture, request):
    model, variables, x = request.getfixturevalue(fixture)
    full = model.apply(variables, x)
    half = model.clone(dtype="bfloat16").apply(variables, x)
    assert half.dtype == jnp.float32
    np.testing.assert_allclose(half, full, atol=0.05 * float(jnp.abs(full).max()))
    assert not np.array_equal(half, full)  # bfloat16 was really used


@pytest.mark.parametrize("fixture", ["lenet", "resnet20"])
def test_jitted_gradients_are_finite_and_nonzero(fixture, request):
    """The training loop differentiates under jax.jit: so does this test."""
    model, variables, x = request.getfixturevalue(fixture)
    labels = jnp.arange(x.shape[0]) % 10

    def loss(params):
        logits, _ = model.apply({**variables, "params": params}, x, train=True,
                                mutable=["batch_stats"], rngs={"dropout": jax.random.key(3)})
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    grads = jax.jit(jax.grad(loss))(variables["params"])
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(g))), jax.tree_util.keystr(path)
    assert float(optax.tree.norm(grads)) > 0


def test_lecun98_initialiser_bound():
    w = layers.lecun98_uniform(jax.random.key(0), (5, 5, 6, 16))
    assert float(jnp.abs(w).max()) <= 2.4 / 150
