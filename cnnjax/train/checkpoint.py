"""Orbax checkpoints that survive kill -9, preemption and corrupt files.

Each checkpoint holds the training state's arrays (parameters, batch-norm statistics, optimizer state,
step) and a small JSON record of the data position. Orbax writes every checkpoint into a temporary folder
and renames it when complete, so a run killed mid-save leaves no half checkpoint behind; a checkpoint that
is damaged afterwards is detected on restore, reported, and the previous one is used instead.

Checksums. Every checkpoint folder carries `cnnjax_sha256.json`, the SHA-256 of each of its files
(Orbax's _CHECKPOINT_METADATA, commit_success.txt and the `meta` item included). It is written into
Orbax's temporary folder after Orbax has finished writing the arrays and before the rename that commits
it (Orbax's post-finalization callback), so a committed checkpoint has its manifest from the first
instant: a kill -9 right after the commit leaves a verifiable checkpoint. That first manifest leaves out
the two bookkeeping files Orbax touches after the callback (the commit time in _CHECKPOINT_METADATA,
commit_success.txt); the run adds them once the commit is done (next save, wait or close). Restoring
checks every file against it; a changed, missing or extra file sets the checkpoint aside
(CHECKPOINTS_damaged/) and the previous one is tried.

Which steps must have a manifest. The first time a run writes a manifest it also writes
`checkpoints/cnnjax_checksums.json` ({"manifests_since_step": N}, once, write-then-rename): from step N
on, a step without a manifest lost it and is set aside like any other damage, whichever steps still have
theirs. Deleting the newest manifest, or every manifest, leaves that record; only a workdir with neither
the record nor any manifest is one written before checksums existed, whose steps are accepted unverified
(a workdir of the version that wrote manifests but no record counts from its oldest manifested step).

Readers beside a running training. The training's clean-up (keep_checkpoints) does not delete a step in
place, which a reader would see half gone, but has Orbax rename it into `checkpoints/cnnjax_removed/`
(one atomic rename) and then deletes that folder. A step folder is therefore whole or absent: a reader
whose read fails looks again, and a step that no longer exists was removed, not damaged
(CheckpointVanishedError); readers open Orbax read-only and never set anything aside.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import pathlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from cnnjax import atomic
from cnnjax.errors import UserError

log = logging.getLogger(__name__)

MANIFEST_FILE = "cnnjax_sha256.json"
MARKER_FILE = "cnnjax_checksums.json"  # in the checkpoints folder: the run's first manifested step
REMOVED_DIR = "cnnjax_removed"  # where Orbax renames the steps the clean-up removes, then deleted
TMP_SUFFIX = ".orbax-checkpoint-tmp"  # where Orbax writes a step before renaming it to its number
STRAY_PREFIX = "stray-"
# Files Orbax writes into a step folder after its post-finalization callback: the commit time in the
# step's metadata and the success marker (see `write_manifest`).
ORBAX_BOOKKEEPING = ("_CHECKPOINT_METADATA", "commit_success.txt")


class CheckpointMismatchError(UserError):
    """A checkpoint whose arrays do not fit the model and optimizer of the config."""


class CheckpointDamagedError(UserError):
    """A checkpoint that fails its checksums or cannot be read (evaluation does not fall back)."""


class CheckpointVanishedError(UserError):
    """A step that a running training's clean-up (keep_checkpoints) removed while it was being read:
    not damage. `step` is the step, `steps` those that exist now."""

    def __init__(self, directory: pathlib.Path, step: int, steps: list[int]):
        self.step, self.steps = step, steps
        super().__init__(f"the checkpoint at step {step} in {directory} was removed while it was read "
                         "(by the running training's clean-up, keep_checkpoints); steps now: "
                         f"{', '.join(map(str, steps)) or 'none'}")


class NoReadableCheckpointError(UserError):
    """Every checkpoint of a workdir was damaged; the run will not silently start from step 0."""


class CheckpointSaveError(UserError):
    """A checkpoint could not be written (disk full, read-only file system, ...)."""


# ---------------------------------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------------------------------

def _digest(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(folder: str | pathlib.Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """{relative path: SHA-256 hex} of every file under `folder` except the manifest (and its
    temporary file) and the relative paths in `skip`."""
    folder = pathlib.Path(folder)
    digests = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file() and not path.name.startswith((MANIFEST_FILE, f".{MANIFEST_FILE}")) \
                and name not in skip:
            digests[name] = _digest(path)
    return digests


def _write_json(folder: pathlib.Path, record: dict, name: str = MANIFEST_FILE) -> None:
    """Writes folder/name through cnnjax.atomic (its temporary '.NAME.tmp-PID' is not digested):
    never half a manifest."""
    atomic.write_text(folder / name, json.dumps(record, indent=0, sort_keys=True))


def write_manifest(folder: str | pathlib.Path, complete: bool = True) -> None:
    """Writes `folder`/cnnjax_sha256.json with the digests of its files.

    complete=False leaves out ORBAX_BOOKKEEPING (Orbax rewrites its commit time and adds its success
    marker after the callback that writes this partial manifest); `complete_manifest` adds them
    once the checkpoint is committed.
    """
    folder = pathlib.Path(folder)
    _write_json(folder, {"complete": complete,
                         "sha256": file_digests(folder, () if complete else ORBAX_BOOKKEEPING)})


def complete_manifest(folder: str | pathlib.Path) -> None:
    """Adds Orbax's bookkeeping files to a partial manifest whose other files still match it."""
    folder = pathlib.Path(folder)
    record = json.loads((folder / MANIFEST_FILE).read_text())
    if record.get("complete", True) or manifest_problem(folder) is not None:
        return  # complete already, or damaged: leave it for restore to report
    for name in ORBAX_BOOKKEEPING:
        if (folder / name).is_file():
            record["sha256"][name] = _digest(folder / name)
    record["complete"] = True
    _write_json(folder, record)


