"""The workdir of a run: one run at a time (a lock), files written atomically, the config and its history.

A workdir holds what a run cannot lose (checkpoints, config.json) and is touched only after the config
was validated. The order at start-up (cnnjax.train.loop.train_and_evaluate):

1. validate the config (cnnjax.config) and compare it with the saved one: nothing written yet;
2. create the folder and take the lock (`run.lock`, fcntl.flock): a second run refuses at once and
   names the holder; the kernel releases the lock on any exit, kill -9 included, so a stale lock file
   never blocks a resume;
3. write config.json on the first start only (temporary file, fsync, rename), or again while the
   workdir records no run (no checkpoint, no metric: an earlier start failed); a resumed run appends
   its allowed changes to config_history.jsonl instead, so config.json always describes the
   checkpoints beside it;
4. once the checkpoint is restored, the loop appends this start's software and machine to
   environment.json (cnnjax.train.environment).

Multi-host runs: process 0 takes the lock and writes the files; the other processes write nothing.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import pathlib
import socket
import sys
import time
from typing import Any

import ml_collections

from cnnjax import atomic
from cnnjax import config as config_lib
from cnnjax.errors import UserError
from cnnjax.train.metrics import METRICS_FILE

LOCK_FILE = "run.lock"
CONFIG_FILE = config_lib.CONFIG_FILE
HISTORY_FILE = "config_history.jsonl"
ENVIRONMENT_FILE = "environment.json"  # what each start ran on (cnnjax.train.environment)


# File-system errors that are the environment's, not a bug: reported in one line.
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)


class WorkdirError(UserError):
    """The workdir cannot be used: missing, read-only, full, not a directory."""


class WorkdirBusyError(UserError):
    """Another run holds the workdir's lock."""


def describe_os_error(error: OSError, what: str) -> str:
    """One line for a file-system error: what failed, where, and why (e.g. 'No space left on device')."""
    where = f" ({error.filename})" if error.filename else ""
    reason = os.strerror(error.errno) if error.errno else str(error)
    hint = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
            errno.EROFS: "choose a writable --workdir", errno.EACCES: "choose a writable --workdir",
            errno.EPERM: "choose a writable --workdir"}.get(error.errno)
    return f"{what}{where}: {reason}" + (f"; {hint}" if hint else "")


# ---------------------------------------------------------------------------------------------------
# Atomic files
# ---------------------------------------------------------------------------------------------------

def atomic_write_text(path: str | pathlib.Path, text: str) -> pathlib.Path:
    """Writes `text` to `path` so that readers see the old file or the new one, never a part
    (cnnjax.atomic: temporary file, fsync, rename, folder sync)."""
    return atomic.write_text(path, text)


def append_line(path: str | pathlib.Path, record: dict) -> None:
    """Appends one JSON line and syncs it (a history that a crash leaves at most one line short)."""
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True, default=list) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------------------
# The lock
# ---------------------------------------------------------------------------------------------------

class WorkdirLock:
    """An exclusive fcntl.flock on `workdir/run.lock`, held until `release` or the process ends.

    The file records who holds it (pid, host, start time, command), so that a second run can say
    whom it is waiting for. The file is never deleted: a lock that outlives its holder is not held
    (the kernel drops flocks with the process), and the next run simply takes it.
    """

    def __init__(self, workdir: str | pathlib.Path):
        self.path = pathlib.Path(workdir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> WorkdirLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise WorkdirError(describe_os_error(e, "cannot create the workdir's lock file")) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WorkdirBusyError(
                    f"workdir {self.path.parent} is in use by another run ({self.holder()}); wait for "
                    "it to finish, stop it, or choose another --workdir") from None
            raise WorkdirError(describe_os_error(e, "cannot lock the workdir")) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "command": " ".join(sys.argv)[:500]}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError as e:
            os.close(fd)
            raise WorkdirError(describe_os_error(e, "cannot write the workdir's lock file")) from None
        self._fd = fd
        return self

    def holder(self) -> str:
        """'pid 123 on host h since 2026-12-01T07:00:00+00:00' from the lock file, as well as known."""
        for _ in range(20):  # the holder writes its line right after locking: give it a moment
            try:
                info = json.loads(self.path.read_text())
                return f"pid {info['pid']} on {info['host']} since {info['started']}"
            except (OSError, ValueError, KeyError, TypeError):
                time.sleep(0.05)
        return "holder unknown"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


# ---------------------------------------------------------------------------------------------------
# Start-up
# ---------------------------------------------------------------------------------------------------

def read_saved_config(workdir: str | pathlib.Path) -> dict | None:
    """The config.json of `workdir` as a dict, None when there is none; one line if unreadable."""
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise WorkdirError(f"{path} cannot be read ({type(e).__name__}: {e}); it describes the "
                           "checkpoints beside it: restore it, or choose another --workdir") from None


