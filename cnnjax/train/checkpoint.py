"""Orbax checkpoints that survive kill -9, preemption and corrupt files.

Each checkpoint holds the training state's arrays (parameters, batch-norm statistics, optimizer state,
step) and a small JSON record of the data position. Orbax writes every checkpoint into a temporary folder
and renames it when complete, so a run killed mid-save leaves no half checkpoint behind; a checkpoint that
is damaged afterwards is detected on restore, reported, and the previous one is used instead.
"""

from __future__ import annotations

import logging
import pathlib
import time
from collections.abc import Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from cnnjax.errors import UserError

log = logging.getLogger(__name__)


class CheckpointMismatchError(UserError):
    """A checkpoint whose arrays do not fit the model and optimizer of the config."""


def _path_name(path) -> str:
    """'params/conv1/kernel' for a pytree key path, whatever the container types (a checkpoint's
    metadata stores optax's named tuples as dicts, so attribute and dict keys must compare equal)."""
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
    return "/".join(parts)


def shape_mismatches(saved, target) -> list[str]:
    """Names of the arrays whose saved shape differs from the target's, or that exist on one side only."""
    saved_flat = {_path_name(k): v for k, v in jax.tree_util.tree_leaves_with_path(saved)}
    target_flat = {_path_name(k): v for k, v in jax.tree_util.tree_leaves_with_path(target)}
    problems = []
    for name in sorted(saved_flat.keys() | target_flat.keys()):
        if name not in target_flat:
            problems.append(f"{name} (in checkpoint only)")
        elif name not in saved_flat:
            problems.append(f"{name} (missing from checkpoint)")
        else:
            got, want = (tuple(x.shape if hasattr(x, "shape") else np.shape(x))
                         for x in (saved_flat[name], target_flat[name]))
            if got != want:
                problems.append(f"{name} {got} vs {want}")
    return problems


class Checkpoints:
    """Periodic asynchronous saves into `directory`, keeping the last `keep` and the `keep_best` best.

    `best_metric` names an evaluation metric (e.g. 'eval/top1'); `best_mode` is 'max' or 'min'.
    """

    def __init__(self, directory: str | pathlib.Path, *, keep: int = 3, keep_best: int = 1,
                 best_metric: str = "eval/top1", best_mode: str = "max",
                 use_async: bool = True):
        self.directory = pathlib.Path(directory).absolute()
        policies = [checkpoint_managers.LatestN(n=keep)]
        if keep_best > 0 and best_metric:
            policies.append(checkpoint_managers.BestN(
                get_metric_fn=lambda metrics: metrics[best_metric], reverse=best_mode == "min",
                n=keep_best, keep_checkpoints_without_metrics=False))
        options = ocp.CheckpointManagerOptions(
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=use_async, cleanup_tmp_directories=True)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()})

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, items: dict, meta: dict, metrics: dict | None = None) -> None:
        """Starts an asynchronous save; a later save or `wait` finishes it."""
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(items), meta=ocp.args.JsonSave(meta)),
            metrics=metrics, force=True)

    def _set_aside(self, step: int, why: str, warn: Callable[[str], None]) -> None:
        """Moves a damaged checkpoint out of the way (kept for inspection, never deleted), so the run
        can fall back to the previous one and later save this step again."""
        aside = self.directory.parent / f"{self.directory.name}_damaged" / f"{step}-{time.time():.0f}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        (self.directory / str(step)).rename(aside)
        self.manager.reload()
        warn(f"checkpoint at step {step} {why}; moved it to {aside} and fell back to the previous one")

    def read_arrays(self, step: int) -> dict:
        """The saved state of `step` as a tree of numpy arrays, with no model or config needed."""
        # Restore onto this process's first device, whatever topology the run was saved from.
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                              self.manager.item_metadata(step)["state"])
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target)))
        return jax.tree.map(np.asarray, restored["state"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def restore(self, target: dict, step: int | None = None,
                warn: Callable[[str], None] = log.warning) -> tuple[int, dict, dict] | None:
        """(step, items, meta) of the newest readable checkpoint (or exactly `step`), None if none.

        `target` is a pytree of arrays or jax.ShapeDtypeStruct with the shardings to restore onto. A
        checkpoint that cannot be read is reported through `warn` and skipped in favour of the one
        before it; one whose shapes do not match `target` raises CheckpointMismatchError.
        """
        steps = self.all_steps()
        if step is not None:
            if step not in steps:
                raise UserError(f"no checkpoint at step {step} in {self.directory}; "
                                f"available steps: {steps or 'none'}")
            steps = [step]
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        for candidate in reversed(steps):
            try:
                saved = self.manager.item_metadata(candidate)["state"]
            except Exception as e:  # a damaged checkpoint surfaces as many error types
                self._set_aside(candidate, f"is unreadable ({type(e).__name__}: {e})", warn)
                continue
            if saved is None:
                self._set_aside(candidate, "has no state", warn)
                continue
            problems = shape_mismatches(saved, abstract)
            if problems:
                raise CheckpointMismatchError(
                    f"checkpoint at step {candidate} in {self.directory} does not match the config: "
                    + "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else ""))
            try:
                restored = self.manager.restore(candidate, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
            except Exception as e:
                self._set_aside(candidate, f"is corrupt ({type(e).__name__}: {e})", warn)
                continue
            return candidate, restored["state"], dict(restored["meta"] or {})
        return None
