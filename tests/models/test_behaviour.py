"""Real forward and backward runs of the small models on the CPU: shapes, train vs eval,
xla vs explicit convolutions, bfloat16 compute, finite gradients.

Variables come from numpy (conftest.numpy_variables) rather than model.init, whose random
initialisers are slow to compile, and every run is jitted (one compilation per model and mode,
cheaper than compiling each op eagerly).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from cnnjax import models
from cnnjax.models import layers


def _forward(model):
    return jax.jit(lambda variables, x: model.apply(variables, x))


def _train_step(model):
    """Jitted (logits, updated batch stats, parameter gradients) of one training step."""

    def loss(params, variables, x, key):
        logits, updates = model.apply({**variables, "params": params}, x, train=True,
                                      mutable=["batch_stats"], rngs={"dropout": key})
        labels = jnp.arange(x.shape[0]) % logits.shape[-1]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), (
            logits, updates)

    @jax.jit
    def step(variables, x, key):
        grads, (logits, updates) = jax.grad(loss, has_aux=True)(variables["params"], variables,
                                                                 x, key)
        return logits, updates, grads

    return step


class _Case:
    """A model with numpy variables, an input batch, and its jitted eval and train functions."""

    def __init__(self, numpy_init, name, shape, **knobs):
        self.model = models.build(name, num_classes=10, **knobs)
        self.x = jax.random.normal(jax.random.key(1), shape)
        # Same shape, other examples changed: shows whether example 0 depends on the others.
        self.x_other = self.x.at[1:].set(jax.random.normal(jax.random.key(2), shape)[1:])
        self.variables = numpy_init(self.model, shape)
        self.forward = _forward(self.model)

    @functools.cached_property
    def step(self):
        return _train_step(self.model)


@pytest.fixture(scope="module")
def lenet(numpy_init):
    return _Case(numpy_init, "lenet5", (4, 32, 32, 1), dropout_rate=0.5)


@pytest.fixture(scope="module")
def resnet20(numpy_init):
    return _Case(numpy_init, "resnet20", (4, 32, 32, 3))


@pytest.mark.parametrize(("name", "shape"), [
    ("mlp", (3, 32, 32, 1)),
    ("allconv", (3, 32, 32, 3)),
    ("plain20", (3, 16, 16, 3)),
])
def test_forward_shapes(numpy_init, name, shape):
    model = models.build(name, num_classes=10)
    y = _forward(model)(numpy_init(model, shape), jnp.ones(shape))
    assert (y.shape, y.dtype) == ((3, 10), jnp.float32)
    assert bool(jnp.all(jnp.isfinite(y)))


@pytest.mark.parametrize("fixture", ["lenet", "resnet20"])
def test_forward_shape_and_eval_independence(fixture, request):
    """Eval mode: float32 logits, and each example's logits ignore the rest of the batch
    (dropout off, batch norm from its running statistics)."""
    case = request.getfixturevalue(fixture)
    out = case.forward(case.variables, case.x)
    assert (out.shape, out.dtype) == ((4, 10), jnp.float32)
    # Repeat calls agree to rounding (bitwise equality once failed here on a loaded 2-core machine;
    # bit-identical training is checked by the resume tests in tests/train).
    np.testing.assert_allclose(out, case.forward(case.variables, case.x), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(case.forward(case.variables, case.x_other)[0], out[0],
                               rtol=1e-5, atol=1e-4)


def test_dropout_only_in_training(lenet):
    eval_out = lenet.forward(lenet.variables, lenet.x)
    # Dropout is the identity in eval mode: the same as the network built without dropout.
    no_dropout = models.build("lenet5", num_classes=10)
    np.testing.assert_allclose(eval_out, _forward(no_dropout)(lenet.variables, lenet.x),
                               rtol=1e-6, atol=1e-6)

    def train(seed):
        return lenet.step(lenet.variables, lenet.x, jax.random.key(seed))[0]

    np.testing.assert_array_equal(train(0), train(0))
    assert not np.allclose(train(0), train(1))
    assert not np.allclose(train(0), eval_out)


def test_batch_norm_statistics_update_in_training_only(resnet20):
    """Running averages as torch's BN: new = 0.9 old + 0.1 batch statistic, the variance
    biased; eval mode leaves them alone; in training each output depends on the batch."""
    case, key = resnet20, jax.random.key(0)
    logits, updates, _ = case.step(case.variables, case.x, key)
    conv1 = np.asarray(lax.conv_general_dilated(
        case.x, case.variables["params"]["conv1"]["kernel"], (1, 1), ((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC")))
    old, new = case.variables["batch_stats"]["bn1"], updates["batch_stats"]["bn1"]
    np.testing.assert_allclose(new["mean"], 0.9 * old["mean"] + 0.1 * conv1.mean(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(new["var"], 0.9 * old["var"] + 0.1 * conv1.var(axis=(0, 1, 2)),
                               rtol=1e-4, atol=1e-5)
    # (The jitted eval forward already runs with immutable variables, where a write would
    # raise; here the collection is mutable and must still come back unchanged.)
    _, unchanged = jax.jit(lambda v, x: case.model.apply(v, x, mutable=["batch_stats"]))(
        case.variables, case.x)
    for a, b in zip(jax.tree.leaves(unchanged), jax.tree.leaves(case.variables["batch_stats"]),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    other = case.step(case.variables, case.x_other, key)[0]
    assert not np.allclose(other[0], logits[0], atol=1e-3)


@pytest.mark.parametrize("fixture", ["lenet", "resnet20"])
def test_explicit_and_xla_convolutions_agree(fixture, request):
    case = request.getfixturevalue(fixture)
    explicit = _forward(case.model.clone(conv_impl="explicit"))
    np.testing.assert_allclose(explicit(case.variables, case.x),
                               case.forward(case.variables, case.x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fixture", ["lenet", "resnet20"])
def test_bfloat16_compute_gives_float32_logits_close_to_float32(fixture, request):
    case = request.getfixturevalue(fixture)
    full = case.forward(case.variables, case.x)
    half = _forward(case.model.clone(dtype="bfloat16"))(case.variables, case.x)
    assert half.dtype == jnp.float32
    np.testing.assert_allclose(half, full, atol=0.05 * float(jnp.abs(full).max()))
    assert not np.array_equal(half, full)  # bfloat16 was really used


@pytest.mark.parametrize("fixture", ["lenet", "resnet20"])
def test_jitted_gradients_are_finite_and_nonzero(fixture, request):
    """The training loop differentiates under jax.jit: so does this test."""
    case = request.getfixturevalue(fixture)
    grads = case.step(case.variables, case.x, jax.random.key(3))[2]
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert bool(jnp.all(jnp.isfinite(g))), jax.tree_util.keystr(path)
        assert float(jnp.abs(g).max()) > 0, jax.tree_util.keystr(path)


def test_lecun98_initialiser_bound():
    """LeCun et al. 1998, Appendix C: uniform in (-2.4/F, 2.4/F), F = 5*5*6 for C3."""
    w = np.asarray(layers.lecun98_uniform(jax.random.key(0), (5, 5, 6, 16)))
    assert np.abs(w).max() <= 2.4 / 150
    assert np.abs(w).max() > 0.95 * 2.4 / 150  # uses the whole range (2,400 draws)