def manifests_since(directory: str | pathlib.Path) -> int | None:
    """The step from which on every checkpoint of the run in `directory` must have a manifest (the
    run-level record; without one, the oldest step that has a manifest), or None for a workdir written
    before checksums existed: no record and no manifest anywhere."""
    directory = pathlib.Path(directory)
    try:
        return int(json.loads((directory / MARKER_FILE).read_text())["manifests_since_step"])
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError):
        return 0  # a damaged record: every step must prove itself
    return min((int(p.parent.name) for p in directory.glob(f"*/{MANIFEST_FILE}")
                if p.parent.name.isdigit()), default=None)


def mark_manifests(directory: str | pathlib.Path, step: int) -> None:
    """Records, once, that the run writes manifests from `step` on (see `manifests_since`)."""
    directory = pathlib.Path(directory)
    if not (directory / MARKER_FILE).exists():
        _write_json(directory, {"manifests_since_step": int(step)}, MARKER_FILE)


def manifest_problem(folder: str | pathlib.Path) -> str | None:
    """Why `folder` does not match its manifest ('fails its checksum in X', ...); None when every
    file matches. Raises FileNotFoundError when there is no manifest."""
    folder = pathlib.Path(folder)
    try:
        record = json.loads((folder / MANIFEST_FILE).read_text())
        expected = record["sha256"]
        if not isinstance(expected, dict):
            raise TypeError
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError):
        return f"has an unreadable checksum manifest ({MANIFEST_FILE})"
    skip = () if record.get("complete", True) else ORBAX_BOOKKEEPING
    actual = file_digests(folder, skip)
    for name in sorted(expected.keys() | actual.keys()):
        if name not in actual:
            return f"lacks its file {name}"
        if name not in expected:
            return f"has a file its checksums do not list ({name})"
        if actual[name] != expected[name]:
            return f"fails its checksum in {name}"
    return None


