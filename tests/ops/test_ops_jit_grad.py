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
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 5, 5, 6)), jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).normal(size=f(x).shape), jnp.float32)
    loss = jax.jit(lambda x: jnp.sum(f(x) * w))
    grad = np.asarray(jax.jit(jax.grad(lambda x: jnp.sum(f(x) * w)))(x))
    eps = 1e-2
    for index in [(0, 0, 0, 0), (0, 2, 3, 1), (0, 4, 4, 5), (0, 1, 2, 3)]:
        step = np.zeros(x.shape, np.float32)
        step[index] = eps
        numeric = (float(loss(x + step)) - float(loss(x - step))) / (2 * eps)
        assert grad[index] == pytest.approx(numeric, rel=2e-2, abs=2e-3), index
