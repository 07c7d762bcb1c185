"""train_and_evaluate(config, workdir): the whole training run, resumable at any point.

Sections: set-up (mesh, data, model, optimizer) | restore | compile | the loop (log, evaluate,
checkpoint, preemption) | finish. Everything that touches files or signals lives here; the steps
themselves are pure (cnnjax.train.steps).
"""

from __future__ import annotations

import math
import pathlib
import signal
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnnjax import config as config_lib
from cnnjax import data, models
from cnnjax.errors import TrainingDivergedError
from cnnjax.train import distributed, environment
from cnnjax.train import workdir as workdir_lib
from cnnjax.train.checkpoint import Checkpoints
from cnnjax.train.evaluator import EvalCache, Evaluator
from cnnjax.train.metrics import MetricWriter, format_duration, progress_line
from cnnjax.train.optim import make_optimizer, plateau_scale
from cnnjax.train.state import TrainState, checkpoint_items, from_checkpoint_items
from cnnjax.train.steps import jit_steps

# ---------------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------------

def model_knobs(config: ml_collections.ConfigDict) -> dict:
    """The keyword arguments for cnnjax.models.build: every key of config.model except its name."""
    return {k: v for k, v in config.model.items() if k != "name"}


def build_model(config: ml_collections.ConfigDict, num_classes: int):
    return models.build(config.model.name, num_classes=num_classes, **model_knobs(config))


def train_state_init(config: ml_collections.ConfigDict, model, tx, image_shape,
                     ) -> Callable[[], TrainState]:
    """The function that builds the run's first TrainState (parameters from config.seed): jit it to
    allocate the state, or jax.eval_shape it to check a config without allocating anything."""
    key = jax.random.key(config.seed)

    def init():
        dummy = jnp.zeros((1, *image_shape), jnp.float32)
        variables = model.init({"params": key, "dropout": key}, dummy, train=False)
        params = variables["params"]
        return TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                                 batch_stats=variables.get("batch_stats") or None)

    return init


def create_train_state(config: ml_collections.ConfigDict, model, tx, image_shape, sharding,
                       ) -> TrainState:
    """Initialises parameters on the devices (replicated), checking shapes with eval_shape first."""
    init = train_state_init(config, model, tx, image_shape)
    jax.eval_shape(init)  # shape errors surface here, before any memory is allocated
    return jax.jit(init, out_shardings=sharding)()


def fitted_init_weights(config: ml_collections.ConfigDict, model, image_shape,
                        workdir: pathlib.Path) -> dict | None:
    """The variables of the weights file config.init_weights fitted to `model` (any file cnnjax
    writes: cnnjax.convert.fit_weights, which refuses names or shapes that do not fit in one line),
    read before the workdir is opened so that a file that does not fit writes nothing. None without
    init_weights, or when the workdir holds checkpoints: a resumed run starts from its checkpoint."""
    if not config.get("init_weights") or workdir_lib.has_checkpoints(workdir):
        return None
    from cnnjax import convert  # the converters (and torch's file formats) only for this key

    dummy = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    template = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), dummy)
    return convert.fit_weights(config.init_weights, template, config.model.name)


def init_from_weights(state: TrainState, variables: dict, sharding) -> TrainState:
    """`state` with the parameters and batch statistics `variables` (fitted_init_weights). The
    optimizer state stays as created: every optimizer here starts its moments at zero, whatever the
    parameters' values."""
    variables = jax.device_put(variables, sharding)
    return state.replace(params=variables["params"],
                         batch_stats=variables.get("batch_stats") or None)


