"""Shared test fixtures. Tests run on the CPU; none touches the network."""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import pytest

# One XLA compilation cache for the whole run, shared by this process and every process it starts:
# the suite trains the same tiny configs in dozens of tests and subprocesses, and compiled them
# again each time (a quarter of the suite's time; half of test_loop's). A cached executable is the
# one XLA compiled, so results stay bit-identical; the key holds XLA_FLAGS and the compile options,
# so another numerics setting (e.g. xla_cpu_conv) compiles anew. Fresh per run (nothing carried
# between runs), and set before JAX is imported.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    XLA_CACHE = tempfile.mkdtemp(prefix="cnnjax-tests-xla-cache-")
    os.environ.update({"JAX_COMPILATION_CACHE_DIR": XLA_CACHE,
                       "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"})
else:
    XLA_CACHE = None

from cnnjax.train import environment  # imports JAX, which reads the variables above

# The suite runs under the default config's numerics, as `python -m cnnjax.cli` runs do: a test that
# trains in this process (where JAX starts once, with these flags) and compares with a run in a
# subprocess (which applies its config's flags) must see the same XLA:CPU convolutions. Set before
# JAX creates its backends; a contradicting flag set by hand for the test run is left as it is.
try:
    environment.apply_xla_flags({"xla_cpu_conv": environment.DEFAULT_XLA_CPU_CONV})
except environment.XlaFlagError:
    pass

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> pathlib.Path:
    """../shared/data beside the clone; tests that need it skip with the reason where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (it sits beside the clone in CI only)")
    return SHARED_DATA


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the shared_data fixture carries the shared_data marker, so that
    `-m "not shared_data"` leaves out exactly the tests that read ../shared/data."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.shared_data)


def pytest_unconfigure(config: pytest.Config) -> None:
    if XLA_CACHE is not None:
        shutil.rmtree(XLA_CACHE, ignore_errors=True)
