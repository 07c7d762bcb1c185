"""Residual blocks, Inception modules and pooling layers against numpy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from helpers.ops_reference import BF16_U, F32_U, sum_rtol

from cnnjax.models import layers
from cnnjax.models.googlenet import Inception
from cnnjax.models.resnet import BasicBlock, Bottleneck

BN = layers.LayerOptions(norm="batch")
EPS = layers.BN_EPSILON


def _apply(module, variables, x):
    """Eval-mode forward, jitted: one compilation instead of one per op."""
    return np.asarray(jax.jit(module.apply)(variables, x))


def _relu(a):
    return np.maximum(a, 0)


def _bn_eval(y, stats, params):
    return (y - stats["mean"]) / np.sqrt(stats["var"] + EPS) * params["scale"] + params["bias"]


def _conv1x1_bound(x, w, bias=0.0):
    """The float32 error of x @ w + bias (K = Cin products and the bias, rounded in any order)."""
    return sum_rtol(x.shape[-1] + 2) * (np.abs(x) @ np.abs(w) + np.abs(bias))


def _zero_last_bn(variables, name="bn2"):
    """Make a block's residual branch output exactly zero (its last BN scale and shift = 0)."""
    params = jax.tree.map(lambda a: a, variables["params"])
    params[name] = {"scale": jnp.zeros_like(params[name]["scale"]),
                    "bias": jnp.zeros_like(params[name]["bias"])}
    return {**variables, "params": params}


def _maxpool3_same(x):
    """3x3 stride-1 max pool with one cell of -inf padding, by loops."""
    n, h, w, c = x.shape
    xp = np.full((n, h + 2, w + 2, c), -np.inf)
    xp[:, 1:-1, 1:-1] = x
    return np.max([xp[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=0)


def test_zero_init_residual_makes_blocks_start_as_option_a_shortcuts():
    """With the last BN scale at 0 a block computes relu(shortcut(x)); option A subsamples by
    the stride and zero-pads the new channels (He et al. 2016, Sec. 3.3)."""
    block = BasicBlock(32, stride=2, shortcut="identity_pad", zero_init_residual=True,
                       options=BN)
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 16))
    variables = jax.jit(block.init)(jax.random.key(0), x)
    np.testing.assert_array_equal(variables["params"]["bn2"]["scale"], np.zeros(32))
    np.testing.assert_array_equal(variables["params"]["bn1"]["scale"], np.ones(32))
    expected = np.zeros((2, 4, 4, 32))
    expected[..., :16] = _relu(np.asarray(x)[:, ::2, ::2])
    # Exact: a zero BN scale and shift give exact zeros, and adding them, relu, subsampling and
    # zero-padding round nothing.
    np.testing.assert_array_equal(_apply(block, variables, x), expected)


def test_projection_shortcut_is_a_strided_1x1_conv_and_bn(numpy_init):
    block = BasicBlock(32, stride=2, shortcut="projection", options=BN)
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 16))
    variables = _zero_last_bn(numpy_init(block, x.shape))
    w = np.float64(variables["params"]["downsample_0"]["kernel"])[0, 0]        # (16, 32)
    xs = np.float64(x)[:, ::2, ::2]
    stats, bn = variables["batch_stats"]["downsample_1"], variables["params"]["downsample_1"]
    expected = _relu(_bn_eval(xs @ w, stats, bn))
    # The 1x1 conv's 16-term sums scaled by BN's k = scale / sqrt(var + eps), then BN's own
    # roundings (k with its rsqrt, x k, mean k, the additions: 6), each of at most u times the
    # largest of |y k|, |mean k| and |bias|; relu adds nothing.
    k = np.abs(bn["scale"]) / np.sqrt(stats["var"] + EPS)
    bound = k * _conv1x1_bound(xs, w) + 6 * F32_U * (
        np.abs(xs @ w) * k + np.abs(stats["mean"]) * k + np.abs(bn["bias"]))
    assert (np.abs(_apply(block, variables, x) - expected) <= bound).all()


def test_identity_and_no_shortcut(numpy_init):
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 8))
    for shortcut, expected in [("projection", _relu(np.asarray(x))), ("none", np.zeros(x.shape))]:
        block = BasicBlock(8, stride=1, shortcut=shortcut, options=BN)
        variables = _zero_last_bn(numpy_init(block, x.shape))
        assert "downsample_0" not in variables["params"]  # same shape: identity, no projection
        # Exact, as above: x plus exact zeros through relu.
        np.testing.assert_array_equal(_apply(block, variables, x), expected)


