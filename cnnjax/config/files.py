"""Config files and saved configs: loading a config file (a Python module with
`get_config(arg=None) -> ml_collections.ConfigDict`, named as `path/to/file.py` or
`path/to/file.py:ARG`), and the resolved config a run saves beside its checkpoints (config.json).

A config file is Python: while it loads (and while its get_config runs), its folder is first on
sys.path, so it may import a module beside it (`from my_base import base_config`). The modules it
imported from its folder are dropped from sys.modules afterwards, so that another config folder with a
module of the same name gets its own. A syntax or import error in a config file is one line that
names the file and the line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import json
import pathlib
import sys
import traceback
from collections.abc import Iterator

import ml_collections

from cnnjax import atomic
from cnnjax.config.errors import ConfigError
from cnnjax.config.overrides import complete_model

CONFIG_FILE = "config.json"


@contextlib.contextmanager
def config_folder(path: pathlib.Path) -> Iterator[None]:
    """`path`'s folder first on sys.path for the duration. A module of that folder must not be taken
    from the cache when another config folder's module of the same name is there (a config file that
    loads another's, each with its own `common.py`): such a module is set aside meanwhile and put
    back afterwards, and the modules imported from this folder are dropped on the way out. A syntax
    or import error becomes one line naming the file and line where it happened."""
    folder = path.resolve().parent
    hidden = {n for n, m in list(sys.modules.items()) if _is_shadowed(n, m, folder)}
    shadowed = {n: sys.modules.pop(n) for n in list(sys.modules) if n.partition(".")[0] in hidden}
    before = set(sys.modules)
    sys.path.insert(0, str(folder))
    try:
        yield
    except SyntaxError as e:
        where = f"{e.filename}, line {e.lineno}" if e.filename else str(path)
        raise ConfigError(f"config file {str(path)!r}: syntax error in {where}: {e.msg}") from None
    except ImportError as e:
        raise ConfigError(f"config file {str(path)!r}: {_where(e, folder)}: {e}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))
        new = set(sys.modules) - before
        local = {n for n in new if "." not in n and _folder_of(sys.modules[n]) == folder}
        for name in new:
            if name.partition(".")[0] in local:
                del sys.modules[name]
        sys.modules.update(shadowed)


def load_module(path: str):
    """Imports a config file as a module (its folder on sys.path meanwhile: `config_folder`)."""
    file = pathlib.Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path!r} does not exist")
    spec = importlib.util.spec_from_file_location(f"cnnjax_config_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    with config_folder(file):
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
    with config_folder(pathlib.Path(path)):  # get_config may import beside it too
        config = module.get_config(arg or None) if takes_arg else module.get_config()
    return ml_collections.ConfigDict(config)


def save_config(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> pathlib.Path:
    """Writes the resolved config as JSON beside the checkpoints (the evaluator reads it back), with
    every knob of the model (the registry's default where the config did not set it); atomically, so
    a full disk or a kill leaves the previous file, never a part of one."""
    config = ml_collections.ConfigDict(config.to_dict())
    if isinstance(config.get("model"), ml_collections.ConfigDict) and "name" in config.model:
        complete_model(config.model)
    text = json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list) + "\n"
    return atomic.write_text(pathlib.Path(workdir) / CONFIG_FILE, text)


def load_saved_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The config a run in `workdir` was started with."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_FILE} in {workdir!s}: not a cnnjax workdir")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def _where(error: BaseException, folder: pathlib.Path) -> str:
    """'FILE, line N' of the innermost frame of `error` in a file of the config's folder."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if pathlib.Path(f.filename).resolve().parent == folder]
    return f"{frames[-1].filename}, line {frames[-1].lineno}" if frames else str(folder)


def _folder_of(module) -> pathlib.Path | None:
    """The folder a top-level module was imported from (a package: the folder it sits in)."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    file = pathlib.Path(file).resolve()
    return file.parent.parent if file.name == "__init__.py" else file.parent


def _is_shadowed(name: str, module, folder: pathlib.Path) -> bool:
    """Whether cached top-level module `name` comes from a folder of other config files while
    `folder` has its own module of that name (installed and standard modules are never set aside)."""
    if "." in name or not ((folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()):
        return False
    home = _folder_of(module)
    installed = {pathlib.Path(p).resolve() for p in (sys.prefix, sys.base_prefix)}
    return home is not None and home != folder and not any(
        home == root or root in home.parents for root in installed)