def effective_config(workdir: str | pathlib.Path, saved: dict) -> dict:
    """The saved config with the changes of config_history.jsonl applied, oldest first: the config
    the latest run of the workdir used."""
    flat = config_lib.flatten(saved)
    path = pathlib.Path(workdir) / HISTORY_FILE
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                changed = json.loads(line)["changed"]
                flat.update({key: pair[1] for key, pair in changed.items()})
            except (ValueError, KeyError, TypeError, IndexError):
                continue  # a line cut short by a crash: the ones before it still count
    return flat


def has_checkpoints(workdir: str | pathlib.Path) -> bool:
    """Whether `workdir/checkpoints` holds a step folder (complete or not): a run to resume."""
    folder = pathlib.Path(workdir) / "checkpoints"
    return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


def records_a_run(workdir: str | pathlib.Path) -> bool:
    """Whether `workdir` holds a checkpoint (kept or set aside) or a metric: what its config.json
    describes. A start that failed before its first step (a bad batch-norm group, a dataset that
    could not be downloaded) leaves neither, and its config.json binds nothing."""
    workdir = pathlib.Path(workdir)
    for folder in (workdir / "checkpoints", workdir / "checkpoints_damaged"):
        if folder.is_dir() and any(folder.iterdir()):
            return True
    metrics = workdir / METRICS_FILE
    return metrics.is_file() and metrics.stat().st_size > 0


def check_resume(config: ml_collections.ConfigDict, workdir: str | pathlib.Path
                 ) -> dict[str, list] | None:
    """The allowed changes of `config` against the workdir's saved config (None for a new workdir, or
    one that `records_a_run` says holds no run).

    Raises ResumeMismatchError (one line, every refused key) when the change touches what the
    checkpoints depend on; nothing is written either way.
    """
    if not records_a_run(workdir):
        return None
    saved = read_saved_config(workdir)
    if saved is None:
        return None
    refused, _ = config_lib.resume_changes(saved, config.to_dict())
    _, allowed = config_lib.resume_changes(effective_config(workdir, saved), config.to_dict())
    if refused:
        raise config_lib.ResumeMismatchError(
            f"{workdir} holds a run whose checkpoints depend on what this command changes: "
            f"{'; '.join(refused)}; resume with the saved values or choose another --workdir")
    return allowed


def probe_lock(workdir: str | pathlib.Path) -> None:
    """Raises WorkdirBusyError when another run holds `workdir`'s lock; creates nothing (a cheap
    early check: the lock itself is taken by `open_workdir`)."""
    path = pathlib.Path(workdir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # no lock file (or unreadable): open_workdir decides
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise WorkdirBusyError(
                f"workdir {path.parent} is in use by another run ({WorkdirLock(workdir).holder()}); "
                "wait for it to finish, stop it, or choose another --workdir") from None
    finally:
        os.close(fd)


def check_writable(workdir: pathlib.Path, purpose: str = "use --workdir") -> None:
    """Raises WorkdirError (one line) when `workdir`, or the folder it would be created in, cannot be
    written; writes nothing."""
    probe = workdir
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise WorkdirError(f"cannot {purpose} {workdir}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        # os.access also reports a read-only file system (EROFS), for root too
        try:
            read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        why = "on a read-only file system" if read_only else "not writable"
        raise WorkdirError(f"cannot {purpose} {workdir}: {probe} is {why}")


def open_workdir(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
                 is_main: bool = True) -> WorkdirLock | None:
    """Creates and locks `workdir` and records the config (see the module docstring).

    Call after `cnnjax.config.check_config`. Returns the held lock (process 0) or None (other processes).
    Raises ResumeMismatchError, WorkdirBusyError or WorkdirError, each one line, before any file of
    an existing run is changed.
    """
    workdir = pathlib.Path(workdir)
    if not is_main:
        return None
    check_resume(config, workdir)  # read-only: refuse before creating anything
    check_writable(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WorkdirError(describe_os_error(e, f"cannot create --workdir {workdir}")) from None
    lock = WorkdirLock(workdir).acquire()
    try:
        allowed = check_resume(config, workdir)  # again under the lock: another run may have written
        if allowed is None:  # a new workdir, or one that records no run: this config describes it
            (workdir / HISTORY_FILE).unlink(missing_ok=True)
            (workdir / ENVIRONMENT_FILE).unlink(missing_ok=True)  # its starts ran no step either
            config_lib.save_config(config, workdir)
        elif allowed:
            append_line(workdir / HISTORY_FILE, {
                "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "changed": allowed})
    except OSError as e:
        lock.release()
        raise WorkdirError(describe_os_error(e, f"cannot write the config into {workdir}")) from None
    except BaseException:
        lock.release()
        raise
    return lock
