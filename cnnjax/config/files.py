"""Loading config files, applying `--config.key=value` overrides, and saving the resolved config.

A config file is a Python module with `get_config(arg=None) -> ml_collections.ConfigDict`, named on the
command line as `path/to/file.py` or `path/to/file.py:ARG`. Every command (train, eval, predict, sweep)
reads its `--config.` arguments with `split_overrides` and resolves a config file with `resolve_config`.

Overrides are applied in two passes: first `model.name` and `data.preset`, then the model block is
completed with every knob of that model and its default (cnnjax.models.knobs) and the data block takes
the new preset's fields (cnnjax.data.presets), then the other overrides. So
`--config.model.KNOB=VALUE` works for every knob of the model, whichever the config file set. A key
is checked against the keys the config defines, so a misspelt key fails before anything runs, with
the list of valid keys; a knob value the model does not accept fails the same way.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import pathlib
from collections.abc import Sequence

import ml_collections

from cnnjax.errors import UserError

CONFIG_FILE = "config.json"
OVERRIDE_PREFIX = "--config."
# Keys that choose what the other keys of their block mean: applied before the other overrides.
FIRST_KEYS = ("model.name", "data.preset")


class ConfigError(UserError):
    """A config file, argument or override that cannot be used (one line, what is accepted)."""


def load_module(path: str):
    """Imports a config file as a module."""
    file = pathlib.Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"cnnjax_config_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} defines no get_config(arg=None)")
    return module


def load_config(spec: str) -> ml_collections.ConfigDict:
    """`file.py` or `file.py:ARG` -> the ConfigDict its get_config returns."""
    path, _, arg = spec.partition(":")
    module = load_module(path)
    takes_arg = len(inspect.signature(module.get_config).parameters) > 0
    if arg and not takes_arg:
        raise ConfigError(f"config file {path!r} takes no argument, but {arg!r} was given")
    config = module.get_config(arg or None) if takes_arg else module.get_config()
    return ml_collections.ConfigDict(config)


def split_overrides(args: Sequence[str], accepted: str) -> list[str]:
    """The `key=value` texts of `--config.KEY=VALUE` arguments; any other argument is a ConfigError
    that says which arguments the command takes (`accepted`, e.g. '--workdir and --config.KEY=VALUE')."""
    overrides = []
    for item in args:
        if not item.startswith(OVERRIDE_PREFIX):
            raise ConfigError(f"unrecognised argument {item!r}; this command takes {accepted}")
        overrides.append(item[len(OVERRIDE_PREFIX):])
    return overrides


def resolve_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """The config of `file.py[:ARG]` with the overrides applied and the model block completed."""
    config = load_config(spec)
    apply_overrides(config, overrides)
    return config


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every leaf key as a dotted path, e.g. 'optimizer.momentum'."""
    keys = []
    for name, value in config.items():
        key = f"{prefix}{name}"
        if isinstance(value, ml_collections.ConfigDict):
            keys.extend(flat_keys(value, key + "."))
        else:
            keys.append(key)
    return sorted(keys)


def parse_value(text: str, current):
    """A command-line string as the type of the value it replaces (`current`): true/false for a bool,
    the text itself for a str, a Python literal otherwise ('16,16,32,32' or '(16, 32)' for a tuple,
    a single value becoming a 1-tuple); anything goes where the current value is None."""
    if isinstance(current, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"expected true or false, got {text!r}")
    if isinstance(current, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        if current is None:
            return text
        raise ConfigError(f"cannot read {text!r} as a {type(current).__name__}") from None
    if isinstance(current, float) and isinstance(value, int):
        value = float(value)
    if isinstance(current, tuple | list):  # config.json stores tuples as lists
        value = tuple(value) if isinstance(value, tuple | list) else (value,)
        return list(value) if isinstance(current, list) else value
    if current is not None and not isinstance(value, type(current)):
        raise ConfigError(f"expected a {type(current).__name__}, got {text!r}")
    return value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Applies `key=value` pairs (the `--config.` prefix already removed) in place: FIRST_KEYS, then
    the model block is completed (complete_model), then the rest; the model's knobs are validated."""
    pairs = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form --config.KEY=VALUE")
        pairs.append((key, text))
    has_model = isinstance(config.get("model"), ml_collections.ConfigDict) and "name" in config.model
    previous = config.model.name if has_model else None
    has_preset = isinstance(config.get("data"), ml_collections.ConfigDict) and "preset" in config.data
    previous_preset = config.data.preset if has_preset else None
    for key, text in pairs:
        if key in FIRST_KEYS:
            _set(config, key, text)
    if has_preset and config.data.preset != previous_preset:
        from cnnjax.data.presets import switch_preset

        switch_preset(config.data, previous_preset)
    if has_model:
        complete_model(config.model, previous)
    for key, text in pairs:
        if key not in FIRST_KEYS:
            _set(config, key, text)
    if has_model:
        check_model(config)
    if isinstance(config.get("data"), ml_collections.ConfigDict) and "train_transform" in config.data:
        from cnnjax.data.config import check_data_config  # no TensorFlow

        check_data_config(config.data)  # an unknown transform fails here, before any run starts


def _set(config: ml_collections.ConfigDict, key: str, text: str) -> None:
    """config[key] = text parsed as the type of its current value; ConfigError for an unknown key."""
    valid = flat_keys(config)
    if key not in valid:
        if key.startswith("model.") and "name" in config.get("model", {}):
            knobs = sorted(k for k in config.model if k != "name")
            raise ConfigError(f"model {config.model.name!r} has no knob {key[len('model.'):]!r}; "
                              f"valid knobs: {', '.join(knobs)}")
        raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(valid)}")
    *parents, leaf = key.split(".")
    node = config
    for parent in parents:
        node = node[parent]
    try:
        value = parse_value(text, node[leaf])
    except ConfigError as e:
        raise ConfigError(f"--config.{key}: {e}") from None
    with node.ignore_type():
        node[leaf] = value


