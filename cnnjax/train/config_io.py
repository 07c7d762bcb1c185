"""Loading config files, applying `--config.key=value` overrides, and saving the resolved config.

A config file is a Python module with `get_config(arg=None) -> ml_collections.ConfigDict`, named on the
command line as `path/to/file.py` or `path/to/file.py:ARG`. Overrides are checked against the keys the
config defines, so a misspelt key fails before anything runs, with the list of valid keys.
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


def _parse_value(text: str, current):
    """A command-line string as the type of the value it replaces."""
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
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if current is not None and not isinstance(value, type(current)) and not (
            isinstance(current, tuple) and isinstance(value, tuple)):
        raise ConfigError(f"expected a {type(current).__name__}, got {text!r}")
    return value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> None:
    """Applies `key=value` pairs (the `--config.` prefix already removed) in place."""
    valid = flat_keys(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form --config.KEY=VALUE")
        if key not in valid:
            raise ConfigError(f"unknown config key {key!r}; valid keys: {', '.join(valid)}")
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        try:
            value = _parse_value(text, node[leaf])
        except ConfigError as e:
            raise ConfigError(f"--config.{key}: {e}") from None
        with node.ignore_type():
            node[leaf] = value


def save_config(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
    """Writes the resolved config as JSON beside the checkpoints (the evaluator reads it back);
    atomically, so a full disk or a kill leaves the previous file, never a part of one."""
    from cnnjax.train.workdir import atomic_write_text

    text = json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list) + "\n"
    return atomic_write_text(pathlib.Path(workdir) / CONFIG_FILE, text)


def load_saved_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The config a run in `workdir` was started with."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_FILE} in {workdir!s}: not a cnnjax workdir")
    return ml_collections.ConfigDict(json.loads(path.read_text()))
