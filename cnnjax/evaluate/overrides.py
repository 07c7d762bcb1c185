"""What `eval` and `predict` may change in a run's saved config: how the examples are read, cut and
batched, never what the parameters are.

    eval --workdir W --crops 10 --config.data.eval_transform=pad_or_crop --config.data.resize_size=36

Allowed (EVAL_KEYS): the evaluation transform and its sizes, the number of crops, the split and the
source it is read from, the batch size and the reading options. Refused with one line naming the allowed
keys: the model and its knobs, data.num_classes, data.channels, and data.mean/std (the normalisation is
part of the trained function, as much as the first layer's bias: other statistics evaluate another
model), and every training key (it would change nothing and say that it did). Two exceptions, neither a
change: a key set to the value it has, and data.num_classes given where the run's config says 0 (taken
from the source), which the checkpoint's shapes then check. A size that does not fit the parameters
(data.image_size for a network with a dense head) is refused by the checkpoint's shape check.

The old flags are shorthands of the same keys (SHORTHANDS: --crops, --split, --data, --batch-size): they
become overrides and take one code path.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from cnnjax import config as config_io
from cnnjax.config import default_config, validate

# Each key evaluation may change -> whether it changes the result (and so goes into the result's file
# name, so that two evaluations of one step that differ in it do not overwrite each other).
EVAL_KEYS: dict[str, bool] = {
    "data.eval_transform": True, "data.image_size": True, "data.resize_size": True,
    "data.eval_crops": True, "data.eval_source": True, "data.eval_split": True,
    "data.data_dir": True, "data.max_image_pixels": True,
    "data.on_corrupt": False, "data.cache": False, "data.num_parallel_calls": False,
    "eval_batch_size": False, "eval_cache_gb": False,
}
# predict reads the files it is given, one batch: only what shapes each image counts.
PREDICT_KEYS: dict[str, bool] = {k: EVAL_KEYS[k] for k in (
    "data.eval_transform", "data.image_size", "data.resize_size", "data.eval_crops",
    "data.max_image_pixels")}
# eval's flags (argparse destinations) and the keys they stand for.
SHORTHANDS = {"crops": "data.eval_crops", "split": "data.eval_split", "data": "data.eval_source",
              "batch_size": "eval_batch_size"}


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The `key=value` overrides that eval's shorthand flags stand for (those given)."""
    return [f"{key}={getattr(args, flag)}" for flag, key in SHORTHANDS.items()
            if getattr(args, flag, None) is not None]


def apply_eval_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str],
                         allowed: Mapping[str, bool], tool: str) -> dict[str, Any]:
    """Applies `key=value` overrides to a run's saved config in place, each key in `allowed`; returns
    {key: new value} for those that changed a value (sorted by key).

    ConfigError (one line) for a key outside `allowed` (naming the allowed ones), an unknown key, a
    key given twice with two values, or a value that is malformed or that the checks refuse.
    """
    _complete(config, allowed)
    before = validate.flatten(config.to_dict())
    given: dict[str, str] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise config_io.ConfigError(f"override {item!r} is not of the form --config.KEY=VALUE")
        if given.get(key, text) != text:
            raise config_io.ConfigError(f"{key} is given twice, as {given[key]!r} and {text!r}"
                                        + _shorthand_note(key))
        given[key] = text
    may = ", ".join(allowed)
    for key, text in given.items():
        if key in allowed:
            continue
        if key not in before:
            raise config_io.ConfigError(f"unknown config key {key!r}; {tool} may change {may}")
        if not _no_change(key, text, before[key]):
            why = ("only eval reads it: predict reads the image files it is given" if key in EVAL_KEYS
                   else "the checkpoint's parameters or its training depend on it")
            raise config_io.ConfigError(f"{tool} cannot change {key} ({why}; it is "
                                        f"{before[key]!r}); {tool} may change {may}")
    problems = set(validate.config_problems(config))
    config_io.apply_overrides(config, [f"{k}={t}" for k, t in given.items()])
    new = [p for p in validate.config_problems(config) if p not in problems]
    if new:
        raise config_io.ConfigError("; ".join(
            p + "".join(_shorthand_note(k) for k in given if p.startswith(f"config.{k}="))
            for p in new))
    after = validate.flatten(config.to_dict())
    return {k: after[k] for k in sorted(given) if not _same(after[k], before[k])}


def _complete(config: ml_collections.ConfigDict, allowed: Mapping[str, bool]) -> None:
    """Gives a config saved before an allowed key existed (data.eval_crops) that key's default."""
    defaults = validate.flatten(default_config().to_dict())
    for key in allowed:
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        if leaf not in node and key in defaults:
            with node.ignore_type():
                node[leaf] = defaults[key]


def _no_change(key: str, text: str, current: Any) -> bool:
    """True when `text` sets `key` to the value it has, or fills in a num_classes of 0 (from the
    source) that the checkpoint's shapes will check."""
    try:
        value = config_io.parse_value(text, current)
    except config_io.ConfigError:
        return False
    return _same(value, current) or (key == "data.num_classes" and current == 0)


def _same(a: Any, b: Any) -> bool:
    a, b = (list(v) if isinstance(v, tuple | list) else v for v in (a, b))
    return a == b and type(a) is type(b)


def _shorthand_note(key: str) -> str:
    flags = [f"--{f.replace('_', '-')}" for f, k in SHORTHANDS.items() if k == key]
    return f" ({flags[0]} is short for --config.{key})" if flags else ""
