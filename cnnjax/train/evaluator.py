"""The evaluator: one pass of an evaluation split through the jitted evaluation step. The training loop
(every eval_every_steps) and `./launch.sh eval` both use it, so both pad, mask, crop and count alike.

What is evaluated comes from the config alone: data.eval_split of data.eval_source (or data.source),
data.eval_transform with data.eval_crops views per example (softmax averaged over the views),
eval_batch_size examples per step. The batch is padded up to a multiple of the device count (the data
pipeline pads with mask False, and every metric is a sum over the mask), so eval_batch_size=500 runs
on 8 devices as batches of 504. Decoded evaluation sets are kept in host memory across passes while
they fit (EvalCache, config.eval_cache_gb).

    evaluator = Evaluator(config)
    evaluator.metrics(state)                  # {'eval/loss', 'eval/top1', 'eval/top5', 'eval/examples'}
    evaluator.report(state, num_classes)      # also per-class accuracy and the confusion matrix
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np

from cnnjax import data
from cnnjax.data.config import EVAL_CROPS, eval_crops
from cnnjax.data.device import prefetch_to_device
from cnnjax.errors import UserError
from cnnjax.train.distributed import data_mesh, data_shardings
from cnnjax.train.steps import jit_steps

CROPS = EVAL_CROPS  # the view counts data.eval_crops (and eval --crops) accepts


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


class Evaluator:
    """The jitted evaluation step on a data-parallel mesh of every device (compiled once per batch
    shape) and the passes over the config's evaluation split.

    `cache` keeps decoded batches for the next pass (training evaluates the same split many times);
    `skipped` names each unreadable file once per run.
    """

    def __init__(self, config: ml_collections.ConfigDict, *, mesh: jax.sharding.Mesh | None = None,
                 cache: EvalCache | None = None, skipped: data.SkippedImages | None = None):
        self.config, self.cache, self.skipped = config, cache, skipped
        self.batch_size = padded_batch_size(int(config.eval_batch_size))  # padding is masked out
        self.crops = eval_crops(config.data)
        if self.crops not in CROPS:
            raise UserError(f"data.eval_crops must be one of {CROPS}, got {self.crops!r}")
        mesh = data_mesh() if mesh is None else mesh
        self.replicated, self.batch_sharding = data_shardings(mesh)
        c = config
        _, self.eval_fn = jit_steps(c.data.mean, c.data.std, c.model.dtype, 0.0, 0.0,
                                    self.replicated, self.batch_sharding)

    def batches(self) -> Iterator[dict[str, np.ndarray]]:
        """The host batches of one pass over data.eval_split."""
        kwargs = dict(global_batch_size=self.batch_size, split=None, crops=self.crops,
                      skipped=self.skipped)
        if self.cache is None:
            return data.eval_batches(self.config.data, **kwargs)
        return self.cache.batches(self.config.data, **kwargs)

    def metrics(self, state) -> dict[str, float]:
        """Mean loss, top-1 and top-5 accuracy and the example count of one pass (the training log's
        'eval/' metrics)."""
        totals, _, _ = evaluation_pass(self.eval_fn, state, self.batches(), self.batch_sharding)
        count = max(totals["count"], 1.0)
        return {"eval/loss": totals["loss"] / count, "eval/top1": totals["top1"] / count,
                "eval/top5": totals["top5"] / count, "eval/examples": totals["count"]}

    def report(self, state, num_classes: int) -> dict:
        """summarize_counts of one pass: accuracies, errors, loss, per-class accuracy, confusion."""
        sums, labels, predictions = evaluation_pass(self.eval_fn, state, self.batches(),
                                                    self.batch_sharding, keep_predictions=True)
        return summarize_counts(np.concatenate(labels or [np.zeros(0)]),
                                np.concatenate(predictions or [np.zeros(0)]), sums, num_classes)


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


# ---------------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------------

def padded_batch_size(batch_size: int, devices: int | None = None) -> int:
    """`batch_size` rounded up to a multiple of `devices` (default: every device of the run)."""
    devices = jax.device_count() if devices is None else devices
    if batch_size < 1:
        raise UserError(f"eval_batch_size (eval --batch-size) must be positive, got {batch_size}")
    return math.ceil(batch_size / devices) * devices


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) int64 counts: row = true class, column = predicted class."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    predictions = np.asarray(predictions, np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes
                        or predictions.min() < 0 or predictions.max() >= num_classes):
        raise UserError(f"labels and predictions must lie in [0, {num_classes}), got labels in "
                         f"[{labels.min()}, {labels.max()}] and predictions in "
                         f"[{predictions.min()}, {predictions.max()}]")
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_accuracy(confusion: np.ndarray) -> list[float | None]:
    """Top-1 accuracy of each true class (the confusion matrix's diagonal over its row sums);
    None for a class with no examples."""
    totals = confusion.sum(axis=1)
    return [float(confusion[i, i] / totals[i]) if totals[i] else None for i in range(len(totals))]


def summarize_counts(labels: np.ndarray, predictions: np.ndarray, sums: dict,
                     num_classes: int) -> dict:
    """The report of one evaluation from its per-example labels and predictions (real examples only)
    and the summed loss, top-1 and top-5 hits and count of the evaluation step."""
    count = float(sums["count"])
    confusion = confusion_matrix(labels, predictions, num_classes)
    top1, top5 = float(sums["top1"]) / max(count, 1.0), float(sums["top5"]) / max(count, 1.0)
    return {"examples": int(count), "top1": top1, "top5": top5, "top1_error": 1.0 - top1,
            "top5_error": 1.0 - top5, "loss": float(sums["loss"]) / max(count, 1.0),
            "per_class_accuracy": per_class_accuracy(confusion),
            "confusion_matrix": confusion.tolist()}