def run_length(config: ml_collections.ConfigDict, num_examples: int) -> tuple[int, int]:
    """(steps_per_epoch, total_steps) for the config's batch size and num_steps/num_epochs."""
    steps_per_epoch = max(num_examples // config.batch_size, 1)
    if config.num_steps > 0:
        return steps_per_epoch, int(config.num_steps)
    return steps_per_epoch, max(math.ceil(config.num_epochs * steps_per_epoch), 1)


class _Preemption:
    """Turns SIGTERM into a flag the loop checks between steps (so the save happens in the loop)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def any_process(self, at_boundary: bool) -> bool:
        """True when any process was told to stop, so all of them save the same step.

        With several processes the flags are gathered only at a log or checkpoint boundary: the
        gather is a collective plus a host read, which would serialise host and devices every step.
        """
        if jax.process_count() == 1:
            return self.requested
        if not at_boundary:
            return False
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(np.asarray(self.requested))
        return bool(np.any(flags))


def _mean_metrics(pending: list[dict]) -> dict[str, float]:
    stacked = jax.device_get(pending)
    return {k: float(np.mean([m[k] for m in stacked])) for k in stacked[0]}


# ---------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------

class RunMetrics(dict):
    """The final metrics of a run; `preempted` is True when it stopped early on SIGTERM (after
    saving), so that the command line can exit with EXIT_PREEMPTED instead of 0."""

    preempted: bool = False


def check_run_config(config: ml_collections.ConfigDict, *, checked: bool = False) -> None:
    """Every value and relation of `config` (cnnjax.config.config_problems: the model's name and
    knobs included, from the registry), the training and evaluation splits, and the batch against
    the devices and processes, in milliseconds: no dataset decoding, no parameters, no compilation.
    `checked`: the caller ran cnnjax.config.checked_config on this config already (the command line
    does, before JAX starts), so only the batch's relations to the devices and processes are left.
    Raises ConfigValidationError with one line per problem."""
    world = {"device_count": jax.device_count(), "process_count": jax.process_count()}
    if checked:
        problems = config_lib.batch_problems(config, **world)
    else:
        _, problems = config_lib.resolve(config, splits=True, **world)
    if problems:
        raise config_lib.ConfigValidationError(problems)


def checked_model(config: ml_collections.ConfigDict, num_classes: int):
    """The config's model, built once: a knob value the module refuses (models.ModelError) is a
    config problem in one line; any other exception is a bug in the model and keeps its traceback."""
    try:
        return build_model(config, num_classes)
    except models.ModelError as e:
        raise config_lib.ConfigValidationError([f"config.model: {e}"]) from None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       checked: bool = False) -> dict:
    """Trains config.model on config.data, evaluating and checkpointing into `workdir`.

    A workdir that already holds checkpoints is resumed from the newest readable one. Returns the final
    metrics (train and eval), which are also in workdir/metrics.jsonl; a RunMetrics with
    preempted=True when SIGTERM stopped the run early. `checked`: see check_run_config.

    Nothing is written before the config is checked (once), the model built (once) and, for a resumed
    run, the config found compatible with the saved one; the workdir is locked for the run
    (cnnjax.train.workdir).
    """
    xla = environment.apply_for_run(config)  # before JAX's backends start (cnnjax.cli did it too)
    distributed.maybe_initialize()
    workdir = pathlib.Path(workdir)
    check_run_config(config, checked=checked)
    info = data.dataset_info(config.data, config.data.train_split)
    problems = config_lib.batch_problems(config, num_train_examples=info.num_examples)
    if problems:  # a TFDS split's size is known only now
        raise config_lib.ConfigValidationError(problems)
    model = checked_model(config, config.data.num_classes or info.num_classes)
    initial = fitted_init_weights(config, model, info.image_shape, workdir)
    lock = workdir_lib.open_workdir(config, workdir, is_main=jax.process_index() == 0)
    try:
        return _train_and_evaluate(config, workdir, xla, info, model, initial)
    except OSError as e:  # a full disk or a file system gone read-only: one line, not a traceback
        if e.errno not in workdir_lib.ENVIRONMENT_ERRNOS:
            raise
        raise workdir_lib.WorkdirError(workdir_lib.describe_os_error(
            e, f"the run in {workdir} stopped: cannot write")) from None
    finally:
        if lock is not None:
            lock.release()


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: pathlib.Path, xla: dict,
                        info: data.DatasetInfo, model, initial: dict | None) -> dict:
    is_main = jax.process_index() == 0
    writer = MetricWriter(workdir, enabled=is_main)

    n_dev = jax.device_count()
    mesh = distributed.data_mesh()
    replicated, batch_sharding = distributed.data_shardings(mesh)

    steps_per_epoch, total_steps = run_length(config, info.num_examples)
    eval_every = max(min(config.eval_every_steps, total_steps), 1)
    tx, schedule = make_optimizer(config.optimizer, config.schedule, steps_per_epoch, total_steps,
                                  eval_every_steps=eval_every)
    state = create_train_state(config, model, tx, info.image_shape, replicated)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
    writer.say(f"cnnjax: {config.model.name} ({n_params:,} parameters) on {config.data.source}: "
               f"{info.num_examples:,} examples, {steps_per_epoch} steps/epoch, {total_steps} steps, "
               f"{n_dev} {jax.devices()[0].platform} device(s), {jax.process_count()} process(es)")

    # -- restore ------------------------------------------------------------------------------------
    ckpts = Checkpoints(workdir / "checkpoints", keep=config.keep_checkpoints,
                        keep_best=config.keep_best, best_metric=config.best_metric,
                        best_mode=config.best_mode, use_async=config.async_checkpoints)
    restored = ckpts.restore(checkpoint_items(state), warn=lambda m: writer.say(f"warning: {m}"),
                             restart_if_damaged=bool(config.get("restart_if_damaged", False)))
    if restored is not None:
        step, items, _ = restored
        state = from_checkpoint_items(state, items)
        writer.say(f"resumed from the checkpoint at step {step}"
                   + (" (config.init_weights is for a fresh run: not read)"
                      if config.get("init_weights") else ""))
    elif config.get("init_weights"):  # a fresh run only: on resume the checkpoint wins
        if initial is None:  # checkpoints were there but none could be restored (restart_if_damaged)
            from cnnjax import convert

            initial = convert.fit_weights(config.init_weights, state.variables(), config.model.name)
        state = init_from_weights(state, initial, replicated)
        writer.say(f"initialised from the weights in {config.init_weights}")
    start_step = int(jax.device_get(state.step))
    if is_main:  # what this start ran on, beside config.json (one entry per start)
        start = environment.start_record(config, start_step, xla)
        for change in environment.record_start(workdir, start):
            writer.say(f"warning: this start's environment differs from the run's first: {change}")
        if not start["xla_cpu_conv"]["in_effect"] and start["platform"] == "cpu":
            writer.say(f"warning: config.xla_cpu_conv={config.get('xla_cpu_conv')!r} is not in "
                       f"effect: {start['xla_cpu_conv']['why']} (recorded in "
                       f"{environment.ENVIRONMENT_FILE})")

    train_fn, _ = jit_steps(config.data.mean, config.data.std, config.model.dtype,
                            config.loss.label_smoothing, config.loss.aux_weight,
                            replicated, batch_sharding)
    base_key = jax.random.key(config.seed + 1)
    skipped = data.SkippedImages()  # unreadable files: named once per run, counted at the end
    evaluator = Evaluator(config, mesh=mesh, skipped=skipped,
                          cache=EvalCache.from_gb(config.get("eval_cache_gb", 0.0)))
    batches = data.device_train_batches(config.data, global_batch_size=config.batch_size,
                                        seed=config.seed, start_step=start_step,
                                        sharding=batch_sharding, skipped=skipped)
    close_batches = getattr(batches, "close", lambda: None)

    # -- compile ------------------------------------------------------------------------------------
    final: dict[str, float] = {}
    if start_step < total_steps:
        batch = next(batches)
        t0 = time.perf_counter()
        train_fn = train_fn.lower(state, batch, base_key).compile()
        compile_s = time.perf_counter() - t0
        writer.say(f"compiled the training step in {compile_s:.1f}s")
        writer.write(start_step, {"compile_seconds": compile_s})
    else:
        batch = None

    # -- the loop -----------------------------------------------------------------------------------
    pending: list[dict] = []
    last_eval: dict[str, float] = {}
    interval_start, interval_steps, eval_seconds = time.perf_counter(), 0, 0.0
    run_start = time.perf_counter()
    with _Preemption() as preemption:
        for step in range(start_step, total_steps):
            ckpts.check()  # a failed asynchronous save stops the run before it computes further
            if batch is None:
                batch = next(batches)
            state, metrics = train_fn(state, batch, base_key)
            batch = None
            pending.append(metrics)
            interval_steps += 1
            done = step + 1
            is_last = done == total_steps
            preempted = preemption.any_process(
                done % config.log_every_steps == 0 or done % config.checkpoint_every_steps == 0)
            log_now = done % config.log_every_steps == 0 or is_last or preempted
            eval_now = done % eval_every == 0 or is_last
            save_now = done % config.checkpoint_every_steps == 0 or is_last or preempted

            if log_now or eval_now or save_now:
                if pending:
                    summary = _mean_metrics(pending)
                    pending = []
                    if summary.pop("finite") < 1.0:
                        close_batches()  # stop the prefetch thread before the interpreter exits
                        ckpts.close()
                        raise TrainingDivergedError(
                            f"loss is {summary['loss']} (or the parameters are no longer finite) at "
                            f"step {done}; stopped without saving "
                            f"(last good checkpoint: step {max(ckpts.all_steps(), default='none')})."
                            " Lower the learning rate or check the data.")
                    elapsed = time.perf_counter() - interval_start
                    rate = interval_steps / max(elapsed, 1e-9)
                    lr = float(schedule(done - 1)) * float(plateau_scale(state.opt_state))
                    train_metrics = {f"train/{k}": v for k, v in summary.items()}
                    train_metrics.update({"train/lr": lr, "train/steps_per_sec": rate,
                                          "train/images_per_sec": rate * config.batch_size,
                                          "train/epoch": done / steps_per_epoch})
                    writer.write(done, train_metrics)
                    final.update(train_metrics)
                    interval_start, interval_steps = time.perf_counter(), 0
                if eval_now:
                    t0 = time.perf_counter()
                    last_eval = evaluator.metrics(state)
                    eval_seconds += time.perf_counter() - t0
                    writer.write(done, last_eval)
                    final.update(last_eval)
                    if config.schedule.name == "plateau":
                        state = state.replace(plateau_value=jnp.asarray(
                            1.0 - last_eval["eval/top1"], jnp.float32))
                    interval_start = time.perf_counter()
                if log_now or eval_now:
                    so_far = time.perf_counter() - run_start
                    eta = so_far / (done - start_step) * (total_steps - done)
                    writer.say(progress_line(done, total_steps, {**final, **last_eval}, eta))
                if save_now:
                    ckpts.save(done, checkpoint_items(state), {"data_step": done,
                               "examples_seen": done * config.batch_size},
                               metrics=last_eval if eval_now else None)
            if config.get("log_images_every_steps", 0) and is_main:  # off by default
                from cnnjax.visualize.training import log_images  # matplotlib only when asked
                log_images(config, model, state, done, is_last, workdir, writer)
            if preempted and not is_last:
                close_batches()  # stop the prefetch thread before the interpreter exits
                ckpts.close()
                writer.say(f"SIGTERM: saved the checkpoint at step {done}; "
                           "run the same command to resume")
                writer.close()
                final = RunMetrics(final)
                final.preempted = True
                return final

    close_batches()  # stop the prefetch thread before the interpreter exits
    ckpts.close()
    if skipped.summary():
        writer.say(f"warning: {skipped.summary()}")
    total = time.perf_counter() - run_start
    if final:
        writer.say(f"done: {total_steps} steps in {format_duration(total)} "
                   f"(evaluation {format_duration(eval_seconds)}); "
                   f"test top-1 {final.get('eval/top1', float('nan')):.2%}, "
                   f"top-5 {final.get('eval/top5', float('nan')):.2%}")
    else:
        writer.say(f"nothing to do: the run in {workdir} already finished {total_steps} steps")
    writer.close()
    return final
