"""Which checkpoint, and its variables as a state: open_run, resolve_step, read_step,
restore_checkpoint, restore_step.

Parameters from any source enter through `state_from_variables`; `restore_checkpoint` reads them from a
checkpoint and checks them against the model's shapes (`abstract_variables`, via jax.eval_shape).
`restore_step` reads the step that --step names among those that exist when it is read, so that eval
and predict work beside a training whose clean-up (keep_checkpoints) removes steps as it goes.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Sequence

import ml_collections
import numpy as np

from cnnjax import config as config_io
from cnnjax.errors import UserError
from cnnjax.train.metrics import read_metrics
from cnnjax.train.workdir import has_checkpoints

# How many steps in a row a reader lets a running training remove under it before giving up (each
# try reads the newest step afresh; a training would have to save faster than a step can be read).
VANISHED_TRIES = 20


def best_step(records: Sequence[dict], steps: Sequence[int], metric: str, mode: str) -> int:
    """The checkpointed step whose logged `metric` is best ('max' or 'min'); earliest wins ties.

    A step evaluated twice (a resumed run) counts with its last value.
    """
    logged = {int(r["step"]): float(r[metric]) for r in records if metric in r and "step" in r}
    scored = [(logged[s], s) for s in steps if s in logged and math.isfinite(logged[s])]
    if not scored:
        raise UserError(f"no checkpoint step has a logged {metric!r} in metrics.jsonl (checkpoint "
                        f"steps: {list(steps)}); use --step latest or --step N")
    if mode == "min":
        return min(scored)[1]
    return max(scored, key=lambda vs: (vs[0], -vs[1]))[1]


def resolve_step(spec: str, steps: Sequence[int], records: Sequence[dict], metric: str,
                 mode: str) -> int:
    """--step as a checkpoint step: a number, 'latest', or 'best' (by the run's best_metric)."""
    if not steps:
        raise UserError("the run has no checkpoints")
    if spec == "latest":
        return max(steps)
    if spec == "best":
        return best_step(records, steps, metric, mode)
    try:
        step = int(spec)
    except ValueError:
        raise UserError(f"--step must be a number, 'best' or 'latest', got {spec!r}") from None
    if step not in steps:
        raise UserError(f"no checkpoint at step {step}; available steps: "
                        f"{', '.join(map(str, steps))}")
    return step


@dataclasses.dataclass
class Run:
    """A workdir's saved config (with this evaluation's overrides) and its checkpoints."""

    workdir: pathlib.Path
    config: ml_collections.ConfigDict
    checkpoints: object  # cnnjax.train.checkpoint.Checkpoints
    steps: list[int]


def open_run(workdir: str | pathlib.Path, overrides: Sequence[str] = ()) -> Run:
    """The run in `workdir`, or one line saying why it is not one (no config, no checkpoints)."""
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"workdir {workdir} does not exist")
    config = config_io.load_saved_config(workdir)
    config_io.apply_overrides(config, list(overrides))
    folder = workdir / "checkpoints"
    if not has_checkpoints(workdir):
        raise FileNotFoundError(f"no checkpoints in {folder}: nothing to evaluate (has the run saved "
                                "one yet?)")
    from cnnjax.train.checkpoint import Checkpoints

    checkpoints = Checkpoints(folder, read_only=True)  # a running training may share the workdir
    steps = checkpoints.all_steps()
    if not steps:
        raise FileNotFoundError(f"no complete checkpoints in {folder}: nothing to evaluate")
    return Run(workdir, config, checkpoints, steps)


def abstract_variables(config: ml_collections.ConfigDict, image_shape: Sequence[int],
                       num_classes: int):
    """(model, shapes and dtypes of its variables {'params', ['batch_stats']}) via jax.eval_shape,
    without allocating them."""
    import jax
    import jax.numpy as jnp

    from cnnjax.train.loop import build_model

    model = build_model(config, num_classes)
    key = jax.random.key(0)
    abstract = jax.eval_shape(lambda: model.init({"params": key, "dropout": key},
                                                 jnp.zeros((1, *image_shape), jnp.float32),
                                                 train=False))
    return model, dict(abstract)


