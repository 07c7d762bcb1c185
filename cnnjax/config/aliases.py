"""The one table of old names that must keep working: module paths of earlier versions that users'
config files (and scripts) import, and the module that now serves each. `install` makes each old
path import the new module (cnnjax/train/__init__.py calls it), so that
`from cnnjax.train.config_io import ConfigError` in an existing config file still loads."""

from __future__ import annotations

import importlib
import sys

# old module path -> the module that has its names now
MODULES = {
    "cnnjax.train.config_io": "cnnjax.config",
    "cnnjax.train.defaults": "cnnjax.config",
    "cnnjax.train.validate": "cnnjax.config",
}


def install() -> None:
    """Registers every old path of MODULES in sys.modules and as an attribute of its package."""
    for old, new in MODULES.items():
        module = sys.modules.setdefault(old, importlib.import_module(new))
        package, _, leaf = old.rpartition(".")
        setattr(sys.modules[package], leaf, module)
