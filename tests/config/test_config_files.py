"""Config files are Python: a config file imports modules beside it, each folder its own; a syntax or
import error is one line naming the file and line (exit 2); config files written for the old module
paths (cnnjax.train.config_io, .defaults, .validate) still load."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import textwrap

import pytest

from cnnjax import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[2]


def write(path: pathlib.Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


def cli_train(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnjax.cli", "train", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd, env={"PYTHONPATH": str(REPO),
                                                                "PATH": "/usr/bin:/bin"})


def test_the_new_import_path_is_what_configs_use():
    from cnnjax.config import ConfigError, default_config

    assert issubclass(ConfigError, config_lib.ConfigError) and default_config().model.name


def test_an_old_style_config_file_still_loads(tmp_path):
    spec = write(tmp_path / "old.py", """
        from cnnjax.train import config_io, validate
        from cnnjax.train.config_io import ConfigError
        from cnnjax.train.defaults import default_config

        def get_config(arg=None):
            if arg == "bad":
                raise ConfigError("bad arg")
            c = default_config()
            c.schedule.base_lr = 0.5
            assert validate.config_problems(c) == [] and config_io.flat_keys(c)
            return c
        """)
    config = config_lib.resolve_config(spec, ["seed=3"])
    assert config.schedule.base_lr == 0.5 and config.seed == 3
    with pytest.raises(config_lib.ConfigError, match="bad arg"):
        config_lib.load_config(spec + ":bad")


def test_a_config_file_imports_the_module_beside_it_and_each_folder_gets_its_own(tmp_path):
    path_before = list(sys.path)
    for folder, lr in (("a", 0.1), ("b", 0.2)):  # same helper name, other value
        write(tmp_path / folder / "my_base.py", f"""
            from cnnjax.config import default_config

            def base_config():
                c = default_config()
                c.schedule.base_lr = {lr}
                return c
            """)
        write(tmp_path / folder / "run.py", """
            from my_base import base_config

            def get_config():
                return base_config()
            """)
    assert config_lib.load_config(str(tmp_path / "a" / "run.py")).schedule.base_lr == 0.1
    assert config_lib.load_config(str(tmp_path / "b" / "run.py")).schedule.base_lr == 0.2
    assert sys.path == path_before and "my_base" not in sys.modules


def test_get_config_may_import_beside_it_too(tmp_path):
    write(tmp_path / "helper_lazy.py", "LR = 0.3\n")
    spec = write(tmp_path / "lazy.py", """
        from cnnjax.config import default_config

        def get_config():
            from helper_lazy import LR
            c = default_config()
            c.schedule.base_lr = LR
            return c
        """)
    assert config_lib.load_config(spec).schedule.base_lr == 0.3


def test_syntax_and_import_errors_are_one_line_naming_file_and_line(tmp_path):
    bad = write(tmp_path / "bad.py", "def get_config(:\n    pass\n")
    run = cli_train(bad, "--workdir", str(tmp_path / "w"), cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith("error: ") and f"{bad}, line 1" in run.stderr
    missing = write(tmp_path / "missing.py", "import os\nfrom no_such_helper import x\n")
    run = cli_train(missing, cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert f"{missing}, line 2" in run.stderr and "no_such_helper" in run.stderr
    # An error inside the helper beside it is named where it is.
    write(tmp_path / "sub" / "broken_helper.py", "x = = 1\n")
    uses = write(tmp_path / "sub" / "uses.py", "from broken_helper import x\n")
    run = cli_train(uses, cwd=tmp_path)
    assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert f"{tmp_path / 'sub' / 'broken_helper.py'}, line 1" in run.stderr
    assert not (tmp_path / "w").exists() and not (tmp_path / "workdirs").exists()


def test_a_config_loading_another_gets_each_folders_own_helper(tmp_path):
    # outer/run.py imports outer's `common` (a package with a submodule), then loads inner/base.py,
    # which imports inner's `common`: the cached outer one must not be handed to it.
    for folder, lr in (("outer", 0.1), ("inner", 0.2)):
        write(tmp_path / folder / "common" / "__init__.py", "")
        write(tmp_path / folder / "common" / "values.py", f"LR = {lr}\n")
    write(tmp_path / "inner" / "base.py", """
        from common.values import LR
        from cnnjax.config import default_config

        def get_config():
            c = default_config()
            c.schedule.base_lr = LR
            return c
        """)
    spec = write(tmp_path / "outer" / "run.py", f"""
        from cnnjax.config import load_config

        def get_config():
            from common.values import LR  # in sys.modules while inner/base.py loads
            c = load_config({str(tmp_path / "inner" / "base.py")!r})
            c.schedule.warmup = LR
            return c
        """)
    config = config_lib.load_config(spec)
    assert (config.schedule.base_lr, config.schedule.warmup) == (0.2, 0.1)
    assert not any(name.partition(".")[0] == "common" for name in sys.modules)