def state_from_variables(model, variables: dict, sharding):
    """A TrainState holding `variables` (replicated by `sharding`) for the evaluation step; its
    optimizer is the identity, as nothing is trained. Parameters from any source enter here."""
    import jax
    import optax

    from cnnjax.train.state import TrainState

    variables = jax.device_put(variables, sharding)
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=optax.identity(),
                             batch_stats=variables.get("batch_stats") or None)


def restore_checkpoint(run: Run, step: int, model, abstract: dict, sharding):
    """The model's variables saved at `step` (the optimizer state is not needed and not read back
    onto the devices) as a TrainState.

    Raises CheckpointMismatchError (one line, the arrays that differ) when the checkpoint does not
    fit the config's model, CheckpointDamagedError when it fails its checksums or cannot be read, and
    CheckpointVanishedError when a running training's clean-up removed it meanwhile.
    """
    return _state_from_arrays(run, step, run.checkpoints.read_arrays(step), model, abstract,
                              sharding)


def _state_from_arrays(run: Run, step: int, arrays: dict, model, abstract: dict, sharding):
    """A checkpoint's arrays, checked against the model's shapes, as a TrainState."""
    from cnnjax.train.checkpoint import CheckpointMismatchError, shape_mismatches

    variables = {"params": arrays.get("params", {})}
    if arrays.get("batch_stats") or "batch_stats" in abstract:
        variables["batch_stats"] = arrays.get("batch_stats") or {}
    problems = shape_mismatches(variables, abstract)
    if problems:
        raise CheckpointMismatchError(
            f"checkpoint at step {step} in {run.workdir} does not match the config: "
            + "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else ""))
    variables = {k: _cast_like(v, abstract[k]) for k, v in variables.items()}
    return state_from_variables(model, variables, sharding)


def restore_step(run: Run, spec: str, model, abstract: dict, sharding) -> tuple[int, object]:
    """(step, state) for --step `spec` ('latest', 'best' or a number): read_step's checkpoint,
    checked against the model's shapes (see restore_checkpoint)."""
    step, arrays = read_step(run, spec)
    return step, _state_from_arrays(run, step, arrays, model, abstract, sharding)


def read_step(run: Run, spec: str) -> tuple[int, dict]:
    """(step, the checkpoint's arrays as saved) for --step `spec` ('latest', 'best' or a number),
    resolved by resolve_step against the steps that exist when it is read: what --step means in
    every tool (eval, predict, visualize, convert export). A step that a running training's
    clean-up removes while it is read is not damage: 'latest' and 'best' resolve again among the
    steps that exist then; a number is reported in one line naming them."""
    from cnnjax.train.checkpoint import CheckpointVanishedError

    for _ in range(VANISHED_TRIES):
        steps = run.checkpoints.all_steps()
        records = read_metrics(run.workdir) if spec == "best" else []
        step = resolve_step(spec, steps, records, run.config.best_metric, run.config.best_mode)
        try:
            return step, run.checkpoints.read_arrays(step)
        except CheckpointVanishedError as e:
            if spec not in ("latest", "best"):
                raise UserError(
                    f"the checkpoint at step {step} in {run.workdir} was removed by the running "
                    f"training's clean-up (keep_checkpoints={run.config.keep_checkpoints}) while it "
                    f"was read; steps now: {', '.join(map(str, e.steps)) or 'none'}") from None
    raise UserError(f"the running training in {run.workdir} removed {VANISHED_TRIES} checkpoints in a "
                    "row before they could be read; evaluate a --step that its keep_checkpoints "
                    "keeps, or after it has finished")


def _cast_like(tree: dict, like: dict) -> dict:
    return {k: _cast_like(v, like[k]) if isinstance(v, dict) else np.asarray(v, like[k].dtype)
            for k, v in tree.items()}