def test_bottleneck_stride_placement(variables_of):
    for stride_in_3x3 in (True, False):
        block = Bottleneck(8, stride=2, stride_in_3x3=stride_in_3x3, options=BN)
        out = jax.eval_shape(block.init_with_output, jax.random.key(0),
                             jax.ShapeDtypeStruct((1, 8, 8, 16), jnp.float32))[0]
        assert out.shape == (1, 4, 4, 32)
    params = variables_of(block, (1, 8, 8, 16))["params"]
    assert [params[f"conv{i}"]["kernel"].shape for i in (1, 2, 3)] == [
        (1, 1, 16, 8), (3, 3, 8, 8), (1, 1, 8, 32)]


def test_inception_concatenates_its_four_branches(numpy_init):
    module = Inception(4, 3, 5, 2, 3, 2)
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 7))
    variables = numpy_init(module, x.shape)
    p = variables["params"]
    out = np.asarray(_apply(module, variables, x))
    assert out.shape == (2, 6, 6, 4 + 5 + 3 + 2)
    xs = np.float64(x)
    # Both 1x1 branches: 7-term float32 sums plus a bias (the max pool rounds nothing).
    for got, inputs, name in ((out[..., :4], xs, "branch1"),
                              (out[..., -2:], _maxpool3_same(xs), "branch4_1")):
        w, bias = np.float64(p[name]["conv"]["kernel"])[0, 0], np.float64(p[name]["conv"]["bias"])
        error = np.abs(got - _relu(inputs @ w + bias))
        assert (error <= _conv1x1_bound(inputs, w, bias)).all(), name
    assert p["branch3_1"]["conv"]["kernel"].shape == (5, 5, 2, 3)  # the paper's 5x5
    assert np.all(out >= 0)


def test_naive_inception_passes_the_pooled_input_through(numpy_init):
    module = Inception(4, 3, 5, 2, 3, 2, naive=True)
    x = jax.random.normal(jax.random.key(1), (1, 5, 5, 6))
    out = np.asarray(_apply(module, numpy_init(module, x.shape), x))
    assert out.shape == (1, 5, 5, 4 + 5 + 3 + 6)
    np.testing.assert_array_equal(out[..., -6:], _maxpool3_same(np.asarray(x)))  # a max: exact


def test_strided_conv_pool_replaces_the_pool(variables_of):
    """Springenberg et al. 2015: a conv with the pool's window, stride and channel count."""
    pool = layers.Pool("strided_conv", 3, 2, padding=1)
    params = variables_of(pool, (1, 8, 8, 5))["params"]
    assert params["conv"]["kernel"].shape == (3, 3, 5, 5)
    out = jax.eval_shape(pool.init_with_output, jax.random.key(0),
                         jax.ShapeDtypeStruct((1, 8, 8, 5), jnp.float32))[0]
    assert out.shape == (1, 4, 4, 5)
    assert variables_of(layers.Pool("max", 3, 2, padding=1), (1, 8, 8, 5)) == {}


def test_grouped_conv_layer_blocks_the_channels(numpy_init):
    """groups=2 (AlexNet's towers): the first half of the outputs sees only the first half of
    the inputs."""
    conv = layers.Conv(6, 3, padding=1, groups=2)
    x = np.asarray(jax.random.normal(jax.random.key(1), (1, 5, 5, 4)))
    variables = numpy_init(conv, x.shape)
    x2 = x.copy()
    x2[..., 2:] += 1.0  # change only the second group's inputs
    a, b = np.asarray(_apply(conv, variables, x)), np.asarray(_apply(conv, variables, x2))
    np.testing.assert_array_equal(a[..., :3], b[..., :3])
    assert not np.allclose(a[..., 3:], b[..., 3:])


def test_bfloat16_dense_bias_gradient_is_summed_in_float32():
    """layers.Dense in bfloat16: the bias gradient sums the cotangent over the batch (4,096 rows
    here) in float32; a bfloat16 sum stalls once the partial sum is 2**8 times a term."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((4096, 8)), jnp.float32)
    ct = jnp.asarray(rng.uniform(0.5, 1.0, (4096, 3)), jnp.bfloat16)
    dense = layers.Dense(3, dtype="bfloat16")
    params = dense.init(jax.random.key(0), x)["params"]

    def loss(bias):
        y = dense.apply({"params": {**params, "bias": bias}}, x)
        return jnp.vdot(y.astype(jnp.float32), ct.astype(jnp.float32))

    grad = jax.jit(jax.grad(loss))(params["bias"])
    want = np.asarray(ct, np.float64).sum(0)
    # Positive terms: a float32 sum of 4,096 of them in any order, then one bfloat16 rounding.
    np.testing.assert_allclose(grad, want, rtol=sum_rtol(4096) + BF16_U)