class _DropOrbaxRecords(logging.Filter):
    """Drops Orbax's log records (absl logger), which its background save thread also writes: a
    failed save is reported by `Checkpoints` in one line, not as Orbax's multi-page traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "/orbax/" not in record.pathname.replace("\\", "/")


_ORBAX_FILTER = _DropOrbaxRecords()


@contextlib.contextmanager
def quiet_orbax() -> Iterator[None]:
    """Silences absl/Orbax logging and Python's 'Exception ignored' reports while a possibly damaged
    checkpoint is probed: the one-line report says what matters."""
    loggers = [logging.getLogger(name) for name in ("absl", "orbax", "jax")]
    levels = [lg.level for lg in loggers]
    hook = sys.unraisablehook
    try:
        for lg in loggers:
            lg.setLevel(logging.CRITICAL + 1)
        sys.unraisablehook = lambda unraisable: None
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
        sys.unraisablehook = hook


def _path_name(path) -> str:
    """'params/conv1/kernel' for a pytree key path, whatever the container types (a checkpoint's
    metadata stores optax's named tuples as dicts, so attribute and dict keys must compare equal)."""
    parts = []
    for entry in path:
        for attr in ("key", "name", "idx"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
    return "/".join(parts)


def shape_mismatches(saved, target) -> list[str]:
    """Names of the arrays whose saved shape differs from the target's, or that exist on one side only."""
    saved_flat = {_path_name(k): v for k, v in jax.tree_util.tree_leaves_with_path(saved)}
    target_flat = {_path_name(k): v for k, v in jax.tree_util.tree_leaves_with_path(target)}
    problems = []
    for name in sorted(saved_flat.keys() | target_flat.keys()):
        if name not in target_flat:
            problems.append(f"{name} (in checkpoint only)")
        elif name not in saved_flat:
            problems.append(f"{name} (missing from checkpoint)")
        else:
            got, want = (tuple(x.shape if hasattr(x, "shape") else np.shape(x))
                         for x in (saved_flat[name], target_flat[name]))
            if got != want:
                problems.append(f"{name} {got} vs {want}")
    return problems


class Checkpoints:
    """Periodic asynchronous saves into `directory`, keeping the last `keep` and the `keep_best` best.

    `best_metric` names an evaluation metric (e.g. 'eval/top1'); `best_mode` is 'max' or 'min'.
    """

    def __init__(self, directory: str | pathlib.Path, *, keep: int = 3, keep_best: int = 1,
                 best_metric: str = "eval/top1", best_mode: str = "max",
                 use_async: bool = True, read_only: bool = False):
        self.directory = pathlib.Path(directory).absolute()
        self.use_async = use_async
        self.read_only = read_only
        self._saving: int | None = None  # the step whose save is in flight
        self._is_main = jax.process_index() == 0
        logging.getLogger("absl").addFilter(_ORBAX_FILTER)  # idempotent: one filter object
        policies = [checkpoint_managers.LatestN(n=keep)]
        if keep_best > 0 and best_metric:
            policies.append(checkpoint_managers.BestN(
                get_metric_fn=lambda metrics: metrics[best_metric], reverse=best_mode == "min",
                n=keep_best, keep_checkpoints_without_metrics=False))
        # Always Orbax's asynchronous checkpointer: only it runs the callback that writes the
        # manifest before the commit. use_async=False waits for each save to finish (`save`).
        options = ocp.CheckpointManagerOptions(
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=not read_only, cleanup_tmp_directories=not read_only,
            read_only=read_only, todelete_subdir=None if read_only else REMOVED_DIR,
            async_options=None if read_only else ocp.AsyncOptions(
                post_finalization_callback=self._before_commit))
        # Orbax reads every step's metadata here: a damaged one is reported by restore, and a
        # reader retries when a running training removes a step meanwhile (`_retry_listing`).
        self.manager = self._retry_listing(lambda: ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()}))

    def _retry_listing(self, read: Callable):
        """read(), retried a few times on a read-only view: a step that the running training's
        clean-up removes between Orbax's listing and its reading of the step's metadata fails it."""
        for attempt in range(10):
            try:
                with quiet_orbax():
                    return read()
            except Exception:
                if not self.read_only or attempt == 9:
                    raise

    def all_steps(self) -> list[int]:
        """The committed steps; a read-only view lists them afresh each time (a training may be
        saving and removing steps beside it)."""
        if self.read_only:
            self._retry_listing(self.manager.reload)
        with quiet_orbax():
            return sorted(self.manager.all_steps())

    @property
    def damaged_directory(self) -> pathlib.Path:
        return self.directory.parent / f"{self.directory.name}_damaged"

    def _before_commit(self) -> None:
        """Orbax's post-finalization callback (its background thread): the step's files are complete
        in the temporary folder, which is renamed right after; the manifest goes in first."""
        tmp = self.directory / f"{self._saving}{TMP_SUFFIX}"
        if self._is_main and self._saving is not None and tmp.is_dir():
            mark_manifests(self.directory, self._saving)  # before the manifest: never one unrecorded
            write_manifest(tmp, complete=False)

    def _after_commit(self) -> None:
        """Completes the manifest of the finished save with Orbax's bookkeeping files (or writes one
        if the callback could not, e.g. on a storage whose temporary folders are named otherwise)."""
        final = self.directory / str(self._saving)
        if self._is_main and self._saving is not None and final.is_dir():
            if (final / MANIFEST_FILE).exists():
                complete_manifest(final)
            else:
                mark_manifests(self.directory, self._saving)
                write_manifest(final)
        self._saving = None
        self._purge_removed()

    def _purge_removed(self) -> None:
        """Deletes the steps Orbax's clean-up renamed into REMOVED_DIR (by this save or a run killed
        before it could): readers only ever see a step whole or gone."""
        if self._is_main and not self.read_only:
            shutil.rmtree(self.directory / REMOVED_DIR, ignore_errors=True)

    def save(self, step: int, items: dict, meta: dict, metrics: dict | None = None) -> None:
        """Starts an asynchronous save (use_async) or saves and waits; a later save or `wait`
        finishes an asynchronous one. Raises CheckpointSaveError when this or the previous save
        failed."""
        self.wait()
        self._saving = step
        with self._save_errors(step):
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(items), meta=ocp.args.JsonSave(meta)),
                metrics=metrics, force=True)
        if not self.use_async:
            self.wait()

    def check(self) -> None:
        """Raises CheckpointSaveError if the save in flight has already failed (cheap: no waiting)."""
        if self._saving is None:
            return
        with self._save_errors(self._saving):
            self.manager.check_for_errors()
        thread = getattr(self.manager, "_finalize_thread", None)
        finalize = thread.get() if thread is not None and hasattr(thread, "get") else None
        if finalize is not None and not finalize.is_alive():
            self.wait()

    @contextlib.contextmanager
    def _save_errors(self, step: int) -> Iterator[None]:
        try:
            with quiet_orbax():
                yield
        except CheckpointSaveError:
            raise
        except Exception as e:
            self._saving = None
            cause = e
            while cause is not None and not isinstance(cause, OSError):
                cause = cause.__cause__ or cause.__context__
            text = str(e)
            if isinstance(cause, OSError) and cause.errno:
                reason = os.strerror(cause.errno)
            elif "No space left" in text or "RESOURCE_EXHAUSTED" in text:  # TensorStore's words
                reason = os.strerror(errno.ENOSPC)
            elif "Read-only file system" in text:
                reason = os.strerror(errno.EROFS)
            else:
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            last = max((s for s in self.all_steps() if s != step), default=None)
            raise CheckpointSaveError(
                f"could not save the checkpoint at step {step} in {self.directory} ({reason}); "
                f"stopped before training further; the last complete checkpoint is "
                f"{f'step {last}' if last is not None else 'none'}; fix the cause and run the same "
                "command to resume") from None

    def _set_aside(self, name: str, aside_name: str, message: str,
                   warn: Callable[[str], None], then: str = "") -> None:
        """Moves a damaged checkpoint (or a stray entry) out of the way, kept for inspection and never
        deleted, so that the run can fall back to the previous one and later save this step again."""
        aside = self.damaged_directory / f"{aside_name}-{time.time():.0f}"
        while aside.exists():
            aside = aside.with_name(aside.name + "+")
        aside.parent.mkdir(parents=True, exist_ok=True)
        (self.directory / name).rename(aside)
        with quiet_orbax():
            self.manager.reload()
        warn(f"{message}; moved it to {aside}" + (f"; {then}" if then else ""))

    def _set_aside_strays(self, warn: Callable[[str], None]) -> None:
        """Entries named like a step that are not checkpoints (a file '7', a folder Orbax does not
        list) are named once and moved aside."""
        if not self.directory.is_dir():
            return
        steps = set(self.all_steps())
        for entry in sorted(self.directory.iterdir()):
            if entry.name.isdigit() and (not entry.is_dir() or int(entry.name) not in steps):
                kind = "folder" if entry.is_dir() else "file"
                self._set_aside(entry.name, f"{STRAY_PREFIX}{entry.name}",
                                f"{self.directory / entry.name} is a {kind} named like a checkpoint "
                                "step but is not a checkpoint", warn)

    def verify(self, step: int, since: int | None) -> str | None:
        """Why checkpoint `step` cannot be trusted, or None. `since`: the run's first manifested step
        (`manifests_since`); from it on a step without a manifest has lost it."""
        try:
            return manifest_problem(self.directory / str(step))
        except FileNotFoundError:
            if since is not None and step >= since:
                return (f"has lost its checksum manifest ({MANIFEST_FILE}; the run has written one "
                        f"with every step since step {since})")
            return None

    def earlier_damage(self) -> list[str]:
        """Checkpoints set aside by this or an earlier run (not counting stray entries)."""
        if not self.damaged_directory.is_dir():
            return []
        return sorted(p.name for p in self.damaged_directory.iterdir()
                      if not p.name.startswith(STRAY_PREFIX))

    def read_arrays(self, step: int) -> dict:
        """The saved state of `step` as a tree of numpy arrays, with no model or config needed.

        The checkpoint is verified first (no fallback: evaluation reads exactly the step it was
        asked for). When it fails its checksums or cannot be read, the folder is looked at again: a
        step that no longer exists was removed by a running training's clean-up
        (CheckpointVanishedError), one that is still there is damaged (CheckpointDamagedError);
        either is one line, and nothing is moved or deleted.
        """
        try:
            problem = self.verify(step, manifests_since(self.directory))
            if not problem:
                return self._read_state(step)
        except Exception as e:  # a damaged or vanishing checkpoint surfaces as many error types
            problem = f"cannot be read ({_short(e)})"
        if not (self.directory / str(step)).is_dir():
            raise CheckpointVanishedError(self.directory, step, self.all_steps())
        raise CheckpointDamagedError(
            f"the checkpoint at step {step} in {self.directory} {problem}; other steps: "
            f"{', '.join(str(s) for s in self.all_steps() if s != step) or 'none'}")

    def _read_state(self, step: int) -> dict:
        # Restore onto this process's first device, whatever topology the run was saved from.
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        with quiet_orbax():
            target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                                  self.manager.item_metadata(step)["state"])
            restored = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target)))
        return jax.tree.map(np.asarray, restored["state"])

    def wait(self) -> None:
        """Waits for the save in flight; raises CheckpointSaveError if it failed."""
        if self._saving is None:
            return
        step = self._saving
        with self._save_errors(step):
            self.manager.wait_until_finished()
            self.manager.check_for_errors()
        self._after_commit()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            with quiet_orbax():
                self.manager.close()
            self._purge_removed()

    def restore(self, target: dict, step: int | None = None,
                warn: Callable[[str], None] = log.warning, *,
                restart_if_damaged: bool = True) -> tuple[int, dict, dict] | None:
        """(step, items, meta) of the newest readable checkpoint (or exactly `step`), None if none.

        `target` is a pytree of arrays or jax.ShapeDtypeStruct with the shardings to restore onto. A
        checkpoint that fails its checksums or cannot be read is set aside, reported through `warn` in
        one line, and the one before it is tried; one whose shapes do not match `target` raises
        CheckpointMismatchError. When no checkpoint is readable but some were set aside (now or by an
        earlier run), NoReadableCheckpointError is raised unless `restart_if_damaged`.
        """
        self._purge_removed()
        self._set_aside_strays(warn)
        since = manifests_since(self.directory)
        if since is not None and not self.read_only:
            mark_manifests(self.directory, since)  # e.g. a workdir of the version with no record
        steps = self.all_steps()
        if step is not None:
            if step not in steps:
                raise UserError(f"no checkpoint at step {step} in {self.directory}; "
                                f"available steps: {steps or 'none'}")
            steps = [step]
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        remaining = list(steps)
        while remaining:
            candidate = remaining.pop()
            then = (f"falling back to step {remaining[-1]}" if remaining
                    else "no earlier checkpoint is left")

            def damaged(why: str, candidate=candidate, then=then) -> None:
                self._set_aside(str(candidate), str(candidate),
                                f"checkpoint at step {candidate} {why}", warn, then)

            problem = self.verify(candidate, since)
            if problem:
                damaged(problem)
                continue
            with quiet_orbax():
                try:
                    saved = self.manager.item_metadata(candidate)["state"]
                except Exception as e:  # a damaged checkpoint surfaces as many error types
                    damaged(f"is unreadable ({_short(e)})")
                    continue
            if saved is None:
                damaged("has no state")
                continue
            problems = shape_mismatches(saved, abstract)
            if problems:
                raise CheckpointMismatchError(
                    f"checkpoint at step {candidate} in {self.directory} does not match the config: "
                    + "; ".join(problems[:10]) + (" ..." if len(problems) > 10 else ""))
            with quiet_orbax():
                try:
                    restored = self.manager.restore(candidate, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
                except Exception as e:
                    damaged(f"is corrupt ({_short(e)})")
                    continue
            return candidate, restored["state"], dict(restored["meta"] or {})
        if not restart_if_damaged and self.earlier_damage():
            raise NoReadableCheckpointError(
                f"no readable checkpoint in {self.directory}: the damaged ones are in "
                f"{self.damaged_directory}; refusing to start from step 0 over them: pass "
                "--config.restart_if_damaged=true to start afresh")
        return None


def _short(error: BaseException) -> str:
    """'ValueError: first line' cut to 120 characters (TensorStore's messages run to pages)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = text if len(text) <= 120 else text[:117] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
