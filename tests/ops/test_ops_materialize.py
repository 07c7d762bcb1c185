"""materialize(x) is x bit for bit with an identity derivative, and on the CPU it stops XLA from
recomputing a convolution input's producers inside the kernel gradient's transposed copy."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnnjax import ops
from cnnjax.ops.materialize import materialize

SPECIAL = [0.0, -0.0, 1.5, -2.25, 3e38, -3e38, 1e-30, np.inf, -np.inf, np.nan]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_values_are_unchanged_bit_for_bit(dtype):
    x = jnp.asarray(np.r_[SPECIAL, np.random.default_rng(0).normal(size=100)], dtype)
    y = jax.jit(materialize)(x)
    bits = jnp.uint16 if dtype == jnp.bfloat16 else jnp.uint32
    np.testing.assert_array_equal(jax.lax.bitcast_convert_type(y, bits),
                                  jax.lax.bitcast_convert_type(x, bits))


def test_derivative_is_the_identity_in_both_modes():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 5)), jnp.float32)
    t = jnp.asarray(np.random.default_rng(2).normal(size=(3, 5)), jnp.float32)
    _, tangent = jax.jvp(materialize, (x,), (t,))
    np.testing.assert_array_equal(tangent, t)
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.vdot(materialize(x), t))(x), t)


def _fusions(hlo: str) -> dict[str, str]:
    """Fused computations of a compiled HLO module: name -> body."""
    return dict(re.findall(r"^%(\S+) .*?\{\n(.*?)^\}", hlo, re.S | re.M))


def _recomputing_transposes(barrier) -> list[str]:
    """Compiled fusions that transpose the conv input and also recompute its ReLU."""
    x = jnp.ones((8, 12, 12, 16))
    w = jnp.ones((3, 3, 16, 16))

    def loss(w, x):
        h = jnp.maximum(x * 2.0 - 1.0, 0.0)  # cheap elementwise producers, as batch norm + ReLU
        return jnp.sum(ops.conv2d(barrier(h), w, padding="SAME") ** 2)

    hlo = jax.jit(jax.grad(loss)).lower(w, x).compile().as_text()
    return [name for name, body in _fusions(hlo).items()
            if " transpose(" in body and " maximum(" in body]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="an XLA:CPU fusion decision")
def test_cpu_kernel_gradient_reads_the_input_instead_of_recomputing_it():
    # The premise: without it, XLA:CPU fuses the ReLU into the transposed copy. If a new XLA stops
    # doing that, materialize is no longer needed on the layers (cnnjax/models/layers.py).
    assert _recomputing_transposes(lambda h: h), "XLA no longer recomputes the conv input"
    assert _recomputing_transposes(materialize) == []
