"""Every windowed op differentiates under jit (lax.reduce_window needs a concrete init value for that),
and the jitted gradient equals central finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import ops

OPS = {
    "max_pool": lambda x: ops.max_pool(x, 3, 2, padding=1),
    "avg_pool": lambda x: ops.avg_pool(x, 3, 2, padding=1),
    "avg_pool_no_pad": lambda x: ops.avg_pool(x, 3, 2, padding=1, count_include_pad=False),
    "lrn": lambda x: ops.local_response_norm(x, size=5, alpha=0.1),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_jitted_gradient_matches_finite_differences(name):
    f = OPS[name]
    x = np.random.default_rng(0).normal(size=(1, 5, 5, 6)).astype(np.float32)
    w = np.random.default_rng(1).normal(size=f(x).shape).astype(np.float32)
    grad = np.asarray(jax.jit(jax.grad(lambda x: jnp.sum(f(x) * w)))(x))
    # The difference quotient in float64: in float32 the loss's rounding (a sum of 54 to 150 terms
    # of size ~1) divided by 2 eps would dominate. What is left: truncation, eps**2 / 6 * |d3f| =
    # 2e-7 * |d3f|, zero for the piecewise-linear pools and O(1) for LRN at alpha = 0.1 on N(0, 1)
    # inputs; and the float32 gradient's own rounding, each entry a sum of at most 5 window or
    # channel terms, each a product of a few rounded factors: gamma_30 * sum|terms| = 1.8e-6 * 20.
    # So 1e-4, well below what a wrong gradient does (the wrong window maximum, a divisor of 9
    # instead of the count of real cells: a change of about |w| / 9 ~ 0.1).
    eps = 1e-3
    with jax.enable_x64(True):
        loss = jax.jit(lambda x: jnp.sum(f(x) * np.float64(w)))
        for index in [(0, 0, 0, 0), (0, 2, 3, 1), (0, 4, 4, 5), (0, 1, 2, 3)]:
            step = np.zeros(x.shape)
            step[index] = eps
            numeric = (float(loss(x + step)) - float(loss(x - step))) / (2 * eps)
            assert grad[index] == pytest.approx(numeric, rel=1e-4, abs=1e-4), index
