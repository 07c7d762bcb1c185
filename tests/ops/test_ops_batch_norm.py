"""ops.batch_norm: the forward pass against a float64 numpy reference, the hand-derived backward pass
against autodiff of the textbook formula in float64, and the inputs it refuses."""

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


@pytest.mark.parametrize("args,kwargs,match", [
    ((np.ones(4), np.ones(4), np.ones(4)), {}, "batch and a channel axis"),
    ((np.ones((4, 3)), np.ones(4), np.ones(3)), {}, r"shape \(3,\)"),
    ((np.ones((4, 3)), np.ones(3), np.ones(3)), {"groups": 3}, "dividing the batch of 4"),
    ((np.ones((4, 3)), np.ones(3), np.ones(3)), {"groups": 0}, "positive int"),
    ((np.ones((4, 3)), np.ones(3), np.ones(3)), {"groups": True}, "positive int"),
])
def test_rejects(args, kwargs, match):
    with pytest.raises(OpError, match=match):
        ops.batch_norm(*(jnp.asarray(a, jnp.float32) for a in args), **kwargs)
