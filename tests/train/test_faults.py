"""Fault injection on a tiny LeNet-5 run: damaged checkpoints, a second run, a stale lock, bad values, a
mistaken resume, a full disk, a read-only workdir, divergence.

Every trial asserts the one line that reports the fault, the exit code, and that not one byte of the
good checkpoints and of config.json changed (SHA-256 of every file before and after). Runs are shared:
one trained workdir (steps 2, 4, 6) is copied for each trial instead of training again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pathlib
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from cnnjax import cli
from cnnjax import config as config_io
from cnnjax.train import distributed
from cnnjax.train import loop as loop_module
from cnnjax.train.checkpoint import (
    MANIFEST_FILE,
    MARKER_FILE,
    Checkpoints,
    NoReadableCheckpointError,
    manifest_problem,
    write_manifest,
)
from cnnjax.train.loop import build_model, create_train_state, train_and_evaluate
from cnnjax.train.optim import make_optimizer
from cnnjax.train.state import checkpoint_items
from cnnjax.train.workdir import atomic_write_text

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "helpers" / "tiny_config.py")
NOISE = ("Traceback", "TensorStore", "tensorstore", "Exception ignored", "Event loop is closed",
         "absl::", "oneDNN")


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------

def tiny(*overrides: str):
    config = config_io.load_config(TINY)
    config_io.apply_overrides(config, list(overrides))
    return config


def digests(root: pathlib.Path) -> dict[str, str]:
    """SHA-256 of every file under `root` (or of `root` itself), by relative path."""
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def good_bytes(workdir: pathlib.Path, steps=(2, 4)) -> dict:
    """The bytes that a fault must not touch: the good checkpoints and config.json."""
    return {**{s: digests(workdir / "checkpoints" / str(s)) for s in steps},
            "config": digests(workdir / "config.json")}


def run(capfd, workdir: pathlib.Path, *args: str, command: str = "train") -> tuple[int, list, list]:
    """cnnjax.cli.main in this process: (exit code, stdout lines, stderr lines), C-level output
    included (capfd), none of it noise."""
    argv = ["train", TINY, "--workdir", str(workdir), *args] if command == "train" else \
        [command, "--workdir", str(workdir), *args]
    code = cli.main(argv)
    out, err = capfd.readouterr()
    out_lines, err_lines = out.splitlines(), err.splitlines()
    for line in out_lines + err_lines:
        assert not any(word in line for word in NOISE), line
    return code, out_lines, err_lines


def params(workdir: pathlib.Path, step: int | None = None) -> dict:
    ckpts = Checkpoints(workdir / "checkpoints", read_only=True)
    return ckpts.read_arrays(step or max(ckpts.all_steps()))["params"]


def assert_same_tree(a: dict, b: dict) -> None:
    flat_a, flat_b = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [k for k, _ in flat_a] == [k for k, _ in flat_b]
    for (key, x), (_, y) in zip(flat_a, flat_b, strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y)), key


def flip_bit(path: pathlib.Path, offset: int, bit: int = 3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def data_file(step_dir: pathlib.Path) -> pathlib.Path:
    """The largest array data file of a checkpoint (the parameters and momentum)."""
    return max((p for p in (step_dir / "state").rglob("*") if p.is_file() and "/d/" in p.as_posix()),
               key=lambda p: p.stat().st_size)


def copy_run(trained: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    return workdir


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> pathlib.Path:
    """A finished 6-step run: checkpoints at steps 2, 4 and 6, each with its checksum manifest."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    train_and_evaluate(tiny("num_steps=6"), workdir)
    return workdir


@pytest.fixture(scope="module")
def reference(trained, tmp_path_factory) -> dict:
    """The parameters after 8 steps (the trained run resumed at 6), which every recovered run must
    reproduce bit for bit."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    shutil.copytree(trained, workdir)
    train_and_evaluate(tiny(), workdir)
    return params(workdir, 8)


@pytest.fixture(scope="module")
def target(trained) -> dict:
    """What a restore of the tiny run's checkpoints is read into (no training step is compiled)."""
    config = tiny()
    replicated, _ = distributed.data_shardings(distributed.data_mesh())
    tx, _ = make_optimizer(config.optimizer, config.schedule, 16, 8, eval_every_steps=4)
    state = create_train_state(config, build_model(config, 10), tx, (32, 32, 1), replicated)
    return checkpoint_items(state)


