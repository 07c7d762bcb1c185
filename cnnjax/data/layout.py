"""How a global batch is divided among hosts (no TensorFlow)."""

from __future__ import annotations

import dataclasses

from cnnjax.data.config import DataError


@dataclasses.dataclass(frozen=True)
class Layout:
    """Host `process_index` of `process_count` reads `local` of the `total` examples of each step."""

    total: int
    local: int
    process_index: int
    process_count: int


def make_layout(global_batch_size: int, process_index: int | None = None,
                process_count: int | None = None) -> Layout:
    """Checks the split of a global batch across hosts; None means JAX's own process index/count."""
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if process_count < 1 or not 0 <= process_index < process_count:
        raise DataError(f"process_index must lie in [0, process_count), got {process_index} of "
                         f"{process_count}")
    if global_batch_size < 1 or global_batch_size % process_count:
        raise DataError(f"global_batch_size={global_batch_size} must be a positive multiple of "
                        f"process_count={process_count}")
    return Layout(global_batch_size, global_batch_size // process_count, process_index,
                  process_count)