def complete_model(model: ml_collections.ConfigDict, previous: str | None = None) -> None:
    """Fills `model` (a config's model block) with every knob of model `model.name` that it lacks,
    at the registry's default. When the name changed from `previous`, the knobs the new model does
    not take are dropped and the knobs still at `previous`'s default take the new model's default
    (knobs both models take, set to other values, are kept). Otherwise a knob the model does not
    take is a ConfigError listing the valid ones."""
    from cnnjax import models  # imports flax; only once a config is resolved

    try:
        defaults = models.knobs(model.name)
        old = models.knobs(previous) if previous and previous != model.name else None
    except models.ModelError as e:
        raise ConfigError(f"model.name: {e}") from None
    if old is not None:
        for key in list(model.keys()):
            if key != "name" and (key not in defaults or (key in old and _same(model[key], old[key]))):
                del model[key]
    unknown = sorted(set(model.keys()) - set(defaults) - {"name"})
    if unknown:
        raise ConfigError(f"model {model.name!r} does not take knob(s) {', '.join(unknown)}; valid "
                          f"knobs: {', '.join(sorted(defaults))}")
    for key, value in defaults.items():
        if key not in model:
            model[key] = value


def switch_model(model: ml_collections.ConfigDict, name: str) -> None:
    """Makes `model` (a config's model block) model `name`, as --config.model.name=NAME does: for a
    config file that starts from another's and trains another model."""
    previous = model.name
    model.name = name
    complete_model(model, previous)


def check_model(config: ml_collections.ConfigDict) -> None:
    """Builds the config's model (a flax module: nothing is allocated), so that a knob value it does
    not accept fails here, in one line, before any data or training starts."""
    from cnnjax import models

    knobs = {k: v for k, v in config.model.items() if k != "name"}
    classes = int(config.data.num_classes) if "data" in config and "num_classes" in config.data else 0
    try:
        models.build(config.model.name, **({"num_classes": classes} if classes > 0 else {}), **knobs)
    except models.ModelError as e:
        raise ConfigError(f"config.model: {e}") from None


def _same(a, b) -> bool:
    """Equal, counting a list (as config.json stores tuples) equal to the tuple with its items."""
    a, b = (tuple(v) if isinstance(v, list | tuple) else v for v in (a, b))
    return a == b and type(a) is type(b)


def save_config(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
    """Writes the resolved config as JSON beside the checkpoints (the evaluator reads it back), with
    every knob of the model (the registry's default where the config did not set it); atomically, so
    a full disk or a kill leaves the previous file, never a part of one."""
    from cnnjax.train.workdir import atomic_write_text

    config = ml_collections.ConfigDict(config.to_dict())
    if isinstance(config.get("model"), ml_collections.ConfigDict) and "name" in config.model:
        complete_model(config.model)
    text = json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list) + "\n"
    return atomic_write_text(pathlib.Path(workdir) / CONFIG_FILE, text)


def load_saved_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The config a run in `workdir` was started with."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_FILE} in {workdir!s}: not a cnnjax workdir")
    return ml_collections.ConfigDict(json.loads(path.read_text()))
