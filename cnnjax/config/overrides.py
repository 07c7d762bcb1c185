"""`--config.KEY=VALUE` overrides: reading them from a command line, parsing their values, applying
them, and completing the model block with every knob of its model.

Overrides are applied in two passes: first `model.name` and `data.preset`, then the model block is
completed with every knob of that model and its default (cnnjax.models.knobs) and the data block takes
the new preset's fields (cnnjax.data.presets), then the other overrides. So
`--config.model.KNOB=VALUE` works for every knob of the model, whichever the config file set. A key
is checked against the keys the config defines, so a misspelt key fails before anything runs, with
the list of valid keys; every such problem is reported at once.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence

import ml_collections

from cnnjax.config.errors import ConfigError
from cnnjax.config.validate import model_build_problems, model_problems
from cnnjax.data.config import check_data_config
from cnnjax.data.presets import switch_preset

OVERRIDE_PREFIX = "--config."
# Keys that choose what the other keys of their block mean: applied before the other overrides.
FIRST_KEYS = ("model.name", "data.preset")


def split_overrides(args: Sequence[str], accepted: str) -> list[str]:
    """The `key=value` texts of `--config.KEY=VALUE` arguments; any other argument is a ConfigError
    that says which arguments the command takes (`accepted`, e.g. '--workdir and --config.KEY=VALUE')."""
    overrides = []
    for item in args:
        if not item.startswith(OVERRIDE_PREFIX):
            raise ConfigError(f"unrecognised argument {item!r}; this command takes {accepted}")
        overrides.append(item[len(OVERRIDE_PREFIX):])
    return overrides


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
    """Applies `key=value` pairs (the `--config.` prefix already removed) in place, as
    `override_problems` does, then checks the model's name and knob values (building the module:
    nothing is allocated) and the data block's values; a ConfigError (one line per problem) names
    every override that could not be applied."""
    problems = override_problems(config, overrides)
    if not problems and isinstance(config.get("model"), ml_collections.ConfigDict):
        problems = model_problems(config) or model_build_problems(config)
    if problems:
        raise ConfigError("\n".join(problems))
    if isinstance(config.get("data"), ml_collections.ConfigDict) and "train_transform" in config.data:
        check_data_config(config.data)  # an unknown transform fails here, before any run starts


def override_problems(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> list[str]:
    """Applies `key=value` pairs in place: FIRST_KEYS, then the model block is completed
    (complete_model) and the data block takes a new preset's fields, then the rest. Returns one line
    per override that could not be applied (an unknown key, a value of the wrong type); the others
    are applied."""
    pairs, problems = [], []
    for item in overrides:
        key, sep, text = item.partition("=")
        if sep:
            pairs.append((key, text))
        else:
            problems.append(f"override {item!r} is not of the form --config.KEY=VALUE")
    has_model = isinstance(config.get("model"), ml_collections.ConfigDict) and "name" in config.model
    previous = config.model.name if has_model else None
    has_preset = isinstance(config.get("data"), ml_collections.ConfigDict) and "preset" in config.data
    previous_preset = config.data.preset if has_preset else None
    first = [(k, t) for k, t in pairs if k in FIRST_KEYS]
    rest = [(k, t) for k, t in pairs if k not in FIRST_KEYS]
    problems += _set_all(config, first)
    if has_preset and config.data.preset != previous_preset:
        switch_preset(config.data, previous_preset)
    if has_model:
        try:
            complete_model(config.model, previous)
        except ConfigError as e:  # the model's other keys cannot be judged without its knobs
            return [*problems, str(e)]
    return problems + _set_all(config, rest)


def _set_all(config: ml_collections.ConfigDict, pairs: Sequence[tuple[str, str]]) -> list[str]:
    problems = []
    for key, text in pairs:
        try:
            _set(config, key, text)
        except ConfigError as e:
            problems.append(str(e))
    return problems


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
    from cnnjax import models  # imports flax: only once a config names its model

    try:
        defaults = models.knobs(model.name)
        old = models.knobs(previous) if previous and previous != model.name else None
    except models.ModelError as e:
        raise ConfigError(f"config.model.name: {e}") from None
    if old is not None:
        for key in list(model.keys()):
            if key != "name" and (key not in defaults or (key in old and _same(model[key], old[key]))):
                del model[key]
    unknown = sorted(set(model.keys()) - set(defaults) - {"name"})
    if unknown:
        raise ConfigError(f"config.model: model {model.name!r} does not take knob(s) "
                          f"{', '.join(unknown)}; valid knobs: {', '.join(sorted(defaults))}")
    for key, value in defaults.items():
        if key not in model:
            model[key] = value


def switch_model(model: ml_collections.ConfigDict, name: str) -> None:
    """Makes `model` (a config's model block) model `name`, as --config.model.name=NAME does: for a
    config file that starts from another's and trains another model."""
    previous = model.name
    model.name = name
    complete_model(model, previous)


def _same(a, b) -> bool:
    """Equal, counting a list (as config.json stores tuples) equal to the tuple with its items."""
    a, b = (tuple(v) if isinstance(v, list | tuple) else v for v in (a, b))
    return a == b and type(a) is type(b)
