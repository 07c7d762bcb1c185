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
from helpers.ops_reference import BF16_U, F32_U, LAMBDA, network_rtol, sum_rtol
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


# Two float32 runs of a network that sum in different orders (a batch of other examples, another
# conv implementation, threads splitting a conv differently on a loaded machine) differ by at most
# twice network_rtol (helpers.ops_reference) of the logits' scale. LeNet-5: 5 conv/dense layers, the
# longest sum C5's 5*5*16 = 400 terms: 2 * 7.2e-4. ResNet-20: 20 layers, 3*3*64 = 576 terms:
# 2 * 4.1e-3. An error of the network (an unflipped or shifted kernel, batch statistics in eval)
# changes the logits by a good fraction of their scale.
RTOL = {"lenet": 2 * network_rtol(400, 5), "resnet20": 2 * network_rtol(576, 20)}
LAYERS = {"lenet": 5, "resnet20": 20}


def assert_same_network(got, want, fixture, what=""):
    atol = RTOL[fixture] * float(np.abs(want).max())
    np.testing.assert_allclose(got, want, rtol=0, atol=atol, err_msg=what)


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
    assert_same_network(case.forward(case.variables, case.x), out, fixture, "repeat")
    assert_same_network(case.forward(case.variables, case.x_other)[0], out[0], fixture, "batch")


def test_dropout_only_in_training(lenet):
    eval_out = lenet.forward(lenet.variables, lenet.x)
    # Dropout is the identity in eval mode: the same as the network built without dropout.
    no_dropout = models.build("lenet5", num_classes=10)
    assert_same_network(_forward(no_dropout)(lenet.variables, lenet.x), eval_out, "lenet")

    def train(seed):
        return lenet.step(lenet.variables, lenet.x, jax.random.key(seed))[0]

    # The same key gives the same mask (equal up to the rounding two runs may differ by, see
    # the repeat above); another key or no dropout differs by more than rounding could.
    assert_same_network(train(0), train(0), "lenet", "same key")
    atol = RTOL["lenet"] * float(np.abs(train(0)).max())
    assert not np.allclose(train(0), train(1), rtol=0, atol=atol)
    assert not np.allclose(train(0), eval_out, rtol=0, atol=atol)


def test_batch_norm_statistics_update_in_training_only(resnet20):
    """Running averages as torch's BN: new = 0.9 old + 0.1 batch statistic, the variance
    biased; eval mode leaves them alone; in training each output depends on the batch."""
    case, key = resnet20, jax.random.key(0)
    logits, updates, _ = case.step(case.variables, case.x, key)
    kernel = np.asarray(case.variables["params"]["conv1"]["kernel"])
    with jax.enable_x64(True):  # the exact conv1 outputs c, and A = sum|x w| of each
        conv1, abs_conv1 = (np.asarray(lax.conv_general_dilated(
            np.float64(x), np.float64(w), (1, 1), ((1, 1), (1, 1)),
            dimension_numbers=("NHWC", "HWIO", "NHWC")))
            for x, w in ((case.x, kernel), (np.abs(case.x), np.abs(kernel))))
    old, new = case.variables["batch_stats"]["bn1"], updates["batch_stats"]["bn1"]
    # float32: c's 3*3*3 products, then the n = 4*32*32 terms of the statistics' sums; var in one
    # pass (E[c^2] - mean^2, see ops.batch_norm's test); 0.9 old + 0.1 new rounds three times more.
    k = 3 * 3 * 3 + 4 * 32 * 32 + 3
    mean, var, a = conv1.mean((0, 1, 2)), conv1.var((0, 1, 2)), abs_conv1.reshape(-1, 16)
    mean_err = sum_rtol(k) * a.mean(0)
    var_err = sum_rtol(k) * ((a**2).mean(0) + 2 * a.mean(0) * np.abs(mean) + mean**2 + var)
    for name, stat, err in (("mean", mean, mean_err), ("var", var, var_err)):
        want = 0.9 * np.float64(old[name]) + 0.1 * stat
        bound = 0.1 * err + 3 * F32_U * (0.9 * np.abs(old[name]) + 0.1 * np.abs(stat))
        assert (np.abs(new[name] - want) <= bound).all(), name
    # (The jitted eval forward already runs with immutable variables, where a write would
    # raise; here the collection is mutable and must still come back unchanged.)
    _, unchanged = jax.jit(lambda v, x: case.model.apply(v, x, mutable=["batch_stats"]))(
        case.variables, case.x)
    for a, b in zip(jax.tree.leaves(unchanged), jax.tree.leaves(case.variables["batch_stats"]),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    other = case.step(case.variables, case.x_other, key)[0]
    # Farther apart than rounding alone could put them: the batch itself changed example 0.
    assert not np.allclose(other[0], logits[0], rtol=0,
                           atol=RTOL["resnet20"] * float(np.abs(logits).max()))


@pytest.mark.parametrize("fixture", ["lenet", "resnet20"])
def test_explicit_and_xla_convolutions_agree(fixture, request):
    case = request.getfixturevalue(fixture)
    explicit = _forward(case.model.clone(conv_impl="explicit"))
    assert_same_network(explicit(case.variables, case.x), case.forward(case.variables, case.x),
                        fixture)


@pytest.mark.parametrize("fixture", ["lenet", "resnet20"])
def test_bfloat16_compute_gives_float32_logits_close_to_float32(fixture, request):
    case = request.getfixturevalue(fixture)
    full = case.forward(case.variables, case.x)
    half = _forward(case.model.clone(dtype="bfloat16"))(case.variables, case.x)
    assert half.dtype == jnp.float32
    # bfloat16 rounds each layer's inputs, kernels and outputs (accumulating in float32): random
    # relative errors of rms about u = 2**-8 per layer, independent across layers, so the logits'
    # relative L2 error is about sqrt(L) u; bounded at LAMBDA sqrt(L) u (0.052 for LeNet-5, 0.105
    # for ResNet-20). Wrong weights or a layer skipped in bfloat16 would be off by O(1).
    full64, half64 = np.float64(full), np.float64(half)
    error = np.linalg.norm(half64 - full64) / np.linalg.norm(full64)
    assert error <= LAMBDA * np.sqrt(LAYERS[fixture]) * BF16_U, error
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
