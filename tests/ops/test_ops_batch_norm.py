"""ops.batch_norm: the forward pass against a float64 numpy reference, the hand-derived backward pass
against autodiff of the textbook formula in float64, the fused residual and ReLU
(relu(bn(x) + residual)) likewise, and the inputs it refuses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.ops_reference import BF16_U, F32_U, batch_norm_bounds, sum_rtol

from cnnjax import ops
from cnnjax.ops.errors import OpError

EPS = 1e-5


def numpy_batch_norm(x, scale, bias, groups):
    """Ioffe & Szegedy 2015, Alg. 1, per group of consecutive examples, in float64."""
    xg = x.astype(np.float64).reshape(groups, -1, x.shape[-1])
    mean, var = xg.mean(1), xg.var(1)
    y = (xg - mean[:, None]) / np.sqrt(var[:, None] + EPS) * scale + bias
    return y.reshape(x.shape), mean, var


def textbook(x, scale, bias, groups):
    """The same in jnp, for autodiff: the reference gradient."""
    xg = x.reshape(groups, -1, x.shape[-1])
    mean, var = xg.mean(1), xg.var(1)
    y = (xg - mean[:, None]) / jnp.sqrt(var[:, None] + EPS) * scale + bias
    return y.reshape(x.shape), mean, var


def backward_bound(x, scale, g_y, g_mean, g_var, groups):
    """Bounds on |float32 - exact| of (dx, dscale, dbias) of ops.batch_norm's hand-written backward:
    its formula run on absolute values with every subtraction an addition (each term's size), times
    sum_rtol of the roundings along a term's path (a sum of n, about 12 more), plus the relative
    error of rstd, which enters each term at most three times."""
    xg = x.astype(np.float64).reshape(groups, -1, x.shape[-1])
    gg = np.abs(g_y).reshape(xg.shape)
    n = xg.shape[1]
    var_err = batch_norm_bounds(x, scale, np.zeros_like(scale), groups, EPS)[2]
    mean_abs, var = np.abs(xg).mean(1), xg.var(1)
    rstd = 1 / np.sqrt(var + EPS)
    a = rstd * np.abs(scale)
    sum_g = gg.sum(1)
    sum_g_xhat = ((gg * np.abs(xg)).sum(1) + mean_abs * sum_g) * rstd
    b = (2 * np.abs(g_var) + rstd * a * sum_g_xhat) / n
    c = (np.abs(g_mean) + a * sum_g) / n + b * mean_abs
    dx = gg * a[:, None] + np.abs(xg) * b[:, None] + c[:, None]
    factor = sum_rtol(n + 12) + 3 * (var_err / (2 * (var + EPS)) + 2 * F32_U)
    return ((dx * factor[:, None]).reshape(x.shape), (sum_g_xhat * factor).sum(0),
            (sum_g * factor).sum(0))


def assert_within(got, want, bound, what=""):
    error = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    assert (error <= bound).all(), f"{what}: worst error / bound = {(error / bound).max():.3g}"


def inputs(shape, seed, offset=2.0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(offset, 3.0, shape) * rng.uniform(0.5, 2.0, shape[-1])).astype(np.float32)
    c = shape[-1]
    return x, rng.normal(1, 0.5, c).astype(np.float32), rng.normal(0, 1, c).astype(np.float32)


@pytest.mark.parametrize("shape,groups", [((8, 5, 4, 6), 1), ((8, 5, 4, 6), 4), ((12, 7), 3),
                                          ((2, 3, 3, 1), 2)])
def test_forward_matches_numpy(shape, groups):
    x, scale, bias = inputs(shape, seed=len(shape) + groups)
    y, mean, var = jax.jit(lambda *a: ops.batch_norm(*a, groups=groups))(x, scale, bias)
    y_ref, mean_ref, var_ref = numpy_batch_norm(x, scale, bias, groups)
    assert y.dtype == jnp.float32 and mean.shape == var.shape == (groups, shape[-1])
    for name, got, want, bound in zip(("y", "mean", "var"), (y, mean, var),
                                      (y_ref, mean_ref, var_ref),
                                      batch_norm_bounds(x, scale, bias, groups, EPS), strict=True):
        assert_within(got, want, bound, name)


@pytest.mark.parametrize("shape,groups", [((8, 5, 4, 6), 1), ((8, 5, 4, 6), 2), ((6, 9), 3)])
def test_backward_matches_autodiff_in_float64(shape, groups):
    """Gradients of a loss that reads y, mean and var, with respect to x, scale and bias."""
    x, scale, bias = inputs(shape, seed=groups)
    rng = np.random.default_rng(7)
    w_y, w_mean, w_var = (rng.normal(size=s) for s in (shape, (groups, shape[-1]),
                                                       (groups, shape[-1])))

    def loss(f, *args):
        y, mean, var = f(*args)
        return jnp.sum(y * w_y) + jnp.sum(mean * w_mean) + jnp.sum(var * w_var)

    ours = jax.jit(jax.grad(lambda *a: loss(lambda *b: ops.batch_norm(*b, groups=groups), *a),
                            (0, 1, 2)))(x, scale, bias)
    with jax.enable_x64():
        ref = jax.grad(lambda *a: loss(lambda *b: textbook(*b, groups), *a), (0, 1, 2))(
            *(np.asarray(a, np.float64) for a in (x, scale, bias)))
    bounds = backward_bound(x, scale, w_y, w_mean, w_var, groups)
    for name, got, want, bound in zip(("dx", "dscale", "dbias"), ours, ref, bounds, strict=True):
        assert got.dtype == jnp.float32
        assert_within(got, want, bound, name)


def test_precision_with_the_mean_far_from_zero():
    """Mean 300, std 4.5 to 18: the one-pass statistics lose float32's epsilon times (mean / std)^2
    of their precision (documented in ops.batch_norm); y and the gradients stay within the bounds
    that follow, which for var reach lambda sqrt(n) u (mean / std)^2 ~ 0.1 relative (n = 256) in
    the worst channel."""
    x, scale, bias = inputs((16, 4, 4, 3), seed=3, offset=0.0)
    x = x * 3.0 + 300.0
    g = np.random.default_rng(1).normal(size=x.shape)
    y, _, var = ops.batch_norm(x, scale, bias)
    grads = jax.grad(lambda *a: jnp.sum(ops.batch_norm(*a)[0] * g), (0, 1, 2))(x, scale, bias)
    y_ref, _, var_ref = numpy_batch_norm(x, scale, bias, 1)
    y_err, _, var_err = batch_norm_bounds(x, scale, bias, 1, EPS)
    assert_within(var, var_ref, var_err, "var")
    assert_within(y, y_ref, y_err, "y")
    with jax.enable_x64():
        want = jax.grad(lambda *a: jnp.sum(textbook(*a, 1)[0] * g), (0, 1, 2))(
            *(np.float64(a) for a in (x, scale, bias)))
    bounds = backward_bound(x, scale, g, np.zeros((1, 3)), np.zeros((1, 3)), 1)
    for name, got, ref, bound in zip(("dx", "dscale", "dbias"), grads, want, bounds, strict=True):
        assert_within(got, ref, bound, name)


def test_bfloat16_input_keeps_its_dtype_and_statistics_stay_float32():
    x, scale, bias = inputs((8, 4, 4, 5), seed=5)
    xb = jnp.asarray(x, jnp.bfloat16)
    y, mean, _ = ops.batch_norm(xb, scale, bias)
    dx = jax.grad(lambda x: jnp.sum(ops.batch_norm(x, scale, bias)[0].astype(jnp.float32)))(xb)
    assert (y.dtype, mean.dtype, dx.dtype) == (jnp.bfloat16, jnp.float32, jnp.bfloat16)
    # y is computed in float32 and rounded to bfloat16 once: bfloat16's u of |y| on top of the
    # float32 bound. Statistics taken in bfloat16 (sums of 128 terms at u = 2**-8) would not pass.
    x32 = np.float32(xb)
    y_ref = numpy_batch_norm(x32, scale, bias, 1)[0]
    y_err = batch_norm_bounds(x32, scale, bias, 1, EPS)[0]
    assert_within(np.float32(y), y_ref, BF16_U * (np.abs(y_ref) + y_err) + y_err, "y")


def fused_inputs(shape, groups, seed):
    """x, scale, bias, residual, the incoming gradient, and the float64 pre-activation z of
    bn(x) + residual, with no |z| within its float32 error bound of 0, where the two sides of the
    comparison could take different sides of the ReLU (a precondition, checked, of the tests that
    compare gradients through it)."""
    x, scale, bias = inputs(shape, seed)
    rng = np.random.default_rng(seed + 100)
    residual = rng.normal(0, 1, shape).astype(np.float32)
    g = rng.normal(size=shape)
    y, _, _ = numpy_batch_norm(x, scale, bias, groups)
    z = y + residual
    # z's float32 error: y's bound, and the addition's rounding of |z|.
    z_err = batch_norm_bounds(x, scale, bias, groups, EPS)[0] + F32_U * np.abs(z)
    assert (np.abs(z) > z_err).all(), "inputs too close to the ReLU's kink: change the seed"
    return x, scale, bias, residual, g, z, z_err


def textbook_fused(x, scale, bias, residual, groups):
    return jax.nn.relu(textbook(x, scale, bias, groups)[0] + residual)


@pytest.mark.parametrize("shape,groups", [((8, 5, 4, 6), 1), ((8, 5, 4, 6), 4), ((6, 9), 3)])
@pytest.mark.parametrize("with_residual", [True, False])
def test_fused_relu_and_residual_match_autodiff_in_float64(shape, groups, with_residual):
    """relu(bn(x) [+ residual]): y within relu's image of bn's bound plus the addition's rounding
    (|relu(a) - relu(b)| <= |a - b|); the gradients within backward_bound of the gradient masked by
    the ReLU (the hand-written backward runs its formula on that), and the residual's gradient is
    the masked gradient itself, exactly (a select, no arithmetic)."""
    x, scale, bias, residual, g, z, z_err = fused_inputs(shape, groups, seed=groups)
    if not with_residual:
        z = z - residual
        assert (np.abs(z) > z_err).all(), "inputs too close to the ReLU's kink: change the seed"
        residual = np.zeros_like(residual)
    r = residual if with_residual else None

    def ours(x, scale, bias, r):
        return ops.batch_norm(x, scale, bias, groups=groups, residual=r, relu=True)[0]

    y = jax.jit(ours)(x, scale, bias, r)
    assert_within(y, np.maximum(z, 0), z_err, "y")
    argnums = (0, 1, 2, 3) if with_residual else (0, 1, 2)
    grads = jax.jit(jax.grad(lambda *a: jnp.sum(ours(*a) * g), argnums))(x, scale, bias, r)
    with jax.enable_x64():
        want = jax.grad(lambda *a: jnp.sum(textbook_fused(*a, groups) * g), (0, 1, 2, 3))(
            *(np.asarray(a, np.float64) for a in (x, scale, bias, residual)))
    masked = np.where(z > 0, g, 0.0)
    zeros = np.zeros((groups, shape[-1]))
    bounds = backward_bound(x, scale, masked, zeros, zeros, groups)
    for name, got, ref, bound in zip(("dx", "dscale", "dbias"), grads, want, bounds, strict=False):
        assert got.dtype == jnp.float32
        assert_within(got, ref, bound, name)
    if with_residual:
        assert grads[3].dtype == jnp.float32
        np.testing.assert_array_equal(grads[3], np.float32(masked))


def test_relu_subgradient_at_zero_is_zero_as_jax_nn_relu():
    """scale = bias = 0 make bn(x) exactly 0 (x * 0 + (0 - mean * 0)), so the pre-activation is the
    residual, exact zeros included: there the gradient is 0 (jax.nn.relu's derivative at 0), as
    for the negative entries; the positive ones pass it through. Without a residual every entry
    sits at the kink and every gradient is 0."""
    shape = (4, 3, 3, 2)
    x, _, _ = inputs(shape, seed=11)
    zero = np.zeros(2, np.float32)
    residual = np.random.default_rng(3).choice(np.float32([-1.5, 0.0, 2.0]), shape)
    assert (residual == 0).any() and (residual > 0).any() and (residual < 0).any()
    g = np.random.default_rng(4).normal(size=shape).astype(np.float32)

    def loss(x, scale, bias, r):
        return jnp.sum(ops.batch_norm(x, scale, bias, residual=r, relu=True)[0] * g)

    dx, dscale, dbias, dr = jax.grad(loss, (0, 1, 2, 3))(x, zero, zero, residual)
    np.testing.assert_array_equal(dr, np.where(residual > 0, g, 0))
    assert float(jax.grad(jax.nn.relu)(0.0)) == 0.0   # the convention matched
    # Only the positive entries reach bn: dbias sums their g over 36 entries per channel (within
    # the float32 sum's rounding bound of the float64 sum); dx = a g + b x + c with a = rstd * scale
    # = 0, and b and c (the statistics' paths) carry scale = 0 too: dx is exactly 0.
    g64 = np.float64(g)
    assert_within(dbias, np.where(residual > 0, g64, 0).sum((0, 1, 2)),
                  sum_rtol(36) * np.abs(g64).sum((0, 1, 2)), "dbias")
    np.testing.assert_array_equal(dx, np.zeros(shape))
    masked = np.where(residual > 0, g64, 0)
    xhat = numpy_batch_norm(x, np.ones(2), np.zeros(2), 1)[0]
    zeros = np.zeros((1, 2))
    assert_within(dscale, (masked * xhat).sum((0, 1, 2)),
                  backward_bound(x, zero, masked, zeros, zeros, 1)[1], "dscale")
    grads = jax.grad(lambda *a: jnp.sum(ops.batch_norm(*a, relu=True)[0] * g), (0, 1, 2))(
        x, zero, zero)
    for grad in grads:
        np.testing.assert_array_equal(grad, np.zeros_like(grad))


def test_fused_in_bfloat16_adds_in_float32_and_rounds_once():
    """bfloat16 x and residual: statistics float32, y = relu(bn(x) + residual) computed in float32
    and rounded to bfloat16 once (bfloat16's u of |y| on top of the float32 bound, as in the test
    above), the gradients in the inputs' dtypes."""
    x, scale, bias = inputs((8, 4, 4, 5), seed=5)
    residual = np.random.default_rng(9).normal(size=x.shape).astype(np.float32)
    xb, rb = jnp.asarray(x, jnp.bfloat16), jnp.asarray(residual, jnp.bfloat16)
    y, mean, var = ops.batch_norm(xb, scale, bias, residual=rb, relu=True)
    dx, dr = jax.grad(lambda x, r: jnp.sum(ops.batch_norm(x, scale, bias, residual=r, relu=True)[0]
                                           .astype(jnp.float32)), (0, 1))(xb, rb)
    assert (y.dtype, mean.dtype, var.dtype) == (jnp.bfloat16, jnp.float32, jnp.float32)
    assert (dx.dtype, dr.dtype) == (jnp.bfloat16, jnp.bfloat16)
    x32, r32 = np.float32(xb), np.float32(rb)
    z = numpy_batch_norm(x32, scale, bias, 1)[0] + r32
    z_err = batch_norm_bounds(x32, scale, bias, 1, EPS)[0] + F32_U * np.abs(z)
    assert_within(np.float32(y), np.maximum(z, 0), BF16_U * (np.abs(z) + z_err) + z_err, "y")
    # The residual's gradient is the ReLU's mask (the loss's gradient is 1), exact in bfloat16
    # where z is clear of the kink by its error bound.
    clear = np.abs(z) > z_err
    np.testing.assert_array_equal(np.float32(dr)[clear], np.float32(z > 0)[clear])


def test_default_path_unchanged_by_the_new_arguments():
    """relu=False and residual=None are the op as it was; relu=True alone is the op followed by
    jax.nn.relu bit for bit (the same float32 operations in the same order, max(y, 0) last)."""
    x, scale, bias = inputs((8, 5, 4, 6), seed=1)
    plain = ops.batch_norm(x, scale, bias)
    explicit = ops.batch_norm(x, scale, bias, residual=None, relu=False)
    for a, b in zip(plain, explicit, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ops.batch_norm(x, scale, bias, relu=True)[0],
                                  jax.nn.relu(plain[0]))


@pytest.mark.parametrize("args,kwargs,match", [
    ((np.ones(4), np.ones(4), np.ones(4)), {}, "batch and a channel axis"),
    ((np.ones((4, 3)), np.ones(4), np.ones(3)), {}, r"shape \(3,\)"),
    ((np.ones((4, 3)), np.ones(3), np.ones(3)), {"groups": 3}, "dividing the batch of 4"),
    ((np.ones((4, 3)), np.ones(3), np.ones(3)), {"groups": 0}, "positive int"),
    ((np.ones((4, 3)), np.ones(3), np.ones(3)), {"groups": True}, "positive int"),
    ((np.ones((4, 3)), np.ones(3), np.ones(3)), {"residual": np.ones((4, 1))},
     r"residual must have x's shape \(4, 3\), got \(4, 1\)"),
    ((np.ones((4, 3)), np.ones(3), np.ones(3)), {"relu": 1}, "relu must be True or False"),
])
def test_rejects(args, kwargs, match):
    with pytest.raises(OpError, match=match):
        ops.batch_norm(*(jnp.asarray(a, jnp.float32) for a in args), **kwargs)
