"""Every `from cnnjax.X import name` in the package, the configs, the experiments and the benchmarks
names something cnnjax.X has, those inside functions included: a name moved by a refactoring and
still imported from its old place fails here, not when a user reaches the function that imports it."""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = ("cnnjax", "configs", "experiments", "benchmarks")


def cnnjax_imports() -> list[tuple[str, str, str]]:
    """(where, module, name) for every absolute `from cnnjax... import name` in FOLDERS."""
    found = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (isinstance(node, ast.ImportFrom) and not node.level and node.module
                        and node.module.split(".")[0] == "cnnjax"):
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    found += [(where, node.module, alias.name) for alias in node.names]
    return found


def missing(imports: list[tuple[str, str, str]]) -> list[str]:
    """The imports whose module does not import or has no such attribute or submodule."""
    bad = []
    for where, module, name in imports:
        try:
            if hasattr(importlib.import_module(module), name) or name == "*":
                continue
            importlib.import_module(f"{module}.{name}")
        except ImportError as e:
            bad.append(f"{where}: from {module} import {name} ({e})")
    return bad


def test_the_check_finds_a_name_that_is_not_there():
    assert missing([("x.py:1", "cnnjax.config", "default_config"),
                    ("x.py:2", "cnnjax.ops", "conv"),  # a submodule
                    ("x.py:3", "cnnjax.data.config", "no_such_name")]) == [
        "x.py:3: from cnnjax.data.config import no_such_name (No module named "
        "'cnnjax.data.config.no_such_name'; 'cnnjax.data.config' is not a package)"]


@pytest.mark.slow  # imports every module: TensorFlow, torch and the models (about 10 s)
def test_every_cnnjax_import_resolves():
    imports = cnnjax_imports()
    assert len(imports) > 300  # the walk reached the tree
    bad = missing(imports)
    assert not bad, "\n".join(bad)
