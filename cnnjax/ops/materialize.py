"""Write a convolution's input to memory once, instead of letting XLA:CPU recompute it.

The kernel gradient of a convolution reads its input through a transposed copy (XLA computes it as a
convolution with the batch and channel axes swapped). XLA:CPU's fusion pass merges the cheap
elementwise ops that produce that input (batch norm's normalisation, ReLU, a residual sum, and the
same for the block before it) into every consumer, so each transposed copy recomputes them, and
recomputes them in transposed order: in resnet20 on the CPU those copies were about a third of a
training step, and one of them recomputed three residual blocks (figures: benchmarks/README.md).

XLA strips `lax.optimization_barrier` before fusion on the CPU, but it never duplicates a division
into a consumer. Dividing by a 1 that it cannot prove to be 1 therefore makes it compute the input
once, into a buffer that both the convolution and the copy read. The division's derivative is
the identity (a custom JVP), and the whole thing applies only when lowering for the CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def _divide_by_one(x: jax.Array) -> jax.Array:
    # 1 + min(|x|, 0) is exactly 1 for every finite or infinite x and NaN for NaN, so the quotient is
    # x bit for bit, -0.0 included. The divisor is elementwise on purpose: XLA turns a division by a
    # scalar into a (cheap, duplicable) multiplication by its reciprocal.
    return x / (1 + jnp.minimum(jnp.abs(x), 0))


@jax.custom_jvp
def _materialize_cpu(x: jax.Array) -> jax.Array:
    return _divide_by_one(x)


# The tangent passes through unchanged (a custom JVP rather than a VJP keeps forward mode and
# jax.linear_transpose working); the backward pass is therefore the identity too.
_materialize_cpu.defjvp(lambda primals, tangents: (_divide_by_one(*primals), *tangents))


def materialize(x: jax.Array) -> jax.Array:
    """x unchanged (bit for bit), computed once into memory on the CPU; a no-op elsewhere."""
    return lax.platform_dependent(x, cpu=_materialize_cpu, default=lambda x: x)
