"""conv1d/conv2d/convolve1d/convolve2d values against numpy loops and scipy.signal, both impls."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from helpers.ops_reference import (
    BF16_U,
    assert_within_sum_bound,
    conv1d_loop,
    conv2d_loop,
    dilate_kernel,
    pads_for,
)
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnjax import ops

IMPLS = ("xla", "explicit")
# Tolerances: each output is a float32 sum of K = kh kw Cin/g products (a product is one more
# rounding: K + 1), computed in an order each CPU's kernels choose; against the float64 loops it is
# off by at most sum_rtol(K + 1) * sum|x w| (helpers.ops_reference), checked entry by entry with
# sum|x w| from the same oracle on |x| and |w|. With K <= 48 that is below 3e-6 * sum|x w|, while a
# missing or misplaced term (off-by-one padding, an unflipped kernel) moves an entry by a whole
# |x w|, about 0.6.
SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


@functools.cache
def _jitted(fn, impl, **kwargs):
    return jax.jit(functools.partial(fn, impl=impl, **kwargs))


def _run(fn, x, w, impl, **kwargs):
    """Jit per (op, impl, static args) so eager dispatch of many small ops is not what we time."""
    frozen = {k: (tuple(map(tuple, v)) if isinstance(v, list) else v) for k, v in kwargs.items()}
    return np.asarray(_jitted(fn, impl, **frozen)(x, w))


def _both_impls(corr, conv, x, w, **kwargs):
    """{impl: (corr(x, w), conv(x, w))} from one compiled program (compiling dominates here)."""
    def all_outputs(x, w):
        return {impl: (corr(x, w, impl=impl, **kwargs), conv(x, w, impl=impl, **kwargs))
                for impl in IMPLS}
    return jax.tree.map(np.asarray, jax.jit(all_outputs)(x, w))


@st.composite
def conv2d_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cin_g, cout_g = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    pair = st.tuples(st.integers(0, 3), st.integers(0, 3))
    padding = draw(st.one_of(st.sampled_from(["VALID", "SAME", "FULL"]), st.integers(0, 3),
                             st.tuples(pair, pair)))
    size = []
    for k, d in zip(kernel, dilation, strict=True):
        k_eff = (k - 1) * d + 1
        size.append(draw(st.integers(max(1, k_eff - 4), k_eff + 6)))
    pads = pads_for(padding, size, kernel, stride, dilation)
    assume(all(m + lo + hi >= (k - 1) * d + 1
               for m, (lo, hi), k, d in zip(size, pads, kernel, dilation, strict=True)))
    return dict(x_shape=(2, *size, cin_g * groups), w_shape=(*kernel, cin_g, cout_g * groups),
                stride=stride, dilation=dilation, padding=padding, groups=groups, pads=pads)


@SETTINGS
@given(case=conv2d_cases(), seed=st.integers(0, 2**16))
def test_conv2d_and_convolve2d_match_numpy_loop(case, seed):
    rng = np.random.default_rng(seed)
    x, w = _rand(rng, case["x_shape"]), _rand(rng, case["w_shape"])
    kw = dict(stride=case["stride"], dilation=case["dilation"], padding=case["padding"],
              groups=case["groups"])
    want = conv2d_loop(x, w, case["stride"], case["pads"], case["dilation"], case["groups"])
    want_flipped = conv2d_loop(x, w[::-1, ::-1], case["stride"], case["pads"], case["dilation"],
                               case["groups"])
    abs_sum = conv2d_loop(np.abs(x), np.abs(w), case["stride"], case["pads"], case["dilation"],
                          case["groups"])
    abs_flipped = conv2d_loop(np.abs(x), np.abs(w[::-1, ::-1]), case["stride"], case["pads"],
                              case["dilation"], case["groups"])
    k = np.prod(case["w_shape"][:3]) + 1
    for impl, (corr, conv) in _both_impls(ops.conv2d, ops.convolve2d, x, w, **kw).items():
        assert_within_sum_bound(corr, want, abs_sum, k, err_msg=impl)
        assert_within_sum_bound(conv, want_flipped, abs_flipped, k, err_msg=impl)
    # The output-size formula agrees with the shape actually produced.
    for axis in range(2):
        assert want.shape[1 + axis] == ops.conv_output_size(
            case["x_shape"][1 + axis], case["w_shape"][axis], case["stride"][axis],
            case["pads"][axis], case["dilation"][axis])
        if isinstance(case["padding"], int | str):
            assert want.shape[1 + axis] == ops.conv_output_size(
                case["x_shape"][1 + axis], case["w_shape"][axis], case["stride"][axis],
                case["padding"], case["dilation"][axis])


@SETTINGS
@given(groups=st.sampled_from([1, 2]), k=st.integers(1, 5), stride=st.integers(1, 3),
       dilation=st.integers(1, 3), padding=st.one_of(st.sampled_from(["VALID", "SAME", "FULL"]),
                                                     st.integers(0, 3)),
       length=st.integers(1, 14), seed=st.integers(0, 2**16))
def test_conv1d_matches_scalar_loop(groups, k, stride, dilation, padding, length, seed):
    (pads,) = pads_for(padding, [length], [k], [stride], [dilation])
    assume(length + sum(pads) >= (k - 1) * dilation + 1)
    rng = np.random.default_rng(seed)
    x, w = _rand(rng, (2, length, 2 * groups)), _rand(rng, (k, 2, 3 * groups))
    kw = dict(stride=stride, dilation=dilation, padding=padding, groups=groups)
    want = conv1d_loop(x, w, stride, pads, dilation, groups)
    want_flipped = conv1d_loop(x, w[::-1], stride, pads, dilation, groups)
    abs_sum = conv1d_loop(np.abs(x), np.abs(w), stride, pads, dilation, groups)
    abs_flipped = conv1d_loop(np.abs(x), np.abs(w[::-1]), stride, pads, dilation, groups)
    for impl, (corr, conv) in _both_impls(ops.conv1d, ops.convolve1d, x, w, **kw).items():
        assert_within_sum_bound(corr, want, abs_sum, 2 * k + 1, err_msg=impl)
        assert_within_sum_bound(conv, want_flipped, abs_flipped, 2 * k + 1, err_msg=impl)
    assert want.shape[1] == ops.conv_output_size(length, k, stride, pads, dilation)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["valid", "full", "same"])
@pytest.mark.parametrize("kernel", [(3, 3), (2, 5), (4, 4)])
@pytest.mark.parametrize("dilation", [1, 2])
def test_conv2d_matches_scipy_correlate2d_multichannel(impl, mode, kernel, dilation):
    rng = np.random.default_rng(0)
    x, w = _rand(rng, (2, 11, 9, 3)), _rand(rng, (*kernel, 3, 2))
    got = _run(ops.conv2d, x, w, impl, padding=mode.upper(), dilation=dilation)
    want, abs_sum = np.zeros(got.shape), np.zeros(got.shape)
    for n in range(2):
        for o in range(2):
            for c in range(3):
                kernel_co = dilate_kernel(w[..., c, o], dilation)
                want[n, ..., o] += scipy.signal.correlate2d(x[n, ..., c], kernel_co, mode)
                abs_sum[n, ..., o] += scipy.signal.correlate2d(np.abs(x[n, ..., c]),
                                                               np.abs(kernel_co), mode)
    assert_within_sum_bound(got, want, abs_sum, kernel[0] * kernel[1] * 3 + 1)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["valid", "full", "same"])
@pytest.mark.parametrize("kernel", [(3, 3), (5, 3), (1, 1)])
def test_convolve2d_matches_scipy_convolve2d(impl, mode, kernel):
    # Odd kernels: for even ones 'SAME' keeps the cross-correlation's padding split (the smaller
    # half first), which scipy's convolve2d(mode='same') mirrors.
    rng = np.random.default_rng(1)
    x, w = _rand(rng, (1, 8, 10, 1)), _rand(rng, (*kernel, 1, 1))
    got = _run(ops.convolve2d, x, w, impl, padding=mode.upper())[0, ..., 0]
    want = scipy.signal.convolve2d(np.float64(x[0, ..., 0]), w[..., 0, 0], mode)
    abs_sum = scipy.signal.convolve2d(np.abs(np.float64(x[0, ..., 0])), np.abs(w[..., 0, 0]), mode)
    assert_within_sum_bound(got, want, abs_sum, kernel[0] * kernel[1] + 1)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("stride", [2, 3])
def test_strided_conv_is_subsampled_scipy(impl, stride):
    rng = np.random.default_rng(2)
    x, w = _rand(rng, (1, 13, 12, 1)), _rand(rng, (3, 4, 1, 1))
    got = _run(ops.conv2d, x, w, impl, stride=stride, padding="FULL")[0, ..., 0]
    x64, w64 = np.float64(x[0, ..., 0]), np.float64(w[..., 0, 0])
    want = scipy.signal.correlate2d(x64, w64, "full")[::stride, ::stride]
    abs_sum = scipy.signal.correlate2d(np.abs(x64), np.abs(w64), "full")[::stride, ::stride]
    assert_within_sum_bound(got, want, abs_sum, 3 * 4 + 1)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("mode", ["valid", "full", "same"])
def test_conv1d_matches_numpy_correlate_and_convolve(impl, mode):
    rng = np.random.default_rng(3)
    x, w = _rand(rng, (1, 17, 1)), _rand(rng, (5, 1, 1))
    x64, w64 = np.float64(x[0, :, 0]), np.float64(w[:, 0, 0])
    got = _run(ops.conv1d, x, w, impl, padding=mode.upper())[0, :, 0]
    assert_within_sum_bound(got, np.correlate(x64, w64, mode),
                            np.correlate(np.abs(x64), np.abs(w64), mode), 5 + 1)
    got = _run(ops.convolve1d, x, w, impl, padding=mode.upper())[0, :, 0]
    assert_within_sum_bound(got, np.convolve(x64, w64, mode),
                            np.convolve(np.abs(x64), np.abs(w64), mode), 5 + 1)


@pytest.mark.parametrize("impl", IMPLS)
def test_bias_is_added_per_output_channel(impl):
    rng = np.random.default_rng(4)
    x, w, b = _rand(rng, (2, 6, 6, 4)), _rand(rng, (3, 3, 2, 6)), _rand(rng, (6,))
    with_bias = ops.conv2d(x, w, b, groups=2, padding="SAME", impl=impl)
    without = ops.conv2d(x, w, groups=2, padding="SAME", impl=impl)
    # Two float32 sums of 3*3*2 products (+ the bias): the difference is b up to both roundings.
    abs_sum = conv2d_loop(np.abs(x), np.abs(w), pads=pads_for("SAME", (6, 6), (3, 3), (1, 1),
                                                                (1, 1)), groups=2) + np.abs(b)
    assert_within_sum_bound(with_bias - without, np.broadcast_to(b, without.shape), abs_sum,
                            3 * 3 * 2 + 2, sides=2)


@pytest.mark.parametrize("impl", IMPLS)
def test_depthwise_conv_matches_per_channel_scipy(impl):
    rng = np.random.default_rng(5)
    x, w = _rand(rng, (1, 7, 7, 3)), _rand(rng, (3, 3, 1, 6))  # channel multiplier 2
    got = _run(ops.conv2d, x, w, impl, groups=3, padding="SAME")
    x64, w64 = np.float64(x), np.float64(w)
    for o in range(6):
        want = scipy.signal.correlate2d(x64[0, ..., o // 2], w64[..., 0, o], "same")
        abs_sum = scipy.signal.correlate2d(np.abs(x64[0, ..., o // 2]), np.abs(w64[..., 0, o]),
                                           "same")
        assert_within_sum_bound(got[0, ..., o], want, abs_sum, 3 * 3 + 1)


@pytest.mark.parametrize("impl", IMPLS)
def test_translation_equivariance_away_from_borders(impl):
    # Stride-1 conv commutes with shifts: conv(shift(x)) = shift(conv(x)) wherever no window
    # reaches the border (Deep Learning, Sec. 9.2).
    rng = np.random.default_rng(6)
    x, w = _rand(rng, (1, 16, 16, 2)), _rand(rng, (3, 5, 2, 3))
    dy, dx = 2, -3
    shifted = np.roll(x, (dy, dx), axis=(1, 2))
    y = _run(ops.conv2d, x, w, impl, padding="SAME", dilation=(2, 1))
    y_shifted = _run(ops.conv2d, shifted, w, impl, padding="SAME", dilation=(2, 1))
    margin = 8
    inner = (slice(None), slice(margin, -margin), slice(margin, -margin))
    # Both sides are float32 sums of 3*5*2 products, possibly in different orders (a kernel may
    # block the image by position): each within the sum bound of the exact value.
    abs_sum = conv2d_loop(np.abs(shifted), np.abs(w), pads=pads_for("SAME", (16, 16), (3, 5),
                                                                     (1, 1), (2, 1)),
                          dilation=(2, 1))
    assert_within_sum_bound(y_shifted[inner], np.roll(y, (dy, dx), axis=(1, 2))[inner],
                            abs_sum[inner], 3 * 5 * 2 + 1, sides=2)
    assert not np.allclose(y_shifted, y, atol=1e-2)  # the shift did move the response


@pytest.mark.parametrize("impl", IMPLS)
def test_linearity_in_input_and_kernel(impl):
    rng = np.random.default_rng(7)
    x1, x2 = _rand(rng, (2, 9, 8, 4)), _rand(rng, (2, 9, 8, 4))
    w1, w2 = _rand(rng, (3, 2, 2, 4)), _rand(rng, (3, 2, 2, 4))
    kw = dict(stride=2, padding=1, dilation=(1, 2), groups=2)
    a, b = 1.5, -0.7

    def f(x, w):
        return _run(ops.conv2d, x, w, impl, **kw)

    # Each side is float32 sums of K = 3*2*2 products, plus the roundings of a x + b y (two on
    # the input, two on the output side): K + 3 terms each, bounded by sums over |a x1| + |b x2|.
    def abs_conv(x, w):
        return conv2d_loop(x, w, (2, 2), ((1, 1), (1, 1)), (1, 2), 2)

    k = 3 * 2 * 2 + 3
    assert_within_sum_bound(f(a * x1 + b * x2, w1), a * f(x1, w1) + b * f(x2, w1),
                            abs_conv(abs(a) * np.abs(x1) + abs(b) * np.abs(x2), np.abs(w1)), k,
                            sides=2)
    assert_within_sum_bound(f(x1, a * w1 + b * w2), a * f(x1, w1) + b * f(x1, w2),
                            abs_conv(np.abs(x1), abs(a) * np.abs(w1) + abs(b) * np.abs(w2)), k,
                            sides=2)


@pytest.mark.parametrize("impl", IMPLS)
def test_jit_vmap_and_dtype(impl):
    rng = np.random.default_rng(8)
    x, ws = _rand(rng, (2, 6, 6, 2)), _rand(rng, (3, 2, 2, 2, 4))
    batched = jax.vmap(lambda w: ops.conv2d(x, w, padding="SAME", impl=impl))(ws)
    same = pads_for("SAME", (6, 6), (2, 2), (1, 1), (1, 1))
    for i in range(3):  # vmap may batch the kernels into one conv that sums in another order
        assert_within_sum_bound(batched[i], ops.conv2d(x, ws[i], padding="SAME"),
                                conv2d_loop(np.abs(x), np.abs(ws[i]), pads=same), 2 * 2 * 2 + 1,
                                sides=2)
    xb, wb = jnp.asarray(x, jnp.bfloat16), jnp.asarray(ws[0], jnp.bfloat16)
    y = jax.jit(lambda x, w: ops.conv2d(x, w, stride=2, impl=impl))(xb, wb)
    assert y.dtype == jnp.bfloat16
    # bfloat16 inputs (rounded: 2 roundings per product) and a sum of 2*2*2 products that a kernel
    # may accumulate in bfloat16 (the explicit impl adds its row blocks in the input dtype).
    assert_within_sum_bound(y, conv2d_loop(x, ws[0], (2, 2)),
                            conv2d_loop(np.abs(x), np.abs(ws[0]), (2, 2)), 2 * 2 * 2 + 3, u=BF16_U)


def test_the_rounding_bound_catches_a_missing_term_and_shifted_padding():
    """The float32 bound is not vacuous: dropping one tap of a 3x3x3 kernel, or padding one cell
    too far, fails it, while float32 rounding of the same sum passes."""
    rng = np.random.default_rng(9)
    x, w = _rand(rng, (1, 8, 8, 3)), _rand(rng, (3, 3, 3, 2))
    same = ((1, 1), (1, 1))
    want, abs_sum = conv2d_loop(x, w, pads=same), conv2d_loop(np.abs(x), np.abs(w), pads=same)
    assert_within_sum_bound(np.float32(want), want, abs_sum, 3 * 3 * 3 + 1)
    missing = w.copy()
    missing[2, 0, 1, 0] = 0.0
    for wrong in (conv2d_loop(x, missing, pads=same), conv2d_loop(x, w, pads=((0, 2), (1, 1)))):
        with pytest.raises(AssertionError, match="beyond the rounding bound"):
            assert_within_sum_bound(np.float32(wrong), want, abs_sum, 3 * 3 * 3 + 1)


def test_the_rounding_bound_holds_for_other_summation_orders():
    """What another CPU's kernels may do, done here in numpy float32: sequential sums forward and
    backward, pairwise sums, and sums of the largest terms first all stay within the bound."""
    rng = np.random.default_rng(10)
    for k in (9, 27, 576, 16384):
        x, w = _rand(rng, (64, k)), _rand(rng, (64, k))
        t = x * w  # float32 products: one rounding each
        exact = (np.float64(x) * np.float64(w)).sum(1)
        largest_first = np.take_along_axis(t, np.argsort(-np.abs(t), axis=1), axis=1)
        for order in (np.cumsum(t, 1, dtype=np.float32)[:, -1],
                      np.cumsum(t[:, ::-1], 1, dtype=np.float32)[:, -1], t.sum(1),
                      np.cumsum(largest_first, 1, dtype=np.float32)[:, -1]):
            assert_within_sum_bound(order, exact, np.abs(np.float64(x) * w).sum(1), k + 1)
