"""eval and predict beside a running training (issue 20, defect 2): a step that the training's clean-up
(keep_checkpoints) removes while a reader reads it is not damage. The removal is simulated
deterministically (the step's folder renamed away, as Orbax's clean-up does, at each point of the read),
then raced for real against a training that checkpoints every step and keeps 2."""

from __future__ import annotations

import hashlib
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from cnnjax import cli, evaluate
from cnnjax.errors import EXIT_PREEMPTED, UserError
from cnnjax.evaluate.restore import VANISHED_TRIES
from cnnjax.train import checkpoint, config_io
from cnnjax.train.checkpoint import (
    REMOVED_DIR,
    CheckpointDamagedError,
    Checkpoints,
    CheckpointVanishedError,
    manifest_problem,
)
from cnnjax.train.loop import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "helpers" / "tiny_config.py")


def tiny(*overrides: str):
    config = config_io.load_config(TINY)
    config_io.apply_overrides(config, list(overrides))
    return config


def digests(root: pathlib.Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> pathlib.Path:
    """A finished 6-step run: checkpoints at steps 2, 4 and 6 (keep_checkpoints=10)."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    train_and_evaluate(tiny("num_steps=6"), workdir)
    return workdir


@pytest.fixture
def workdir(trained, tmp_path) -> pathlib.Path:
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def remove_step(workdir: pathlib.Path, step: int) -> None:
    """What the training's clean-up does to a step: one rename out of the listing, then deletion."""
    removed = workdir / "checkpoints" / REMOVED_DIR
    removed.mkdir(exist_ok=True)
    (workdir / "checkpoints" / str(step)).rename(removed / str(step))


PHASES = ("before the checksums", "between two files of the checksums", "while Orbax reads it")


def vanish_during_read(monkeypatch, workdir: pathlib.Path, step: int, phase: str) -> None:
    """Removes `step` once, at `phase` of the first read of it."""
    done = []

    def once(folder: pathlib.Path) -> None:
        if not done and str(step) in pathlib.Path(folder).parts[-4:]:
            done.append(True)
            remove_step(workdir, step)

    if phase == "before the checksums":
        original = checkpoint.manifest_problem

        def hooked(folder):
            once(folder)
            return original(folder)
        monkeypatch.setattr(checkpoint, "manifest_problem", hooked)
    elif phase == "between two files of the checksums":
        original_digest = checkpoint._digest

        def hooked_digest(path):
            result = original_digest(path)
            once(path)
            return result
        monkeypatch.setattr(checkpoint, "_digest", hooked_digest)
    else:
        original_read = Checkpoints._read_state

        def hooked_read(self, s):
            once(self.directory / str(s))
            return original_read(self, s)
        monkeypatch.setattr(Checkpoints, "_read_state", hooked_read)


@pytest.mark.parametrize("phase", PHASES)
def test_a_step_removed_while_it_is_read_is_not_damage(phase, workdir, monkeypatch):
    before = digests(workdir / "checkpoints" / "6")
    vanish_during_read(monkeypatch, workdir, 6, phase)
    with pytest.raises(CheckpointVanishedError) as caught:
        Checkpoints(workdir / "checkpoints", read_only=True).read_arrays(6)
    assert caught.value.step == 6 and caught.value.steps == [2, 4]
    assert "\n" not in str(caught.value) and "damaged" not in str(caught.value)
    assert not (workdir / "checkpoints_damaged").exists()  # a reader sets nothing aside
    assert digests(workdir / "checkpoints" / REMOVED_DIR / "6") == before  # nor changes anything


def test_a_step_damaged_in_place_is_still_damage(workdir):
    """A folder that is still there when the read fails is damaged: the clean-up never leaves one
    half-deleted in place."""
    folder = workdir / "checkpoints" / "6"
    data = max((p for p in (folder / "state").rglob("*") if p.is_file()),
               key=lambda p: p.stat().st_size)
    data.unlink()
    with pytest.raises(CheckpointDamagedError, match=r"step 6 .* lacks its file state/"):
        Checkpoints(workdir / "checkpoints", read_only=True).read_arrays(6)


def eval_lines(capsys, *args: str) -> tuple[int, list[str], list[str]]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


@pytest.mark.parametrize("phase", PHASES)
def test_eval_latest_reads_the_newest_step_that_still_exists(phase, workdir, monkeypatch, capsys):
    vanish_during_read(monkeypatch, workdir, 6, phase)
    code, out, err = eval_lines(capsys, "eval", "--workdir", str(workdir))
    assert code == 0 and err == [], err
    assert out[0].startswith(f"{workdir} at step 4,"), out
    assert (workdir / "eval_4_1crop.json").is_file() and not (workdir / "checkpoints_damaged").exists()


def test_eval_of_a_numbered_step_that_vanishes_says_so_in_one_line(workdir, monkeypatch, capsys):
    vanish_during_read(monkeypatch, workdir, 6, "while Orbax reads it")
    code, _, err = eval_lines(capsys, "eval", "--workdir", str(workdir), "--step", "6")
    assert code == 2 and len(err) == 1, err
    assert "step 6" in err[0] and "removed by the running training's clean-up " \
        "(keep_checkpoints=10)" in err[0] and err[0].endswith("steps now: 2, 4"), err


def test_eval_all_skips_a_step_that_vanishes(workdir, monkeypatch, capsys):
    vanish_during_read(monkeypatch, workdir, 4, "before the checksums")
    code, out, err = eval_lines(capsys, "eval", "--workdir", str(workdir), "--all")
    assert code == 0 and err == [], err
    assert sum("step 4: removed by the running training's clean-up" in line for line in out) == 1
    assert [line.split(" at step ")[1].split(",")[0] for line in out if " at step " in line] == \
        ["2", "6"]


def test_predict_reads_the_newest_step_that_still_exists(workdir, tmp_path, monkeypatch, capsys):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32), np.uint8), mode="L").save(image)
    vanish_during_read(monkeypatch, workdir, 6, "while Orbax reads it")
    code, out, err = eval_lines(capsys, "predict", "--workdir", str(workdir), str(image))
    assert code == 0 and err == [] and out[0] == f"{workdir} at step 4:", (out, err)


