"""Pooling and local response normalisation against numpy loops and their defining properties."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.ops_reference import assert_within_sum_bound, lrn_loop, pads_for, pool_loop
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnjax import ops


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(window=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))),
       padding=st.one_of(st.sampled_from(["VALID", "SAME"]), st.integers(0, 2)),
       size=st.tuples(st.integers(1, 9), st.integers(1, 9)), seed=st.integers(0, 2**16))
def test_pools_match_numpy_loops(window, stride, padding, size, seed):
    strides = window if stride is None else stride
    pads = pads_for(padding, size, window, strides, (1, 1))
    assume(all(lo < n and hi < n and m + lo + hi >= n
               for m, n, (lo, hi) in zip(size, window, pads, strict=True)))
    x = np.random.default_rng(seed).standard_normal((2, *size, 3)).astype(np.float32)

    @jax.jit
    def pools(x):
        return (ops.max_pool(x, window, stride, padding),
                ops.avg_pool(x, window, stride, padding, count_include_pad=True),
                ops.avg_pool(x, window, stride, padding, count_include_pad=False))

    got_max, got_avg_in, got_avg_out = pools(x)
    # A maximum rounds nothing: exact. A mean is a float32 sum of at most wh * ww terms and one
    # division (wh * ww + 1 roundings; + 1 if the count is a reciprocal), bounded by the mean of |x|.
    np.testing.assert_array_equal(got_max, pool_loop(x, window, strides, pads, "max"))
    k = window[0] * window[1] + 2
    for got, include in ((got_avg_in, True), (got_avg_out, False)):
        assert_within_sum_bound(got, pool_loop(x, window, strides, pads, "avg", include),
                                pool_loop(np.abs(x), window, strides, pads, "avg", include), k,
                                err_msg=f"count_include_pad={include}")
    for axis in range(2):
        assert got_max.shape[1 + axis] == ops.conv_output_size(size[axis], window[axis],
                                                               strides[axis], pads[axis])


def test_avg_pool_count_include_pad_on_a_constant_image():
    x = jnp.ones((1, 4, 4, 1))
    with_pad = ops.avg_pool(x, 3, 1, padding=1, count_include_pad=True)[0, ..., 0]
    without = ops.avg_pool(x, 3, 1, padding=1, count_include_pad=False)[0, ..., 0]
    # Sums of ones are exact; the division (or a reciprocal and a product) rounds at most twice:
    # 2 * 2**-24 = 1.2e-7, under approx's default rel=1e-6.
    np.testing.assert_allclose(without, np.ones((4, 4)), rtol=1e-6)
    assert with_pad[0, 0] == pytest.approx(4 / 9) and with_pad[0, 1] == pytest.approx(6 / 9)
    assert with_pad[1, 1] == pytest.approx(1.0)


def test_max_pool_ignores_padding_on_negative_inputs():
    x = -1.0 - jnp.arange(16.0).reshape(1, 4, 4, 1)
    y = ops.max_pool(x, 3, 2, padding="SAME")
    assert float(y.max()) == -1.0  # zeros in the padding would have won


def test_max_pool_invariant_to_shifts_smaller_than_the_window():
    # One bright pixel per pooling window, kept away from window edges: shifting the image by
    # less than the margin moves each peak within its window and leaves the output unchanged
    # (Deep Learning, Sec. 9.3).
    rng = np.random.default_rng(0)
    x = np.zeros((1, 16, 16, 2), np.float32)
    for i in range(4):
        for j in range(4):
            for c in range(2):
                x[0, 4 * i + rng.integers(1, 3), 4 * j + rng.integers(1, 3), c] = rng.uniform(1, 2)
    y = ops.max_pool(x, 4)
    for shift in [(1, 0), (0, -1), (1, 1), (-1, 1)]:
        np.testing.assert_array_equal(ops.max_pool(np.roll(x, shift, axis=(1, 2)), 4), y)
    # A shift of a whole window moves the output: the invariance is local, not global.
    assert not np.array_equal(ops.max_pool(np.roll(x, (4, 0), axis=(1, 2)), 4), y)


def test_max_pool_gradient_routes_to_the_maximum():
    x = jnp.asarray([[1.0, 5.0], [2.0, 3.0]]).reshape(1, 2, 2, 1)
    g = jax.grad(lambda x: jnp.sum(ops.max_pool(x, 2)))(x)
    np.testing.assert_array_equal(g.reshape(2, 2), [[0.0, 1.0], [0.0, 0.0]])


def test_global_avg_pool():
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 4)).astype(np.float32)
    y = ops.global_avg_pool(x)
    assert y.shape == (2, 4)
    # A float32 mean of 15 terms of both signs: bounded by the mean of |x|, not by the mean.
    assert_within_sum_bound(y, np.float64(x).mean(axis=(1, 2)), np.abs(np.float64(x)).mean(
        axis=(1, 2)), 3 * 5 + 2)


@pytest.mark.parametrize("size", [1, 2, 4, 5, 7])
def test_lrn_matches_numpy_loop(size):
    rng = np.random.default_rng(size)
    x = (rng.standard_normal((2, 3, 3, 9)) * 10).astype(np.float32)  # large enough to matter
    got = ops.local_response_norm(x, size=size, k=2.0, alpha=1e-3, beta=0.75)
    # No cancellation: a sum of at most 7 squares, alpha, k, the power and the division round
    # about 12 times relative (2 ulp for pow): 12 * 2**-24 = 7e-7. rtol 1e-5 leaves pow
    # implementations a few more ulp and still fails a window one channel off, which moves b by
    # alpha * beta * x**2 / (k + ...) ~ 1e-3 * 0.75 * 100 / 2.7 ~ 3%.
    np.testing.assert_allclose(got, lrn_loop(x, size, 2.0, 1e-3, 0.75), rtol=1e-5)


def test_lrn_defaults_are_alexnets_and_alpha_is_not_divided_by_size():
    x = np.zeros((1, 1, 1, 7), np.float32)
    x[..., 3] = 100.0
    y = np.asarray(ops.local_response_norm(x))[0, 0, 0]
    # Channels 1..5 see the 100 in their 5-wide window, so b_3 = 100 / (2 + 1e-4 * 100^2)^0.75.
    # float32 rounds alpha, alpha * s, k + alpha s, the power (a few ulp) and the division: about
    # 5 roundings, 3e-7 relative, under rel=1e-6.
    assert y[3] == pytest.approx(100.0 / (2.0 + 1e-4 * 100.0**2) ** 0.75, rel=1e-6)
    assert y[0] == 0.0


def test_lrn_keeps_dtype():
    x = jnp.ones((1, 2, 2, 6), jnp.bfloat16)
    assert ops.local_response_norm(x).dtype == jnp.bfloat16


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_bfloat16_pooling_is_the_float32_result_rounded_once(count_include_pad):
    """A bfloat16 window sum is formed in float32 and rounded once (a bfloat16 reduce_window
    rounds after every addition, and on XLA:CPU is 10x slower); max is exact either way."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 9, 9, 3)), jnp.bfloat16)
    wide = x.astype(jnp.float32)
    got = ops.avg_pool(x, 3, 2, padding=1, count_include_pad=count_include_pad)
    want = ops.avg_pool(wide, 3, 2, padding=1, count_include_pad=count_include_pad)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(got, np.float32),
                                  np.asarray(want.astype(jnp.bfloat16), np.float32))
    got_max = ops.max_pool(x, 3, 2, padding=1)
    assert got_max.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(got_max, np.float32),
                                  np.asarray(ops.max_pool(wide, 3, 2, padding=1), np.float32))
