"""The console filter of the command-line tools: decoder chatter goes to a log, everything else through,
in order, even when the process aborts right after writing."""

from __future__ import annotations

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

SCRIPT = r"""
import os, sys
from cnnjax import stderr_filter
stderr_filter.install(sys.argv[1])
os.write(2, b"Corrupt JPEG data: premature end of data segment\n")
print("python line", file=sys.stderr, flush=True)
os.write(2, b"Improper call to JPEG library in state 201\n")
os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\n")
os.write(2, b"F0000 something fatal from C++\n")
if sys.argv[2] == "abort":
    os.abort()
"""


def _run(tmp_path: pathlib.Path, how: str, env: dict | None = None) -> tuple[int, str, pathlib.Path]:
    log = tmp_path / "decoder.log"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(log), how], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=env)
    return proc.returncode, proc.stderr, log


def test_decoder_lines_go_to_the_log_and_the_rest_through(tmp_path):
    code, err, log = _run(tmp_path, "exit")
    assert code == 0
    assert err.splitlines() == ["python line", "F0000 something fatal from C++"]
    assert log.read_text().splitlines() == [
        "Corrupt JPEG data: premature end of data segment",
        "Improper call to JPEG library in state 201",
        "libpng warning: iCCP: known incorrect sRGB profile"]


def test_the_last_line_before_a_crash_is_not_lost(tmp_path):
    code, err, _ = _run(tmp_path, "abort")
    assert code != 0
    assert err.splitlines()[-1] == "F0000 something fatal from C++"


def test_raw_stderr_switch_turns_the_filter_off(tmp_path):
    import os

    code, err, log = _run(tmp_path, "exit", env={**os.environ, "CNNJAX_RAW_STDERR": "1"})
    assert code == 0 and "Improper call to JPEG library in state 201" in err and not log.exists()