def test_a_reader_that_keeps_losing_the_race_gives_up_in_one_line(workdir, monkeypatch):
    """A training that removes every step before it can be read: a bounded number of tries, then
    one line that is not a damage claim."""
    run = evaluate.open_run(workdir)
    tried = []

    def always_gone(self, step):
        tried.append(step)
        raise CheckpointVanishedError(self.directory, step, [])
    monkeypatch.setattr(Checkpoints, "read_arrays", always_gone)
    with pytest.raises(UserError, match=f"removed {VANISHED_TRIES} checkpoints in a row") as caught:
        evaluate.restore_step(run, "latest", None, {}, None)
    assert tried == [6] * VANISHED_TRIES and "\n" not in str(caught.value)


def test_the_clean_up_removes_whole_steps_by_renaming_them(tmp_path, monkeypatch):
    """Each step the keep_checkpoints clean-up removes leaves the listing whole (it still verifies
    against its manifest in REMOVED_DIR), and REMOVED_DIR is emptied after each save."""
    seen: list[tuple[str, str | None]] = []
    original = Checkpoints._purge_removed

    def inspect(self):
        removed = self.directory / REMOVED_DIR
        for folder in sorted(removed.iterdir()) if removed.is_dir() else []:
            seen.append((folder.name, manifest_problem(folder)))
        original(self)
    monkeypatch.setattr(Checkpoints, "_purge_removed", inspect)
    workdir = tmp_path / "run"
    train_and_evaluate(tiny("num_steps=8", "keep_checkpoints=2", "keep_best=0"), workdir)
    assert seen == [("2", None), ("4", None)]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == \
        ["6", "8", "cnnjax_checksums.json"]


def test_eval_in_a_loop_beside_a_training_that_keeps_2(tmp_path, capfd):
    """A real race: every eval either evaluates a step or says there is no checkpoint yet.

    The training has more steps than the race needs and is stopped (SIGTERM, a clean preemption)
    once 3 evals have succeeded: a fixed number of steps could end before 3 evals on a fast machine.
    """
    workdir, log = tmp_path / "run", tmp_path / "train.log"
    with open(log, "w") as stderr:  # a file, not a pipe that nobody reads while the loop runs
        train = subprocess.Popen(
            [sys.executable, "-m", "cnnjax.cli", "train", TINY, "--workdir", str(workdir),
             "--config.num_steps=100000", "--config.checkpoint_every_steps=1",
             "--config.keep_checkpoints=2", "--config.keep_best=0", "--config.log_every_steps=10",
             "--config.eval_every_steps=1000000", "--config.async_checkpoints=true"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    outcomes = []
    deadline = time.monotonic() + 600
    try:
        while (train.poll() is None and time.monotonic() < deadline
               and sum(code == 0 for code, _ in outcomes) < 3):
            if not (workdir / "config.json").is_file():
                time.sleep(0.1)
                continue
            code = cli.main(["eval", "--workdir", str(workdir)])
            err = capfd.readouterr().err
            outcomes.append((code, err.strip()))
            assert code == 0 or "no checkpoints in" in err or "no complete checkpoints" in err, err
            assert err == "" or code != 0, err  # no noise beside a success
        assert train.poll() is None, log.read_text()[-2000:]  # still training: the race was real
        train.terminate()
        train.wait(timeout=300)
    finally:
        if train.poll() is None:
            train.kill()
        train.wait()
    assert train.returncode == EXIT_PREEMPTED, log.read_text()[-2000:]
    assert sum(code == 0 for code, _ in outcomes) >= 3, outcomes  # the race was actually run
    assert not (workdir / "checkpoints_damaged").exists()
