"""Files that readers see whole or not at all: write to a temporary file beside the target, flush it
to the disk, rename it over the target, and sync the folder so that the rename itself survives a crash.
A run killed half-way leaves the old file (and at most a hidden `.NAME.tmp-PID`), never a part."""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Callable
from typing import BinaryIO


def write_then_rename(path: str | pathlib.Path, write: Callable[[BinaryIO], None]) -> pathlib.Path:
    """Calls write(f) on a temporary binary file beside `path`, then renames it over `path`. On any
    error the temporary file is removed and `path` is untouched."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # the rename itself is made durable by syncing the folder
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return path


def write_text(path: str | pathlib.Path, text: str) -> pathlib.Path:
    """`text` (UTF-8) written to `path` through `write_then_rename`."""
    return write_then_rename(path, lambda f: f.write(text.encode("utf-8")))
