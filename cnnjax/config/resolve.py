"""The one way every command turns a config file and its overrides into a config it can use:
`resolve` loads the file, applies the overrides, completes the model block and returns every problem
at once, with the same wording for train, sweep planning, eval, predict and convert; `checked_config`
raises them as one ConfigValidationError (one line per problem)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import ml_collections

from cnnjax.config.errors import ConfigValidationError
from cnnjax.config.files import load_config
from cnnjax.config.overrides import apply_overrides, override_problems
from cnnjax.config.validate import batch_problems, config_problems, model_build_problems
from cnnjax.data.sources import check_splits


def resolve(spec: str | ml_collections.ConfigDict, overrides: Sequence[str] = (), *,
            splits: bool = False, build_model: bool = False, device_count: int | None = None,
            process_count: int = 1) -> tuple[ml_collections.ConfigDict, list[str]]:
    """(the config, one line per problem) for `spec` (a config file `file.py[:ARG]`, or a config,
    which is copied) with the `key=value` overrides applied and the model block completed.

    The problems: overrides that cannot be applied, every value and relation (config_problems,
    with the devices and processes where given), the model's name and knobs from the registry; with
    `splits`, the training and evaluation splits (cnnjax.data.sources.check_splits: a missing folder
    or file) and the batch against the training split's size; with `build_model`, also the values the
    model module checks itself (it is built, nothing is allocated) - for a sweep's points, whose
    training runs would otherwise refuse them only once started. A file that cannot be loaded is a
    ConfigError at once: nothing else can be checked.
    """
    config = load_config(spec) if isinstance(spec, str) else copy.deepcopy(spec)
    problems = override_problems(config, overrides)
    problems += [p for p in config_problems(config, device_count=device_count,
                                            process_count=process_count) if p not in problems]
    has_data = isinstance(config.get("data"), ml_collections.ConfigDict)
    if splits and has_data and not any(p.startswith("config.data") for p in problems):
        examples, found = check_splits(config.data)
        problems += found
        if examples is not None:
            problems += [p for p in batch_problems(config, num_train_examples=examples)
                         if p not in problems]
    if build_model and not problems:
        problems += model_build_problems(config)
    return config, problems


def checked_config(spec: str | ml_collections.ConfigDict, overrides: Sequence[str] = (),
                   **options) -> ml_collections.ConfigDict:
    """`resolve`'s config; ConfigValidationError listing every problem when there is one."""
    config, problems = resolve(spec, overrides, **options)
    if problems:
        raise ConfigValidationError(problems)
    return config


def resolve_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """The config of `file.py[:ARG]` with the overrides applied and the model block completed; a
    ConfigError for an override that cannot be applied or a model knob value the model refuses (see
    apply_overrides; the other values are `resolve`'s)."""
    config = load_config(spec)
    apply_overrides(config, overrides)
    return config
