"""Scoring a state on an evaluation split: the Evaluator (one pass of cnnjax.train.evaluation, the
loop that training uses too) and the counts it reports (accuracies, confusion matrix, per class).
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from cnnjax.errors import UserError

CROPS = (1, 5, 10)


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


@dataclasses.dataclass
class Evaluator:
    """The jitted evaluation step on a data-parallel mesh of every device, compiled once per shape."""

    config: ml_collections.ConfigDict
    batch_size: int
    num_classes: int

    def __post_init__(self):
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        from cnnjax.train.distributed import data_mesh
        from cnnjax.train.evaluation import padded_batch_size
        from cnnjax.train.steps import jit_steps

        if self.batch_size <= 0:
            raise UserError(f"--batch-size {self.batch_size} must be positive (it is padded up to a "
                            "multiple of the devices)")
        self.batch_size = padded_batch_size(self.batch_size)  # padding rows are masked out

        mesh = data_mesh()
        self.replicated = NamedSharding(mesh, P())
        self.batch_sharding = NamedSharding(mesh, P("data"))
        c = self.config
        _, self.eval_fn = jit_steps(c.data.mean, c.data.std, c.model.dtype, 0.0, 0.0,
                                    self.replicated, self.batch_sharding)

    def __call__(self, state, split: str | None = None, crops: int = 1) -> dict:
        """summarize_counts over one pass of the split (default: the config's eval_split)."""
        from cnnjax import data
        from cnnjax.train.evaluation import evaluation_pass

        if crops not in CROPS:
            raise UserError(f"--crops must be one of {CROPS}, got {crops}")
        batches = data.eval_batches(self.config.data, global_batch_size=self.batch_size,
                                    split=split, crops=crops)
        sums, labels, predictions = evaluation_pass(self.eval_fn, state, batches,
                                                    self.batch_sharding, keep_predictions=True)
        return summarize_counts(np.concatenate(labels or [np.zeros(0)]),
                                np.concatenate(predictions or [np.zeros(0)]), sums, self.num_classes)