def restore(workdir: pathlib.Path, target: dict, **kwargs) -> tuple[int | None, dict | None, list]:
    warned: list[str] = []
    result = Checkpoints(workdir / "checkpoints").restore(target, warn=warned.append, **kwargs)
    return (result[0], result[1], warned) if result else (None, None, warned)


# ---------------------------------------------------------------------------------------------------
# Damaged checkpoints, at the level of restore: many trials, no training
# ---------------------------------------------------------------------------------------------------

FILES = {"array data": data_file, "array metadata": lambda d: d / "state" / "_METADATA",
         "ocdbt manifest": lambda d: d / "state" / "ocdbt.process_0" / "manifest.ocdbt",
         "per-array metadata": lambda d: d / "state" / "array_metadatas" / "process_0",
         "data position": lambda d: d / "meta" / "metadata"}


@pytest.mark.parametrize("name", sorted(FILES))
def test_bit_flips_are_caught_and_the_previous_checkpoint_is_used(name, trained, target, tmp_path):
    """One flipped bit at the first, a middle and the last byte of each file of the newest checkpoint."""
    expected = params(trained, 4)
    for offset_name in ("first", "middle", "last"):
        workdir = copy_run(trained, tmp_path / offset_name)
        before = good_bytes(workdir)
        path = FILES[name](workdir / "checkpoints" / "6")
        size = path.stat().st_size
        flip_bit(path, {"first": 0, "middle": size // 2, "last": size - 1}[offset_name])
        flipped = digests(workdir / "checkpoints" / "6")
        step, items, warned = restore(workdir, target)
        assert step == 4, (name, offset_name, warned)
        assert len(warned) == 1 and "checkpoint at step 6 fails its checksum in " in warned[0]
        assert warned[0].endswith("falling back to step 4"), warned[0]
        assert_same_tree(jax.device_get(items["params"]), expected)
        assert good_bytes(workdir) == before  # 0 bytes lost
        (aside,) = (workdir / "checkpoints_damaged").iterdir()
        assert digests(aside) == flipped  # the damaged one is kept as it was, for inspection


@pytest.mark.parametrize("damage", ["truncate data to half", "truncate data to 0 bytes",
                                    "truncate metadata", "delete data", "delete metadata",
                                    "delete the state folder", "add a file"])
def test_truncations_and_deletions_are_caught(damage, trained, target, tmp_path):
    workdir = copy_run(trained, tmp_path)
    before = good_bytes(workdir)
    step_dir = workdir / "checkpoints" / "6"
    data, meta = data_file(step_dir), step_dir / "state" / "_METADATA"
    if damage == "truncate data to half":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif damage == "truncate data to 0 bytes":
        data.write_bytes(b"")
    elif damage == "truncate metadata":
        meta.write_bytes(meta.read_bytes()[:10])
    elif damage == "delete data":
        data.unlink()
    elif damage == "delete metadata":
        meta.unlink()
    elif damage == "delete the state folder":
        shutil.rmtree(step_dir / "state")
    else:
        (step_dir / "state" / "notes.txt").write_text("x")
    step, _, warned = restore(workdir, target)
    assert step == 4 and len(warned) == 1 and warned[0].startswith("checkpoint at step 6 "), warned
    assert good_bytes(workdir) == before


def test_a_lost_manifest_is_damage_once_the_run_has_written_one(trained, target, tmp_path):
    workdir = copy_run(trained, tmp_path)
    ckpt_dir = workdir / "checkpoints"
    before = good_bytes(workdir, (2, 4))
    assert json.loads((ckpt_dir / MARKER_FILE).read_text()) == {"manifests_since_step": 2}
    # The newest checkpoint without its manifest is not the state of an older workdir: the run has
    # written manifests since step 2, so this one lost it.
    (ckpt_dir / "6" / MANIFEST_FILE).unlink()
    step, _, warned = restore(workdir, target)
    assert step == 4 and len(warned) == 1, warned
    assert "step 6 has lost its checksum manifest" in warned[0] and "since step 2" in warned[0]
    assert good_bytes(workdir, (2, 4)) == before
    # Without the run-level record (a workdir of the version that wrote none) the oldest manifested
    # step stands in for it, and the training writes the record back.
    workdir = copy_run(trained, tmp_path / "no-record")
    (workdir / "checkpoints" / MARKER_FILE).unlink()
    (workdir / "checkpoints" / "6" / MANIFEST_FILE).unlink()
    step, _, warned = restore(workdir, target)
    assert step == 4 and len(warned) == 1 and "step 6 has lost its checksum manifest" in warned[0]
    assert json.loads((workdir / "checkpoints" / MARKER_FILE).read_text()) == \
        {"manifests_since_step": 2}


def test_every_manifest_deleted_is_still_detected(trained, target, tmp_path):
    workdir = copy_run(trained, tmp_path)
    for step in (2, 4, 6):
        (workdir / "checkpoints" / str(step) / MANIFEST_FILE).unlink()
    with pytest.raises(NoReadableCheckpointError):
        restore(workdir, target, restart_if_damaged=False)
    aside = sorted(p.name.split("-")[0] for p in (workdir / "checkpoints_damaged").iterdir())
    assert aside == ["2", "4", "6"]


def test_a_workdir_from_before_manifests_resumes_unverified(trained, reference, target, tmp_path,
                                                           capfd):
    """No manifest on any step and no run-level record: what a workdir written before checksums
    existed holds. It resumes as it always did; its first manifested step starts the record."""
    workdir = copy_run(trained, tmp_path)
    (workdir / "checkpoints" / MARKER_FILE).unlink()
    for step in (2, 4, 6):
        (workdir / "checkpoints" / str(step) / MANIFEST_FILE).unlink()
    for step in (2, 4, 6):  # eval reads every step
        assert_same_tree(params(workdir, step), params(trained, step))
    before = good_bytes(workdir, (4, 6))
    code, out, err = run(capfd, workdir)
    assert code == 0 and err == [] and not any("warning" in line for line in out), out
    assert "resumed from the checkpoint at step 6" in out
    assert_same_tree(params(workdir, 8), reference)
    assert json.loads((workdir / "checkpoints" / MARKER_FILE).read_text()) == \
        {"manifests_since_step": 8}
    assert good_bytes(workdir, (4, 6)) == before
    assert manifest_problem(workdir / "checkpoints" / "8") is None
    # the unverified steps before the record stay readable; step 8 and later must keep a manifest
    (workdir / "checkpoints" / "8" / MANIFEST_FILE).unlink()
    step, _, warned = restore(workdir, target)
    assert step == 6 and len(warned) == 1 and "step 8 has lost its checksum manifest" in warned[0]


def test_an_older_step_without_its_manifest_is_damage(trained, target, tmp_path):
    workdir = copy_run(trained, tmp_path)
    before = good_bytes(workdir, (2,))
    (workdir / "checkpoints" / "4" / MANIFEST_FILE).unlink()
    flip_bit(data_file(workdir / "checkpoints" / "6"), 100)
    step, _, warned = restore(workdir, target)
    assert step == 2 and len(warned) == 2, warned
    assert "step 4 has lost its checksum manifest" in warned[1]
    assert digests(workdir / "checkpoints" / "2") == before[2]


def test_the_manifest_covers_every_file_of_the_step(trained):
    """Orbax's own metadata (_CHECKPOINT_METADATA, commit_success.txt) and the meta item included."""
    for step in (2, 4, 6):
        folder = trained / "checkpoints" / str(step)
        record = json.loads((folder / MANIFEST_FILE).read_text())
        files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert record["complete"] is True
        assert set(record["sha256"]) == files - {MANIFEST_FILE}
        assert {"_CHECKPOINT_METADATA", "commit_success.txt", "meta/metadata"} <= set(record["sha256"])


def test_kill_right_after_the_commit_leaves_a_verifiable_checkpoint(trained, target, tmp_path):
    """A kill -9 between Orbax's rename and the completion of the manifest leaves the manifest that
    was written before the rename (it lacks only Orbax's bookkeeping files): still verified."""
    workdir = copy_run(trained, tmp_path)
    write_manifest(workdir / "checkpoints" / "6", complete=False)
    assert json.loads((workdir / "checkpoints" / "6" / MANIFEST_FILE).read_text())["complete"] is False
    step, _, warned = restore(workdir, target)
    assert step == 6 and warned == []
    flip_bit(data_file(workdir / "checkpoints" / "6"), 7)  # and it still catches damage
    step, _, warned = restore(workdir, target)
    assert step == 4 and len(warned) == 1


KILL_AFTER_COMMIT = r"""
import os, signal, sys
from cnnjax.train import checkpoint, config_io
from cnnjax.train.loop import train_and_evaluate

complete = checkpoint.Checkpoints._after_commit

def kill_at_step_4(self):  # Orbax has renamed the folder; the manifest is not completed yet
    if self._saving == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    complete(self)

checkpoint.Checkpoints._after_commit = kill_at_step_4
train_and_evaluate(config_io.load_config(sys.argv[1]), sys.argv[2])
"""


def test_kill_9_right_after_a_commit_resumes_bit_identical(reference, tmp_path, capfd):
    workdir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_COMMIT, TINY, str(workdir)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    manifest = json.loads((workdir / "checkpoints" / "4" / MANIFEST_FILE).read_text())
    assert manifest["complete"] is False  # killed in the window the partial manifest covers
    before = good_bytes(workdir)
    code, out, err = run(capfd, workdir)
    assert code == 0 and err == [] and not any("warning" in line for line in out), out
    assert "resumed from the checkpoint at step 4" in out
    assert good_bytes(workdir) == before
    assert_same_tree(params(workdir, 8), reference)


def test_stray_entries_named_like_steps_are_named_once(trained, target, tmp_path):
    workdir = copy_run(trained, tmp_path)
    before = good_bytes(workdir, (2, 4, 6))
    (workdir / "checkpoints" / "12").write_text("not a checkpoint")
    (workdir / "checkpoints" / "10").mkdir()
    step, _, warned = restore(workdir, target)
    assert step == 6 and good_bytes(workdir, (2, 4, 6)) == before
    assert len(warned) == 2 and all("named like a checkpoint step" in w or "step 10" in w
                                    for w in warned), warned
    step, _, warned = restore(workdir, target)
    assert step == 6 and warned == []  # named once: set aside, not reported again


def test_every_checkpoint_damaged_refuses_a_silent_restart(trained, target, tmp_path):
    workdir = copy_run(trained, tmp_path)
    for step in (2, 4, 6):
        flip_bit(data_file(workdir / "checkpoints" / str(step)), 50)
    with pytest.raises(NoReadableCheckpointError, match="restart_if_damaged=true"):
        restore(workdir, target, restart_if_damaged=False)
    assert len(list((workdir / "checkpoints_damaged").iterdir())) == 3
    assert restore(workdir, target, restart_if_damaged=True)[0] is None


# ---------------------------------------------------------------------------------------------------
# End to end through the command line (exit codes, one line, bit-identical recovery)
# ---------------------------------------------------------------------------------------------------

def test_bit_flip_run_resumes_bit_identical_in_one_line(trained, reference, tmp_path, capfd):
    workdir = copy_run(trained, tmp_path)
    before = good_bytes(workdir)
    flip_bit(data_file(workdir / "checkpoints" / "6"), 4096)
    code, out, err = run(capfd, workdir, "--step", "6", command="eval")  # eval does not fall back
    assert code == 2 and len(err) == 1 and "step 6" in err[0] and "fails its checksum" in err[0]
    code, out, err = run(capfd, workdir)
    assert code == 0 and err == []
    reports = [line for line in out if "step 6" in line and "checkpoints_damaged" in line]
    assert len(reports) == 1 and "resumed from the checkpoint at step 4" in out
    assert good_bytes(workdir) == before
    assert_same_tree(params(workdir, 8), reference)


def test_newest_manifest_deleted_and_a_byte_flipped_is_set_aside(trained, reference, tmp_path,
                                                                  capfd):
    """Issue 20, defect 1: the newest step's manifest deleted and one byte of its largest data file
    changed. It was resumed from silently; it is set aside in one line and step 4 is used."""
    workdir = copy_run(trained, tmp_path)
    before = good_bytes(workdir)
    (workdir / "checkpoints" / "6" / MANIFEST_FILE).unlink()
    path = data_file(workdir / "checkpoints" / "6")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    code, out, err = run(capfd, workdir, "--step", "6", command="eval")  # eval: one line, no fallback
    assert code == 2 and len(err) == 1 and "step 6" in err[0] and "lost its checksum manifest" in err[0]
    code, out, err = run(capfd, workdir)
    assert code == 0 and err == []
    warnings = [line for line in out if line.startswith("warning")]
    assert len(warnings) == 1 and "step 6 has lost its checksum manifest" in warnings[0], out
    assert "resumed from the checkpoint at step 4" in out
    assert good_bytes(workdir) == before
    assert_same_tree(params(workdir, 8), reference)


def test_all_damaged_exits_2_until_told_to_restart(trained, reference, tmp_path, capfd):
    workdir = copy_run(trained, tmp_path)
    config_before = digests(workdir / "config.json")
    for step in (2, 4, 6):
        flip_bit(data_file(workdir / "checkpoints" / str(step)), 1000)
    damaged = {s: digests(workdir / "checkpoints" / str(s)) for s in (2, 4, 6)}
    code, out, err = run(capfd, workdir)
    assert code == 2 and len(err) == 1 and "--config.restart_if_damaged=true" in err[0]
    assert sum("checkpoints_damaged" in line for line in out) == 3
    code, out, err = run(capfd, workdir)  # again: still refused, nothing reported twice
    assert code == 2 and len(err) == 1 and not any("checkpoints_damaged/" in x for x in out)
    kept = sorted(json.dumps(digests(p)) for p in (workdir / "checkpoints_damaged").iterdir())
    assert kept == sorted(json.dumps(d) for d in damaged.values())  # every damaged byte kept
    code, out, err = run(capfd, workdir, "--config.restart_if_damaged=true")
    assert code == 0 and err == []
    assert_same_tree(params(workdir, 8), reference)
    assert digests(workdir / "config.json") == config_before


def test_mistaken_resume_and_bad_values_change_no_file(trained, tmp_path, capfd):
    workdir = copy_run(trained, tmp_path)
    before = digests(workdir)
    cases = {("--config.model.name=smallcnn",): "model.name 'lenet5' -> 'smallcnn'",
             ("--config.data.channels=3",): "data.channels 1 -> 3",
             ("--config.batch_size=0",): "config.batch_size=0 ",
             ("--config.batch_size=-5",): "config.batch_size=-5 ",
             ("--config.num_steps=-3",): "config.num_steps=-3 ",
             ("--config.checkpoint_every_steps=0",): "config.checkpoint_every_steps=0 ",
             ("--config.log_every_steps=0",): "config.log_every_steps=0 ",
             ("--config.keep_checkpoints=0",): "config.keep_checkpoints=0 ",
             ("--config.batch_size=512",): "at most the 256 examples"}
    for args, expected in cases.items():
        code, out, err = run(capfd, workdir, *args)
        assert (code, out, len(err)) == (2, [], 1) and expected in err[0], (args, err)
    assert digests(workdir) == before  # not one file written, changed or removed
    code, out, err = run(capfd, tmp_path / "new", "--config.batch_size=0")
    assert code == 2 and len(err) == 1 and not (tmp_path / "new").exists()


def no_work_allowed(monkeypatch) -> None:
    """Makes any start of the run's work (state, compile, data) fail the test: a refusal must come
    before it. (A wall-clock bound would say the same, and fail on a loaded machine.)"""
    def work(*args, **kwargs):
        raise AssertionError("the run started its work before refusing")
    monkeypatch.setattr(loop_module, "_train_and_evaluate", work)


def test_huge_batch_on_mnist_is_refused_at_once(tmp_path, capfd, monkeypatch):
    no_work_allowed(monkeypatch)
    code = cli.main(["train", str(REPO / "configs" / "lenet5_mnist.py"), "--workdir",
                     str(tmp_path / "w"), "--config.batch_size=100000"])
    err = capfd.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1 and "at most the 60000 examples" in err[0]
    assert not (tmp_path / "w").exists()


def _hold_lock(workdir: pathlib.Path) -> subprocess.Popen:
    """Another process holding the workdir's lock, as a run would."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom cnnjax.train.workdir import WorkdirLock\n"
         f"WorkdirLock({str(workdir)!r}).acquire()\nprint('locked', flush=True)\ntime.sleep(120)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_is_refused_and_a_stale_lock_does_not_block(trained, reference, tmp_path, capfd,
                                                                 monkeypatch):
    workdir = copy_run(trained, tmp_path)
    before = digests(workdir)
    holder = _hold_lock(workdir)
    try:
        with monkeypatch.context() as m:
            no_work_allowed(m)
            code, out, err = run(capfd, workdir)
        assert code == 2 and out == [] and len(err) == 1, err
        assert f"in use by another run (pid {holder.pid} on " in err[0]
        assert digests(workdir) == {**before, "run.lock": digests(workdir)["run.lock"]}
        code, out, err = run(capfd, workdir, command="eval")  # eval reads a locked workdir
        assert code == 0 and err == [] and any("top-1 accuracy" in line for line in out)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (workdir / "run.lock").is_file()  # left behind by the killed holder: stale, not held
    code, out, err = run(capfd, workdir)
    assert code == 0 and err == []
    assert "resumed from the checkpoint at step 6" in out
    assert_same_tree(params(workdir, 8), reference)
    assert digests(workdir)["config.json"] == before["config.json"]
    history = (workdir / "config_history.jsonl").read_text().splitlines()
    assert len(history) == 1 and json.loads(history[0])["changed"] == {"num_steps": [6, 8]}


def test_divergence_exits_3_and_keeps_the_good_checkpoints(trained, tmp_path, capfd):
    workdir = copy_run(trained, tmp_path)
    before = good_bytes(workdir, (2, 4, 6))
    code, _, err = run(capfd, workdir, "--config.num_steps=10", "--config.schedule.base_lr=1e30")
    assert code == 3 and len(err) == 1 and "last good checkpoint: step" in err[0], err
    assert good_bytes(workdir, (2, 4, 6)) == before


# ---------------------------------------------------------------------------------------------------
# File systems: full, read-only (need mount; skipped with the reason where it is refused)
# ---------------------------------------------------------------------------------------------------

def _mount(args: list[str]) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"mount {' '.join(args)} refused: {proc.stderr.strip()}")


@contextlib.contextmanager
def mounted(point: pathlib.Path, args: list[str]):
    point.mkdir(parents=True, exist_ok=True)
    _mount([*args, str(point)])
    try:
        yield point
    finally:
        if subprocess.run(["umount", str(point)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(point)], capture_output=True)  # files still open


def test_full_disk_stops_in_one_line_and_resumes_after(reference, tmp_path, capfd):
    with mounted(tmp_path / "small", ["-t", "tmpfs", "-o", "size=1600k", "tmpfs"]) as disk:
        workdir = disk / "run"
        code, _, err = run(capfd, workdir, "--config.num_steps=8", "--config.async_checkpoints=true")
        assert code == 2 and len(err) == 1 and "No space left on device" in err[0], err
        saved = Checkpoints(workdir / "checkpoints", read_only=True).all_steps()
        assert saved and max(saved) < 8
        for step in saved:  # what was committed is whole and verifies
            assert manifest_problem(workdir / "checkpoints" / str(step)) is None
        config_text = (workdir / "config.json").read_text()
        assert config_io.load_saved_config(workdir).num_steps == 8
        before = good_bytes(workdir, saved)
        # config.json is never left half-written: a write that does not fit leaves the old file
        filler = disk / "filler"
        with contextlib.suppress(OSError):
            filler.write_bytes(b"\0" * (2 << 20))
        with pytest.raises(OSError):
            atomic_write_text(workdir / "config.json", config_text * 1000)
        assert (workdir / "config.json").read_text() == config_text
        assert not list(workdir.glob(".config.json.tmp*"))
        filler.unlink()
        _mount(["-o", "remount,size=16m", str(disk)])
        code, _, err = run(capfd, workdir)
        assert code == 0 and err == [], err
        assert good_bytes(workdir, saved) == before
        assert_same_tree(params(workdir, 8), reference)


def test_read_only_workdir_fails_before_any_work(trained, tmp_path, capfd, monkeypatch):
    workdir = copy_run(trained, tmp_path)
    before = digests(workdir)
    with mounted(tmp_path / "ro", ["--bind", str(workdir)]) as view:
        _mount(["-o", "remount,bind,ro", str(view)])
        with monkeypatch.context() as m:
            no_work_allowed(m)
            code, out, err = run(capfd, view, "--config.num_steps=10")
        assert (code, out, len(err)) == (2, [], 1) and "read-only file system" in err[0], err
        code, out, err = run(capfd, view, command="eval")
        assert code == 2 and len(err) == 1 and "read-only file system" in err[0], err
        assert not any("top-1" in line for line in out)  # refused before evaluating
    assert digests(workdir) == before
    missing = tmp_path / "file" / "run"
    (tmp_path / "file").write_text("a file where a folder should be")
    code, out, err = run(capfd, missing)
    assert code == 2 and len(err) == 1 and "is not a directory" in err[0], err

