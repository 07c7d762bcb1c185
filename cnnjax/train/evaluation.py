"""One evaluation loop for training (loop.evaluate) and the `eval` tool: any batch size on any number
of devices, and the decoded evaluation set kept in host memory across evaluations when it fits.

The batch is padded up to a multiple of the device count (the data pipeline pads with mask False, and
every metric is a sum over the mask), so eval_batch_size=500 runs on 8 devices as batches of 504.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np

from cnnjax import data
from cnnjax.data.device import prefetch_to_device
from cnnjax.errors import UserError


def padded_batch_size(batch_size: int, devices: int | None = None) -> int:
    """`batch_size` rounded up to a multiple of `devices` (default: every device of the run)."""
    devices = jax.device_count() if devices is None else devices
    if batch_size < 1:
        raise UserError(f"the evaluation batch size must be positive, got {batch_size}")
    return math.ceil(batch_size / devices) * devices


class EvalCache:
    """Host batches of evaluation passes, kept for the next pass while they fit under `max_bytes`.

    Evaluation batches are a pure function of (data config, split, crops, batch size): no random
    augmentation, so the second pass may reuse the first one's decoded uint8 images. A pass that
    outgrows the cap is streamed and not kept (the pipeline decodes it again next time).
    """

    def __init__(self, max_bytes: float):
        self.max_bytes = max(float(max_bytes), 0.0)
        self._kept: dict[tuple, list[dict]] = {}

    @classmethod
    def from_gb(cls, gigabytes: float) -> EvalCache:
        """A cache of `gigabytes`, but at most half of the host's physical memory."""
        try:
            physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            physical = 0
        cap = float(gigabytes) * 2**30
        return cls(min(cap, physical / 2) if physical else cap)

    def batches(self, data_config: ml_collections.ConfigDict, *, global_batch_size: int,
                split: str | None, crops: int, skipped: data.SkippedImages | None = None,
                ) -> Iterator[dict[str, np.ndarray]]:
        """The host batches of one pass, from memory when an earlier pass was kept (`skipped` names
        unreadable files once per run)."""
        key = (data_config.to_json(), split, crops, global_batch_size)
        if key in self._kept:
            yield from self._kept[key]
            return
        kept, size = [], 0
        for batch in data.eval_batches(data_config, global_batch_size=global_batch_size,
                                       split=split, crops=crops, skipped=skipped):
            if kept is not None:
                size += sum(v.nbytes for v in batch.values())
                if size <= self.max_bytes:
                    kept.append(batch)
                else:
                    kept = None
            yield batch
        if kept is not None:
            self._kept[key] = kept


def evaluation_pass(eval_fn, state, batches: Iterator[dict[str, np.ndarray]], sharding,
                    keep_predictions: bool = False) -> tuple[dict[str, float], list, list]:
    """Sums of loss, top-1, top-5 hits and count over the unmasked examples of `batches`, and (with
    keep_predictions) the labels and predictions of those examples as host arrays.

    Sums accumulate on the devices, so the host reads once per pass unless predictions are kept.
    """
    totals, labels, predictions = None, [], []
    for batch in prefetch_to_device(batches, sharding):
        sums = eval_fn(state, batch)
        predicted = sums.pop("predictions")
        if keep_predictions:
            host = _to_host({"p": predicted, "label": batch["label"], "mask": batch["mask"]})
            keep = host["mask"].astype(bool)
            labels.append(host["label"][keep])
            predictions.append(host["p"][keep])
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    if totals is None:
        return {"loss": 0.0, "top1": 0.0, "top5": 0.0, "count": 0.0}, labels, predictions
    return {k: float(v) for k, v in jax.device_get(totals).items()}, labels, predictions


def _to_host(tree: dict) -> dict:
    """Global arrays as numpy: this process's copy, or every process's rows on a multi-host run."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)
