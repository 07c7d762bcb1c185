"""Local response normalisation across channels (Krizhevsky, Sutskever & Hinton 2012, Sec. 3.3)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnnjax.ops.errors import OpError


def local_response_norm(x: jax.Array, size: int = 5, k: float = 2.0, alpha: float = 1e-4,
                        beta: float = 0.75) -> jax.Array:
    """AlexNet's brightness normalisation over neighbouring channels, (N, H, W, C) -> same shape.

        b[..., i] = a[..., i] / (k + alpha * sum_{j=i-lo}^{i+hi} a[..., j]^2)^beta

    with lo = size // 2 and hi = (size - 1) // 2 (centred for odd sizes) and
    the sum clipped to the channels that exist (Sec. 3.3; n = size = 5, k = 2, alpha = 1e-4,
    beta = 0.75 in the paper). alpha multiplies the plain sum, as in the paper; torch's
    LocalResponseNorm divides alpha by `size`, so torch's alpha equals ours times `size`.
    Computed in at least float32; the result keeps x's dtype.
    """
    x = jnp.asarray(x)
    if x.ndim != 4:
        raise OpError(f"local_response_norm: x must have rank 4 (N, H, W, C), got shape "
                      f"{x.shape}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise OpError(f"local_response_norm: size must be a positive int, got {size!r}")
    compute = jnp.promote_types(x.dtype, jnp.float32)
    a = x.astype(compute)
    # The init value must be concrete (numpy) for JAX to recognise a differentiable windowed sum.
    sq_sum = lax.reduce_window(a * a, np.zeros((), compute), lax.add, (1, 1, 1, size),
                               (1, 1, 1, 1), ((0, 0), (0, 0), (0, 0), (size // 2, (size - 1) // 2)))
    return (a / (k + alpha * sq_sum) ** beta).astype(x.dtype)
