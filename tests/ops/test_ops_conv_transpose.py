"""conv_transpose2d is the adjoint of conv2d: equal to jax.linear_transpose, both impls."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.ops_reference import assert_within_sum_bound, pads_for
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnjax import ops


@st.composite
def transpose_cases(draw):
    groups = draw(st.sampled_from([1, 2]))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pair = st.tuples(st.integers(0, 4), st.integers(0, 4))
    padding = draw(st.one_of(st.sampled_from(["VALID", "SAME", "FULL"]), st.integers(0, 4),
                             st.tuples(pair, pair)))
    size = [draw(st.integers(1, 12)), draw(st.integers(1, 12))]
    pads = pads_for(padding, size, kernel, stride, dilation)
    assume(all(m + lo + hi >= (k - 1) * d + 1
               for m, (lo, hi), k, d in zip(size, pads, kernel, dilation, strict=True)))
    return dict(x=(2, *size, 2 * groups), w=(*kernel, 2, 3 * groups),
                kw=dict(stride=stride, dilation=dilation, padding=padding, groups=groups),
                pads=pads)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(case=transpose_cases(), seed=st.integers(0, 2**16))
def test_conv_transpose2d_equals_linear_transpose_of_conv2d(case, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case["x"]).astype(np.float32)
    w = rng.standard_normal(case["w"]).astype(np.float32)
    kw = case["kw"]
    y_shape = jax.eval_shape(lambda x: ops.conv2d(x, w, **kw), x).shape
    ct = rng.standard_normal(y_shape).astype(np.float32)
    # output_padding picks the exact input size among those giving the same output size; the
    # smallest is (o - 1) s + 1 for SAME, (o - 1) s + (k - 1) d + 1 - lo - hi otherwise.
    out_pad = []
    for axis in range(2):
        o, s, k, d = y_shape[1 + axis], kw["stride"][axis], w.shape[axis], kw["dilation"][axis]
        lo, hi = case["pads"][axis]
        smallest = (o - 1) * s + 1 if kw["padding"] == "SAME" else (o - 1) * s + (k - 1) * d + 1 \
            - lo - hi
        out_pad.append(x.shape[1 + axis] - smallest)
    assert all(0 <= p < s for p, s in zip(out_pad, kw["stride"], strict=True))
    out_pad = tuple(out_pad)

    def both(ct, w):
        (want,) = jax.linear_transpose(lambda x: ops.conv2d(x, w, **kw), x)(ct)
        return want, {impl: ops.conv_transpose2d(ct, w, output_padding=out_pad, impl=impl, **kw)
                      for impl in ("xla", "explicit")}

    want, got = jax.jit(both)(ct, w)
    # Two float32 sums of the same products in different orders: an entry of the transpose sums
    # at most kh * kw * Cout/g of them (4 * 3 * 3), bounded by the transpose at |w|, |ct| in float64.
    with jax.enable_x64(True):
        (abs_sum,) = jax.linear_transpose(lambda x: ops.conv2d(x, np.abs(np.float64(w)), **kw),
                                          np.zeros(x.shape))(np.abs(np.float64(ct)))
        abs_sum = np.asarray(abs_sum)
    for impl, value in got.items():
        assert value.shape == x.shape, impl
        assert_within_sum_bound(value, want, abs_sum, 4 * 3 * 3 + 1, sides=2, err_msg=impl)


@pytest.mark.parametrize("impl", ["xla", "explicit"])
def test_adjoint_identity_and_upsampling_shape(impl):
    # <conv(x), y> = <x, conv_transpose(y)> defines the adjoint; stride 2 doubles the size.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 8, 3))
    w = rng.standard_normal((4, 4, 3, 5))
    y = rng.standard_normal((1, 4, 4, 5))
    kw = dict(stride=2, padding=1)
    with jax.enable_x64(True):
        lhs = jnp.vdot(ops.conv2d(jnp.asarray(x), jnp.asarray(w), **kw), jnp.asarray(y))
        up = ops.conv_transpose2d(jnp.asarray(y), jnp.asarray(w), impl=impl, **kw)
        assert up.shape == (1, 8, 8, 3)
        # Both sides sum the same 4*4*5 * 4*4*3 products in float64 (u = 2**-53), in two orders.
        abs_sum = jnp.vdot(ops.conv2d(jnp.abs(x), jnp.abs(w), **kw), jnp.abs(y))
        assert_within_sum_bound(jnp.vdot(jnp.asarray(x), up), lhs, abs_sum, 4 * 4 * 5 * 4 * 4 * 3,
                                u=2.0**-53, sides=2)


def test_explicit_conv_transpose2d_is_differentiable():
    rng = np.random.default_rng(1)
    y = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 1, 4)).astype(np.float32)

    def loss(y, w, impl):
        return jnp.sum(jnp.tanh(ops.conv_transpose2d(y, w, stride=2, groups=2, impl=impl)))

    grads = {impl: jax.grad(loss, argnums=(0, 1))(y, w, impl) for impl in ("xla", "explicit")}
    # z = conv_transpose(y, w) sums at most 3*3*2 products; tanh' = 1 - tanh(z)**2 is at most 1
    # and moves by at most 0.77 |dz| (plus a few roundings); dy sums 3*3 terms w tanh'(z), dw sums
    # 2*3*4 terms y tanh'(z). So each gradient entry is within sum_rtol(18 + 24 + 4) of the
    # gradient at |y|, |w| with tanh' = 1, times (1 + max |z|) for z's own error.
    with jax.enable_x64(True):
        ya, wa = np.abs(np.float64(y)), np.abs(np.float64(w))
        z_max = float(ops.conv_transpose2d(ya, wa, stride=2, groups=2).max())
        abs_grads = [np.asarray(g) * (1 + z_max) for g in jax.grad(
            lambda y, w: jnp.sum(ops.conv_transpose2d(y, w, stride=2, groups=2)), (0, 1))(ya, wa)]
    for a, e, abs_sum in zip(grads["xla"], grads["explicit"], abs_grads, strict=True):
        assert_within_sum_bound(e, a, abs_sum, 18 + 24 + 4, sides=2)
