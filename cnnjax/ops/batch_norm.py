"""Batch normalisation in training mode (Ioffe & Szegedy 2015, Alg. 1) with a hand-derived backward.

Autodiff of the textbook formula keeps the centred input as a residual and makes XLA:CPU run extra
passes over the activations; the backward pass below reads x and the incoming gradient twice (one
fused reduction, one fused elementwise pass) and keeps nothing but x and two numbers per channel
(the resnet20 step it speeds up: benchmarks/README.md, "Batch norm").
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax

from cnnjax.ops.errors import OpError


def batch_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, *, epsilon: float = 1e-5,
               groups: int = 1) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Normalise x (N, ..., C) per channel by its batch statistics: (y, mean, var).

        y = (x - mean) / sqrt(var + epsilon) * scale + bias

    mean and the biased variance are taken over every axis but the channels, separately for each
    of `groups` runs of N / groups consecutive examples (groups=1: the whole batch). They are
    computed in float32 in one pass, as E[x^2] - E[x]^2 (flax's default), and returned with shape
    (groups, C).
    y has x's dtype. Differentiable in x, scale and bias, also through mean and var.
    """
    if x.ndim < 2:
        raise OpError(f"batch_norm: x must have a batch and a channel axis, got shape {x.shape}")
    channels = x.shape[-1]
    if scale.shape != (channels,) or bias.shape != (channels,):
        raise OpError(f"batch_norm: scale and bias must have shape ({channels},), got "
                      f"{scale.shape} and {bias.shape}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or x.shape[0] % groups:
        raise OpError(f"batch_norm: groups must be a positive int dividing the batch of "
                      f"{x.shape[0]}, got {groups!r}")
    return _batch_norm(x, scale.astype(jnp.float32), bias.astype(jnp.float32), epsilon, groups)


def _group_sum(a: jax.Array, groups: int) -> jax.Array:
    """Sums of a (N, ..., C) over all axes but the channels, per group: (groups, C)."""
    if groups == 1:   # an (M, C) reduction: XLA:CPU's (1, M, C) one was 25% slower
        return jnp.sum(a.reshape(-1, a.shape[-1]), 0)[None]
    return jnp.sum(a.reshape(groups, -1, a.shape[-1]), 1)


def _per_example(v: jax.Array, x: jax.Array) -> jax.Array:
    """(groups, C) -> broadcastable against x: each group's values on its examples.

    The elementwise passes keep x's own shape: on a (1, N*H*W, C) view XLA:CPU ran them an order
    of magnitude slower (benchmarks/README.md, "Batch norm")."""
    groups, channels = v.shape
    ones = (1,) * (x.ndim - 2)
    if groups == 1:
        return v.reshape(1, *ones, channels)
    return jnp.repeat(v, x.shape[0] // groups, axis=0).reshape(x.shape[0], *ones, channels)


def _forward(x, scale, bias, epsilon, groups):
    # One pass for both statistics, E[x^2] - E[x]^2 as flax's default (use_fast_variance): XLA:CPU
    # runs the two sums at memory speed only when no broadcast feeds them; centring first (an exact
    # two-pass variance) costs another pass (benchmarks/README.md, "Batch norm"). The price: the
    # relative error of var grows as float32's epsilon times (mean / std)^2 (6e-6 at mean = 10 std).
    xf = x.astype(jnp.float32)
    count = xf.size // (groups * x.shape[-1])
    mean = _group_sum(xf, groups) / count
    var = jnp.maximum(_group_sum(xf * xf, groups) / count - mean * mean, 0.0)
    rstd = lax.rsqrt(var + epsilon)
    k = rstd * scale
    y = xf * _per_example(k, x) + _per_example(bias - mean * k, x)
    return (y.astype(x.dtype), mean, var), (x, mean, rstd, scale)


@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _batch_norm(x, scale, bias, epsilon, groups):
    return _forward(x, scale, bias, epsilon, groups)[0]


def _backward(epsilon, groups, residuals, cotangents):
    # With xhat = (x - mean) * rstd and n values per group and channel:
    #   dbias = sum(g), dscale = sum(g * xhat), both over the groups too;
    #   dx = scale * rstd * (g - sum(g) / n - xhat * sum(g * xhat) / n)      (through y)
    #      + g_mean / n + g_var * 2 (x - mean) / n                           (through mean and var)
    # with the sums per group, and sum(g * xhat) = rstd * (sum(g * x) - mean * sum(g)): the sums
    # read x and g with no broadcast between them (see _forward). dx is a * g + b * x + c per
    # channel and group: one elementwise pass.
    del epsilon
    x, mean, rstd, scale = residuals
    g_y, g_mean, g_var = cotangents
    g, xf = g_y.astype(jnp.float32), x.astype(jnp.float32)
    count = x.size // (groups * x.shape[-1])
    sum_g = _group_sum(g, groups)
    sum_g_xhat = (_group_sum(g * xf, groups) - mean * sum_g) * rstd
    a = rstd * scale
    b = (2 * g_var - rstd * a * sum_g_xhat) / count          # the coefficient of x - mean
    c = (g_mean - a * sum_g) / count - b * mean
    dx = g * _per_example(a, x) + xf * _per_example(b, x) + _per_example(c, x)
    return dx.astype(x.dtype), jnp.sum(sum_g_xhat, 0), jnp.sum(sum_g, 0)


_batch_norm.defvjp(_forward, _backward)
