"""Gradients of the explicit conv (hand-written custom_vjp) against XLA and finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.ops_reference import BF16_U, assert_within_sum_bound, pads_for, sum_rtol
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from cnnjax import ops

SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _grads_both(op, x, w, b, ct, **kw):
    """VJPs of op(x, w, b) along cotangent ct for both impls, compiled as one program."""
    def vjps(x, w, b, ct):
        out = {}
        for impl in ("xla", "explicit"):
            _, pullback = jax.vjp(lambda x, w, b, impl=impl: op(x, w, b, impl=impl, **kw), x, w, b)
            out[impl] = pullback(ct)
        return out
    return jax.tree.map(np.asarray, jax.jit(vjps)(x, w, b, ct))


@st.composite
def grad_cases(draw, nd):
    groups = draw(st.sampled_from([1, 2, 3]))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    padding = draw(st.one_of(st.sampled_from(["VALID", "SAME", "FULL"]), st.integers(0, 4)))
    size = [draw(st.integers(max(1, (k - 1) * d - 2), (k - 1) * d + 7))
            for k, d in zip(kernel, dilation, strict=True)]
    pads = pads_for(padding, size, kernel, stride, dilation)
    assume(all(m + lo + hi >= (k - 1) * d + 1
               for m, (lo, hi), k, d in zip(size, pads, kernel, dilation, strict=True)))
    cin_g, cout_g = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    return dict(x=(2, *size, cin_g * groups), w=(*kernel, cin_g, cout_g * groups),
                kw=dict(stride=stride, dilation=dilation, padding=padding, groups=groups))


def _abs_grads(op, x, w, b, ct, **kw):
    """The VJPs of op at |x|, |w|, |b| along |ct| in float64: for a bilinear op each entry is the sum
    of the absolute values of the terms that the gradient entry sums."""
    with jax.enable_x64(True):
        args = [np.abs(np.float64(a)) for a in (x, w, b, ct)]
        _, pullback = jax.vjp(lambda x, w, b: op(x, w, b, impl="xla", **kw), *args[:3])
        return [np.asarray(g) for g in pullback(args[3])]


def _check_case(op, case, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case["x"]).astype(np.float32)
    w = rng.standard_normal(case["w"]).astype(np.float32)
    b = rng.standard_normal(case["w"][-1:]).astype(np.float32)
    y = jax.eval_shape(lambda x, w: op(x, w, **case["kw"]), x, w)
    ct = rng.standard_normal(y.shape).astype(np.float32)
    got = _grads_both(op, x, w, b, ct, **case["kw"])
    # Two float32 sums of the same terms in different orders. An entry of dx sums at most
    # prod(kernel) * Cout/g terms, one of dw or db at most N * prod(output size).
    groups = case["kw"]["groups"]
    k = max(np.prod(case["w"][:-2]) * case["w"][-1] // groups, np.prod(y.shape[:-1])) + 1
    for name, a, e, abs_sum in zip("xwb", got["xla"], got["explicit"],
                                   _abs_grads(op, x, w, b, ct, **case["kw"]), strict=True):
        assert_within_sum_bound(e, a, abs_sum, k, sides=2, err_msg=f"d/d{name}")


@pytest.mark.slow  # > 5 s on the 2-core CPU
@SETTINGS
@given(case=grad_cases(2), seed=st.integers(0, 2**16))
def test_explicit_conv2d_vjp_matches_xla(case, seed):
    _check_case(ops.conv2d, case, seed)


@settings(SETTINGS, max_examples=10)
@given(case=grad_cases(1), seed=st.integers(0, 2**16))
def test_explicit_conv1d_vjp_matches_xla(case, seed):
    _check_case(ops.conv1d, case, seed)


@pytest.mark.parametrize(("kw", "second_order"), [
    (dict(stride=2, padding="SAME", groups=2), True),
    (dict(stride=(3, 1), dilation=(1, 2), padding=((2, 0), (1, 3))), False),
    (dict(padding=4, stride=2), False),   # padding wider than the kernel: dx is cropped
    (dict(padding="FULL", groups=4), False),   # depthwise
])
def test_explicit_conv2d_gradient_matches_finite_differences(kw, second_order):
    # All float64, and check_grads draws its direction from a fixed seed, so the outcome does not
    # depend on the CPU: reduction order moves the difference quotient by about
    # K * 2**-53 * |f| / eps ~ 1e-10, far below the tolerance. What the tolerance covers is central
    # differences' truncation, eps**2 / 6 * |d3f| with check_grads' eps = 1e-4: along a N(0, 1)
    # direction the conv's derivative c1 has variance ~ 2K = 48 (K = 24 products), |d3 sin(c)| ~
    # |c1|**3 ~ 500, so 1e-6 per output, summed against N(0, 1) cotangents over ~200 outputs:
    # ~1.5e-5, under rtol 1e-6 times the inner product (~ sqrt(200) * 7 ~ 100). The second-order
    # check differentiates a quartic of those derivatives, so its truncation is ~10x larger: 1e-5.
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal((2, 7, 6, 4)))
        w = jnp.asarray(rng.standard_normal((3, 2, 4 // kw.get("groups", 1), 4)))

        @jax.jit
        def f(x, w):
            return jnp.sin(ops.conv2d(x, w, impl="explicit", **kw))

        check_grads(f, (x, w), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)
        if second_order:  # reverse-over-reverse differentiates the hand-written backward
            g = jax.jit(lambda x: jnp.sum(jax.grad(lambda x: jnp.sum(f(x, w) ** 2))(x) ** 2))
            check_grads(g, (x,), order=1, modes=["rev"], atol=1e-5, rtol=1e-5)


def test_explicit_conv1d_gradient_matches_finite_differences():
    # Float64 with a fixed direction, as above: only the truncation of the differences is left.
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal((2, 11, 2)))
        w = jnp.asarray(rng.standard_normal((3, 2, 3)))
        check_grads(jax.jit(lambda x, w: ops.convolve1d(x, w, stride=2, dilation=2,
                                                        padding="SAME", impl="explicit") ** 2),
                    (x, w), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_grad_under_vmap_and_jit():
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((3, 1, 6, 6, 2)).astype(np.float32)
    w = rng.standard_normal((3, 3, 2, 2)).astype(np.float32)

    def loss(x, w, impl):
        return jnp.sum(ops.conv2d(x, w, stride=2, padding="SAME", impl=impl) ** 2)

    per_example = {impl: jax.jit(jax.vmap(jax.grad(loss, argnums=1), in_axes=(0, None, None)),
                                 static_argnums=2)(xs, w, impl) for impl in ("xla", "explicit")}
    batch = jax.grad(loss, argnums=1)(xs[:, 0], w, "xla")
    # dL/dw = 2 sum_p x_p y_p over the 3 * 3 output positions, y itself a sum of 3*3*2 products:
    # the rounding of both, bounded by the same gradient at |x|, |w| in float64; over the batch
    # of 3 the positions triple.
    with jax.enable_x64(True):
        abs_grads = np.asarray(jax.vmap(jax.grad(loss, argnums=1), in_axes=(0, None, None))(
            np.abs(np.float64(xs)), np.abs(np.float64(w)), "xla"))
    k = 3 * 3 * 2 + 3 * 3 + 2
    assert_within_sum_bound(per_example["explicit"], per_example["xla"], abs_grads, k, sides=2)
    assert_within_sum_bound(per_example["xla"].sum(0), batch, abs_grads.sum(0), k + 2 * 3 * 3,
                            sides=2)


@pytest.mark.parametrize("impl", ["xla", "explicit", "auto"])
def test_bfloat16_bias_gradient_is_summed_in_float32(impl):
    """The bias gradient of a bfloat16 convolution sums the cotangent over N, H and W (8,192 terms
    here). Summed in bfloat16, as reverse mode of a bfloat16 addition does and XLA:CPU rounds after
    every partial sum, it stalls once the partial sum is 2**8 times a term: lenet5's first bias
    got 16 instead of 1004 at batch 128."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((8, 34, 34, 2)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((3, 3, 2, 4)), jnp.bfloat16)
    ct = jnp.asarray(rng.uniform(0.5, 1.0, (8, 32, 32, 4)), jnp.bfloat16)
    grad = jax.jit(jax.grad(lambda b: jnp.vdot(
        ops.conv2d(x, w, b, impl=impl).astype(jnp.float32), ct.astype(jnp.float32))))(
        jnp.zeros(4, jnp.float32))
    want = np.asarray(ct, np.float64).sum(axis=(0, 1, 2))
    # Positive terms: a float32 sum of 8,192 of them in any order (sum_rtol), then one rounding of
    # the result to bfloat16 (the bias enters the layer in its compute dtype): BF16_U.
    np.testing.assert_allclose(grad, want, rtol=sum_rtol(8 * 32 * 32) + BF16_U)
