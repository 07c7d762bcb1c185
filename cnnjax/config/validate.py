"""Checks a config before anything is written: every value, the model's name and knobs, and the
relations between them. Each rule has one owner: this module (the batch size's rules are
`batch_problems`, shared by the checks before a run and the ones the training loop can only make
once the devices and the dataset are known).

Pure functions of the config and a few numbers about the world (device and process count, the size of
the training split), so the checks run in milliseconds, before JAX compiles or the dataset is decoded.
`config_problems` returns one line per problem; `check_config` raises them all at once. The model's
knobs are checked against the registry's tables (cnnjax.models.knobs, knob_choices), without building
the model.

`resume_changes` compares the config of a resumed run with the one its workdir was started with:
keys that the checkpoint's arrays (or the run's identity) depend on may not change; any other change
is allowed and recorded (cnnjax.train.workdir).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections

from cnnjax.config.defaults import XLA_CPU_CONVS
from cnnjax.config.errors import ConfigValidationError
from cnnjax.data import on_device, transform_names
from cnnjax.data.config import AUTOTUNE, EVAL_CROPS, ON_CORRUPT, PIPELINES, check_transform
from cnnjax.data.sources import parse_source

# Keys a resumed run may not change. model.* and optimizer.* shape the arrays of the checkpoint (the
# parameters and the optimizer state); schedule.name adds or removes reduce-on-plateau's state; the data
# keys give the input shape and the output layer's size. seed is refused too: a resume with another
# seed would continue a different run (data order, dropout) under the old run's name.
FROZEN_PREFIXES = ("model.", "optimizer.")
FROZEN_KEYS = ("seed", "schedule.name", "data.channels", "data.image_size", "data.num_classes",
               "data.synthetic_shape")
# Keys that say how to run, not what is trained: never compared, never recorded.
RUN_CONTROL_KEYS = ("restart_if_damaged",)

# The names cnnjax.train.optim implements (it imports them from here). The compute dtypes are the
# models' (cnnjax.models.layers.DTYPES), checked with the model's other knobs.
OPTIMIZERS = ("sgd", "nesterov", "adamw", "rmsprop")
DECAY_MASKS = ("all", "no_bias_norm")
SCHEDULES = ("constant", "piecewise", "cosine", "exponential", "plateau")
UNITS = ("epochs", "steps")
MAX_SEED = 2**31 - 1


# ---------------------------------------------------------------------------------------------------
# Value checks
# ---------------------------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


class _Checker:
    """Collects one line per problem; each check names the key, the value and what is accepted."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.problems: list[str] = []

    def get(self, key: str) -> Any:
        node = self.config
        for part in key.split("."):
            if not isinstance(node, Mapping | ml_collections.ConfigDict) or part not in node:
                return _MISSING
            node = node[part]
        return node

    def fail(self, key: str, value: Any, accepted: str) -> None:
        self.problems.append(f"config.{key}={value!r} is not accepted: {accepted}")

    def integer(self, key: str, low: int | None = None, high: int | None = None,
                allowed: Iterable[int] = ()) -> int | None:
        """An int (not a bool) in [low, high] or one of `allowed`; None if absent or rejected."""
        value = self.get(key)
        if value is _MISSING:
            return None
        allowed = tuple(allowed)
        ok = _is_int(value) and (value in allowed or (
            (low is None or value >= low) and (high is None or value <= high)))
        if not ok:
            bounds = _bounds(low, high)
            extra = f" (or {', '.join(map(str, allowed))})" if allowed else ""
            self.fail(key, value, f"an integer {bounds}{extra}")
            return None
        return value

    def number(self, key: str, low: float | None = None, high: float | None = None, *,
               low_open: bool = False, high_open: bool = False) -> float | None:
        """A finite int or float in the interval; None if absent or rejected."""
        value = self.get(key)
        if value is _MISSING:
            return None
        ok = _is_number(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            lo = "" if low is None else ("(" if low_open else "[") + f"{low}, "
            hi = "" if high is None else f"{high}" + (")" if high_open else "]")
            where = f"in {lo or '(-inf, '}{hi or 'inf)'}"
            self.fail(key, value, f"a finite number {where}")
            return None
        return float(value)

    def choice(self, key: str, choices: tuple) -> Any:
        value = self.get(key)
        if value is _MISSING:
            return None
        if value not in choices:
            self.fail(key, value, f"one of {', '.join(map(repr, choices))}")
            return None
        return value

    def boolean(self, key: str) -> None:
        value = self.get(key)
        if value is not _MISSING and not isinstance(value, bool):
            self.fail(key, value, "true or false")

    def sequence(self, key: str, length: Iterable[int], low: float, *, low_open: bool) -> tuple | None:
        value = self.get(key)
        if value is _MISSING:
            return None
        lengths = tuple(length)
        ok = isinstance(value, list | tuple) and len(value) in lengths and all(
            _is_number(v) and (v > low if low_open else v >= low) for v in value)
        if not ok:
            sign = ">" if low_open else ">="
            self.fail(key, value, f"a sequence of {' or '.join(map(str, lengths))} finite numbers "
                                  f"{sign} {low}")
            return None
        return tuple(value)


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def _bounds(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"in [{low}, {high}]"
    if low is not None:
        return f">= {low}"
    if high is not None:
        return f"<= {high}"
    return ""


def _check_run(c: _Checker) -> None:
    c.integer("seed", 0, MAX_SEED)
    c.integer("eval_batch_size", 1)
    c.number("eval_cache_gb", 0.0)
    num_steps = c.integer("num_steps", 1, allowed=(-1,))
    if num_steps == -1 or c.get("num_steps") is _MISSING:
        c.number("num_epochs", 0.0, low_open=True)
    for key in ("log_every_steps", "eval_every_steps", "checkpoint_every_steps"):
        c.integer(key, 1)
    c.integer("keep_checkpoints", 1)
    c.integer("keep_best", 0)
    c.integer("log_images_every_steps", 0)  # 0: off
    c.choice("best_mode", ("max", "min"))
    best = c.get("best_metric")
    if best is not _MISSING and not (isinstance(best, str) and best.startswith("eval/")):
        c.fail("best_metric", best, "the name of an evaluation metric, e.g. 'eval/top1' or 'eval/loss'")
    c.boolean("async_checkpoints")
    c.boolean("restart_if_damaged")
    init = c.get("init_weights")  # its format and fit to the model: when it is read (loop.py)
    if init not in (_MISSING, "") and not (isinstance(init, str) and os.path.isfile(init)):
        c.fail("init_weights", init, "'' or an existing weights file (.npz, .pth, .safetensors)")
    c.choice("xla_cpu_conv", tuple(XLA_CPU_CONVS))
    name = c.get("model.name")
    if name is not _MISSING and not (isinstance(name, str) and name):
        c.fail("model.name", name, "a model name (see ./launch.sh summary)")


def _check_optimizer(c: _Checker) -> None:
    c.choice("optimizer.name", OPTIMIZERS)
    c.choice("optimizer.decay_mask", DECAY_MASKS)
    c.number("optimizer.momentum", 0.0, 1.0, high_open=True)
    c.number("optimizer.weight_decay", 0.0)
    c.number("optimizer.clip_grad_norm", 0.0)
    c.number("optimizer.b1", 0.0, 1.0, high_open=True)
    c.number("optimizer.b2", 0.0, 1.0, high_open=True)
    c.number("optimizer.eps", 0.0, low_open=True)
    c.number("optimizer.rms_decay", 0.0, 1.0, high_open=True)
    c.choice("schedule.name", SCHEDULES)
    c.choice("schedule.unit", UNITS)
    c.number("schedule.base_lr", 0.0, low_open=True)
    c.number("schedule.warmup", 0.0)
    c.number("schedule.decay_factor", 0.0, low_open=True)
    c.number("schedule.decay_every", 0.0, low_open=True)
    c.integer("schedule.patience", 0)
    c.number("schedule.rtol", 0.0)
    bounds = c.get("schedule.boundaries")
    if bounds is not _MISSING:
        ok = isinstance(bounds, list | tuple) and all(_is_number(b) and b > 0 for b in bounds)
        if not ok or list(bounds) != sorted(bounds):
            c.fail("schedule.boundaries", bounds, "increasing positive numbers, e.g. (30, 60)")
    c.number("loss.label_smoothing", 0.0, 1.0, high_open=True)
    c.number("loss.aux_weight", 0.0)


def _check_data(c: _Checker) -> None:
    # Registered names and the aliases of earlier versions (cnnjax.data.transform_names).
    for key, train in (("data.train_transform", True), ("data.eval_transform", False)):
        allowed = transform_names.names(train=train)
        aliases = tuple(a for a in transform_names.ALIASES if transform_names.canonical(a, train=train))
        c.choice(key, allowed + aliases)
    c.choice("data.on_corrupt", ON_CORRUPT)
    c.choice("data.pipeline", PIPELINES)
    c.choice("data.eval_crops", EVAL_CROPS)
    channels = c.choice("data.channels", (1, 3))
    image_size = c.integer("data.image_size", 1)
    resize_size = c.integer("data.resize_size", 1)
    c.number("data.pca_lighting_std", 0.0)
    c.number("data.min_area", 0.0, 1.0, low_open=True)
    aspect = c.sequence("data.aspect_range", (2,), 0.0, low_open=True)
    if aspect and aspect[0] > aspect[1]:
        c.fail("data.aspect_range", c.get("data.aspect_range"), "(low, high) with low <= high")
    c.integer("data.num_classes", 0)
    c.integer("data.shuffle_buffer", 1)
    c.integer("data.synthetic_examples", 1)
    c.integer("data.max_image_pixels", 1)
    shape = c.get("data.synthetic_shape")
    if shape is not _MISSING and not (isinstance(shape, list | tuple) and len(shape) == 3
                                      and all(_is_int(s) and s > 0 for s in shape)):
        c.fail("data.synthetic_shape", shape, "(height, width, channels), positive integers")
    c.integer("data.num_parallel_calls", 1, allowed=(AUTOTUNE,))
    c.boolean("data.cache")
    mean = c.sequence("data.mean", (1, 3), 0.0, low_open=False)
    std = c.sequence("data.std", (1, 3), 0.0, low_open=True)
    if mean and std and channels and (len(mean) not in (1, channels) or len(std) != len(mean)):
        c.fail("data.mean", c.get("data.mean"), f"1 or data.channels={channels} values, as many "
                                                f"as data.std={tuple(std)}")
    for key in ("data.source", "data.train_split", "data.eval_split"):
        value = c.get(key)
        if value is not _MISSING and not (isinstance(value, str) and value):
            c.fail(key, value, "a non-empty string")
    if c.get("data.source") not in (_MISSING, "") and isinstance(c.get("data.source"), str):
        try:
            parse_source(c.get("data.source"), "train")
        except ValueError as e:
            c.problems.append(f"config.data.source: {e}")
    # Image folders hold images of any size: a batch needs a transform that gives image_size.
    sources = {"data.train_transform": c.get("data.source"),
               "data.eval_transform": c.get("data.eval_source") or c.get("data.source")}
    for key, source in sources.items():
        if isinstance(source, str) and source.startswith("folder:") and c.get(key) == "none":
            c.fail(key, "none", "a transform that gives data.image_size for an image folder (its "
                   "images differ in size): " + ", ".join(
                       n for n in transform_names.names(train=key == "data.train_transform")
                       if n != "none"))
    folders = [s for s in sources.values() if isinstance(s, str) and s.startswith("folder:")]
    if folders and c.get("data.pipeline") == "device":
        c.fail("data.pipeline", "device", f"'auto' or 'tfdata' for the image folder {folders[0]!r} "
               "(the device serves only sources held as arrays: idx, small tfds, synthetic)")
    elif c.get("data.pipeline") == "device":
        for key, train in (("data.train_transform", True), ("data.eval_transform", False)):
            name = c.get(key)
            served = on_device.TRAIN_TRANSFORMS if train else on_device.EVAL_TRANSFORMS
            if isinstance(name, str) and transform_names.canonical(name, train=train) not in (
                    None, *served):
                c.fail("data.pipeline", "device", f"'auto' or 'tfdata' for {key}={name!r} (the "
                       f"device runs only {', '.join(served)})")
    if c.get("data.source") == "synthetic" and c.get("data.num_classes") == 0:
        c.fail("data.num_classes", 0, "> 0 for the synthetic source (it has no labels of its own)")
    if image_size and resize_size:
        for train, key in ((True, "data.train_transform"), (False, "data.eval_transform")):
            name = c.get(key)
            if isinstance(name, str) and transform_names.canonical(name, train=train):
                try:
                    check_transform(c.config.data, name, train=train)
                except ValueError as e:
                    c.problems.append(f"config.{key}: {e}")


def model_problems(config: ml_collections.ConfigDict) -> list[str]:
    """One line per problem of the model block: an unknown name, a knob the model does not take, a
    knob value outside the registry's choices (cnnjax.models.knob_choices). The model is not built:
    the values the module checks itself (rates, sizes) are its own (cnnjax.models.build)."""
    model = config.get("model")
    name = model.get("name") if isinstance(model, Mapping | ml_collections.ConfigDict) else None
    if not (isinstance(name, str) and name):
        return []
    from cnnjax import models  # imports flax; the registry's tables are all this needs

    try:
        defaults, choices = models.knobs(name), models.knob_choices(name)
    except models.ModelError as e:
        return [f"config.model.name: {e}"]
    problems = []
    unknown = sorted(set(model.keys()) - set(defaults) - {"name"})
    if unknown:
        problems.append(f"config.model: model {name!r} does not take knob(s) {', '.join(unknown)}; "
                        f"valid knobs: {', '.join(sorted(defaults))}")
    for knob, allowed in choices.items():  # worded as the model's own check (models.layers)
        value = model.get(knob, defaults[knob])
        if not any(value == a and type(value) is type(a) for a in allowed):
            problems.append(f"config.model: {name}: {knob} must be one of "
                            f"{', '.join(map(repr, allowed))}; got {value!r}")
    return problems


def model_build_problems(config: ml_collections.ConfigDict) -> list[str]:
    """The problem the model module itself finds in its knob values (a rate out of range, a size
    below 1), found by building it: a flax module, nothing is allocated. Run where a wrong value
    must be found before anything starts (a sweep's planning, apply_overrides); the training path
    builds its model once instead (cnnjax.train.loop.checked_model)."""
    from cnnjax import models  # imports flax

    knobs = {k: v for k, v in config.model.items() if k != "name"}
    classes = int(config.data.get("num_classes", 0)) if "data" in config else 0
    try:
        models.build(config.model.name, **({"num_classes": classes} if classes > 0 else {}), **knobs)
    except models.ModelError as e:
        return [f"config.model: {e}"]
    return []


def batch_problems(config: ml_collections.ConfigDict, *, device_count: int | None = None,
                   process_count: int = 1, num_train_examples: int | None = None) -> list[str]:
    """The rules of config.batch_size, each checked where its number is given: a positive integer;
    a multiple of the devices and of the processes (each takes an equal share; the evaluation batch
    is padded up instead, cnnjax.train.evaluator); a multiple of model.bn_stats='group:N'; at most
    the examples of the training split."""
    c = _Checker(config)
    batch = c.integer("batch_size", 1)
    if batch is None:
        return c.problems
    for count, what in ((device_count, "devices"), (process_count, "processes")):
        if count and count > 1 and batch % count:
            c.fail("batch_size", batch, f"a multiple of the {count} {what} (each takes an equal share)")
    # Batch norm's groups of N examples (model.bn_stats='group:N') must tile the global batch;
    # the model would say so only when it is first traced, after the workdir has been written.
    kind, _, size = str(c.get("model.bn_stats")).partition(":")
    if (kind == "group" and size.isdigit() and int(size) > 0 and batch % int(size)
            and c.get("model.norm") in ("batch", _MISSING)):
        c.fail("batch_size", batch, f"a multiple of the groups of model.bn_stats='group:{size}'")
    if num_train_examples is not None and batch > num_train_examples:
        c.fail("batch_size", batch, f"at most the {num_train_examples} examples of the training split")
    return c.problems


def config_problems(config: ml_collections.ConfigDict, *, device_count: int | None = None,
                    process_count: int = 1, num_train_examples: int | None = None) -> list[str]:
    """One line per value or relation of `config` that a training run cannot use, the model's name
    and knobs included (`model_problems`).

    Relations need numbers from outside the config; each is checked only when given: the batch sizes
    against `device_count` and `process_count` (each device gets an equal share), the batch size
    against `num_train_examples` (a step must not need more examples than the split holds).
    """
    c = _Checker(config)
    _check_run(c)
    _check_optimizer(c)
    if isinstance(c.get("data"), ml_collections.ConfigDict | Mapping):
        _check_data(c)
    return c.problems + batch_problems(config, device_count=device_count, process_count=process_count,
                                       num_train_examples=num_train_examples) + model_problems(config)


def check_config(config: ml_collections.ConfigDict, **world: Any) -> None:
    """Raises ConfigValidationError listing every problem `config_problems` finds."""
    problems = config_problems(config, **world)
    if problems:
        raise ConfigValidationError(problems)


# ---------------------------------------------------------------------------------------------------
# Resumed runs
# ---------------------------------------------------------------------------------------------------

def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    """{'optimizer.momentum': 0.9, ...} for a nested dict; sequences compare as lists."""
    flat = {}
    for key, value in tree.items():  # a dict that is flat already comes back as it is
        if isinstance(value, Mapping | ml_collections.ConfigDict):
            flat.update(flatten(dict(value.items()), f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple | list) else value
    return flat


def is_frozen(key: str) -> bool:
    """True for a key whose change a resumed run refuses (see FROZEN_PREFIXES and FROZEN_KEYS)."""
    return key in FROZEN_KEYS or key.startswith(FROZEN_PREFIXES)


def resume_changes(saved: Mapping, new: Mapping) -> tuple[list[str], dict[str, list]]:
    """(refused, allowed) changes of a resumed run's config `new` against the `saved` one.

    refused: one description per frozen key whose value changed. allowed: {key: [saved, new]} for
    every other changed key. A key present on one side only (a config written by an older or newer
    cnnjax) is neither: it is not compared.
    """
    old, cur = flatten(saved), flatten(new)
    refused, allowed = [], {}
    for key in sorted(old.keys() & cur.keys()):
        if key in RUN_CONTROL_KEYS or _same(old[key], cur[key]):
            continue
        if is_frozen(key):
            refused.append(f"{key} {old[key]!r} -> {cur[key]!r}")
        else:
            allowed[key] = [old[key], cur[key]]
    return refused, allowed


def _same(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b
