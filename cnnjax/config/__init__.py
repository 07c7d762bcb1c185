"""Configs: the defaults every config file starts from, loading config files, `--config.KEY=VALUE`
overrides, the checks, and the one resolver every command uses (`resolve` / `checked_config`).

Config files import from here: `from cnnjax.config import ConfigError, default_config`. This package
imports neither cnnjax.train nor JAX nor TensorFlow when it loads (the model registry is imported,
with Flax, only once a config names its model). The module paths of earlier versions
(cnnjax.train.config_io, .defaults, .validate) still work: see cnnjax.config.aliases.

    defaults.py   default_config(), the XLA:CPU convolution choices
    files.py      load_module / load_config (a config file is Python), save_config / load_saved_config
    overrides.py  split_overrides, parse_value, apply_overrides, complete_model, switch_model
    validate.py   config_problems / check_config (values, relations, model knobs), resume_changes
    resolve.py    resolve / checked_config: load, override, complete, check - every problem at once
"""

from cnnjax.config.defaults import DEFAULT_XLA_CPU_CONV, XLA_CPU_CONVS, default_config
from cnnjax.config.errors import ConfigError, ConfigValidationError, ResumeMismatchError
from cnnjax.config.files import CONFIG_FILE, load_config, load_module, load_saved_config, save_config
from cnnjax.config.overrides import (
    FIRST_KEYS,
    OVERRIDE_PREFIX,
    apply_overrides,
    complete_model,
    flat_keys,
    override_problems,
    parse_value,
    split_overrides,
    switch_model,
)
from cnnjax.config.resolve import checked_config, resolve, resolve_config
from cnnjax.config.validate import (
    DECAY_MASKS,
    FROZEN_KEYS,
    FROZEN_PREFIXES,
    OPTIMIZERS,
    RUN_CONTROL_KEYS,
    SCHEDULES,
    UNITS,
    batch_problems,
    check_config,
    config_problems,
    flatten,
    is_frozen,
    model_problems,
    resume_changes,
)

__all__ = [
    "CONFIG_FILE", "DECAY_MASKS", "DEFAULT_XLA_CPU_CONV", "FIRST_KEYS", "FROZEN_KEYS",
    "FROZEN_PREFIXES", "OPTIMIZERS", "OVERRIDE_PREFIX", "RUN_CONTROL_KEYS", "SCHEDULES", "UNITS",
    "XLA_CPU_CONVS", "ConfigError", "ConfigValidationError", "ResumeMismatchError", "apply_overrides",
    "batch_problems", "check_config", "checked_config", "complete_model", "config_problems",
    "default_config", "flat_keys", "flatten", "is_frozen", "load_config", "load_module",
    "load_saved_config", "model_problems", "override_problems", "parse_value", "resolve",
    "resolve_config", "resume_changes", "save_config", "split_overrides", "switch_model",
]
