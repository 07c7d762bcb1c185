"""Narrow floats computed wide: one rule for the ops that must not accumulate in bfloat16."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def widened(x: jax.Array) -> tuple[jax.Array, jnp.dtype]:
    """(x in float32 when it is a float narrower than float32, else x; x's own dtype).

    XLA:CPU rounds a bfloat16 reduction after every partial sum (a sum stalls at 2**8 terms' worth)
    and runs bfloat16 reduce_window 10x slower than float32 (benchmarks/README.md, "A lean CPU fast
    path"): sums and pools are formed in float32 and the result rounded once to the dtype returned.
    """
    if jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits < 32:
        return x.astype(jnp.float32), x.dtype
    return x, x.dtype
