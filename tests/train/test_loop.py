"""The training loop end to end on a tiny synthetic run: metrics, resumption, preemption, failures.

Resumed runs must end bit-identical to an uninterrupted run on the CPU.
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from cnnjax import config as config_io
from cnnjax.config import ResumeMismatchError
from cnnjax.train.checkpoint import CheckpointMismatchError, Checkpoints
from cnnjax.train.loop import TrainingDivergedError, train_and_evaluate
from cnnjax.train.metrics import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "helpers" / "tiny_config.py")


def tiny(*overrides: str, model: str | None = None):
    config = config_io.load_config(TINY + (f":{model}" if model else ""))
    config_io.apply_overrides(config, list(overrides))
    return config


def final_params(workdir: pathlib.Path) -> dict:
    ckpts = Checkpoints(workdir / "checkpoints")
    return ckpts.read_arrays(max(ckpts.all_steps()))


def assert_same_params(a: dict, b: dict) -> None:
    flat_a = {k: v for k, v in _flatten(a["params"])}
    flat_b = {k: v for k, v in _flatten(b["params"])}
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:
        assert np.array_equal(flat_a[key], flat_b[key]), key


def _flatten(tree, prefix=""):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}/")
        else:
            yield f"{prefix}{k}", v


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pathlib.Path:
    """One uninterrupted 8-step run that the resumption tests compare with."""
    workdir = tmp_path_factory.mktemp("reference")
    train_and_evaluate(tiny(), workdir)
    return workdir


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_run_writes_metrics_checkpoints_config_and_tensorboard(reference):
    records = read_metrics(reference)
    keys = set().union(*records)
    assert {"train/loss", "train/top1", "train/top5", "train/lr", "train/images_per_sec",
            "eval/top1", "eval/top5", "eval/loss", "compile_seconds"} <= keys
    assert [r["step"] for r in records if "eval/top1" in r] == [4, 8]
    assert all(r["eval/examples"] == 256 for r in records if "eval/examples" in r)
    assert Checkpoints(reference / "checkpoints").all_steps() == [2, 4, 6, 8]
    assert config_io.load_saved_config(reference).num_steps == 8
    assert any((reference / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_rerun_of_a_finished_run_does_nothing(reference, capsys):
    before = len(read_metrics(reference))
    train_and_evaluate(tiny(), reference)
    assert "already finished" in capsys.readouterr().out
    assert len(read_metrics(reference)) == before


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_resume_after_stop_is_bit_identical(reference, tmp_path):
    train_and_evaluate(tiny("num_steps=5"), tmp_path)  # stops (and saves) at step 5
    train_and_evaluate(tiny(), tmp_path)               # resumes at 5, ends at 8
    assert_same_params(final_params(tmp_path), final_params(reference))


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(reference, tmp_path, capsys):
    train_and_evaluate(tiny("num_steps=6"), tmp_path)
    for path in (tmp_path / "checkpoints" / "6").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\0garbage")
    train_and_evaluate(tiny(), tmp_path)
    out = capsys.readouterr().out
    assert "step 6" in out and "falling back to step 4" in out
    assert "resumed from the checkpoint at step 4" in out
    assert_same_params(final_params(tmp_path), final_params(reference))
    assert len(list((tmp_path / "checkpoints_damaged").iterdir())) == 1  # kept, not deleted


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_nan_loss_stops_and_keeps_the_good_checkpoint(tmp_path):
    train_and_evaluate(tiny("num_steps=4"), tmp_path)
    with pytest.raises(TrainingDivergedError, match=r"loss is .* at step \d+; stopped without saving"
                                                    r" \(last good checkpoint: step \d+\)") as err:
        train_and_evaluate(tiny("schedule.base_lr=1e30"), tmp_path)
    nan_step = int(str(err.value).split(" at step ")[1].split(";")[0])
    ckpts = Checkpoints(tmp_path / "checkpoints")
    assert 4 in ckpts.all_steps() and max(ckpts.all_steps()) < nan_step
    for step in ckpts.all_steps():  # every checkpoint left behind is finite: none was overwritten
        assert all(np.isfinite(v).all() for _, v in _flatten(ckpts.read_arrays(step)["params"]))


def test_restoring_into_a_different_model_names_the_parameters(tmp_path):
    train_and_evaluate(tiny("num_steps=2"), tmp_path)
    config = tiny("num_steps=4")
    config.data.num_classes = 7
    with pytest.raises(ResumeMismatchError, match=r"data.num_classes 10 -> 7"):
        train_and_evaluate(config, tmp_path)  # refused by the saved config, before anything is read
    (tmp_path / "config.json").unlink()  # without it, the checkpoint's own shapes still refuse
    with pytest.raises(CheckpointMismatchError,
                       match=r"does not match the config: .*params/output/kernel \(84, 10\) vs \(84, 7\)"):
        train_and_evaluate(config, tmp_path)


def test_a_start_that_failed_before_its_first_step_binds_nothing(tmp_path):
    """config.json of a workdir with no checkpoint and no metric describes no run: a corrected
    command may change what a real run's checkpoints would depend on, and its config replaces it
    (and the stale history). Once a metric is written, the same change is refused."""
    from cnnjax.train import workdir as wd

    first = tiny("num_steps=2")
    wd.open_workdir(first, tmp_path).release()          # as a start that then failed
    (tmp_path / wd.HISTORY_FILE).write_text('{"changed": {"seed": [0, 1]}}\n')
    (tmp_path / "checkpoints").mkdir()                  # created, still empty
    second = tiny("num_steps=2")
    second.data.num_classes = 7
    assert wd.check_resume(second, tmp_path) is None
    wd.open_workdir(second, tmp_path).release()
    assert config_io.load_saved_config(tmp_path).data.num_classes == 7
    assert not (tmp_path / wd.HISTORY_FILE).exists()
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 2.3}\n')
    with pytest.raises(ResumeMismatchError, match=r"data.num_classes 7 -> 10"):
        wd.check_resume(tiny("num_steps=2"), tmp_path)


def _cli(workdir, *overrides, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "cnnjax.cli", "train", TINY, "--workdir", str(workdir), *overrides],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})})


def _wait_for_checkpoint(workdir: pathlib.Path, proc: subprocess.Popen, timeout=120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        # Only finished checkpoints: orbax writes into '<step>.orbax-checkpoint-tmp-*' and renames.
        steps = [p for p in (workdir / "checkpoints").glob("*") if p.name.isdigit()]
        if steps:
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended before its first checkpoint:\n{proc.stdout.read()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no checkpoint appeared")


LONG = ("--config.num_steps=300", "--config.checkpoint_every_steps=5", "--config.eval_every_steps=300",
        "--config.log_every_steps=50")


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory) -> pathlib.Path:
    workdir = tmp_path_factory.mktemp("long_reference")
    train_and_evaluate(tiny(*(o[len("--config."):] for o in LONG)), workdir)
    return workdir


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_kill_9_then_resume_is_bit_identical(long_reference, tmp_path):
    proc = _cli(tmp_path, *LONG)
    _wait_for_checkpoint(tmp_path, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = Checkpoints(tmp_path / "checkpoints").all_steps()
    assert killed_at and max(killed_at) < 300, "the run finished before it could be killed"
    train_and_evaluate(tiny(*(o[len("--config."):] for o in LONG)), tmp_path)
    assert_same_params(final_params(tmp_path), final_params(long_reference))


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_sigterm_saves_and_exits_cleanly(long_reference, tmp_path):
    proc = _cli(tmp_path, *LONG)
    _wait_for_checkpoint(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 75, out  # EXIT_PREEMPTED: saved, run again to resume
    assert "SIGTERM: saved the checkpoint at step" in out
    steps = Checkpoints(tmp_path / "checkpoints").all_steps()
    assert max(steps) < 300, "SIGTERM came after the run had finished"
    train_and_evaluate(tiny(*(o[len("--config."):] for o in LONG)), tmp_path)
    assert_same_params(final_params(tmp_path), final_params(long_reference))


def test_cli_config_errors_are_one_line(tmp_path):
    proc = _cli(tmp_path, "--config.optimizer.momentm=0.5")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown config key 'optimizer.momentm'" in lines[0]
    assert not (tmp_path / "checkpoints").exists()


# Float32 error bounds for the 1- vs 8-device comparison (u = 2**-24, the unit roundoff).
# The two runs compute the same sums in different orders: one device sums over the whole batch, eight
# devices form partial sums of 2 examples each and all-reduce them, and XLA picks different conv
# kernels for different per-device batch sizes, so no CPU gives bit-equal results. Rounding a K-term
# sum in another order moves it by at most lambda * sqrt(K) * u * sum|t_k| with probability
# 1 - 2 exp(-lambda**2 / 2) (Higham & Mary 2019, probabilistic rounding error analysis); lambda = 6.
# The largest reductions are the stem's batch-norm and kernel-gradient sums over B*H*W = 16*32*32 =
# 16384 positions, and such errors compound through the L = 20 layers of resnet20:
#   relative to sum|t|:  L * lambda * sqrt(16384) * u = 20 * 6 * 128 * 6.0e-8 = 9.2e-4.
# The loss (a sum of positive cross-entropy terms) has no cancellation: rtol 1e-3.
# Gradient entries cancel: back-propagation through each batch norm gives cotangents with zero mean
# per channel, so a channel's sum behaves like a sum of random signs, |sum t| ~ sqrt(K) * |t| against
# sum|t| ~ K * |t|: a ratio of sqrt(16384) = 128, which makes the bound 128 * 9.2e-4 = 0.12 relative to
# the gradient itself (a batch-norm bias is where this bites). Arrays are therefore compared in the L2
# norm, relative, at 0.125. That is still 50x below what a data-parallel bug does: a gradient summed
# instead of averaged over 8 devices is off by 7 (700%), batch-norm statistics per device instead of
# global change the first loss by more than 1e-3 (checked with bn_stats='device'), and devices fed the
# same examples give unrelated gradients.
MULTI_DEVICE_LOSS_RTOL = 1e-3
MULTI_DEVICE_ARRAY_RTOL = 0.125


def _relative_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.finfo(np.float32).tiny))


def assert_same_training(one: dict, many: dict, rtol: float = MULTI_DEVICE_ARRAY_RTOL) -> None:
    """The gradient information of two checkpoints after the same steps agrees array by array: SGD's
    momentum traces (sums of the gradients), and what the batch-norm running statistics moved from
    their initial values (mean 0, var 1). Parameters themselves are not compared: their initial values
    dominate them and would hide an error in the updates."""
    flat = {side: dict(jax.tree_util.tree_leaves_with_path(tree)) for side, tree in
            (("one", one), ("many", many))}
    assert flat["one"].keys() == flat["many"].keys()
    compared = 0
    for path, a in flat["one"].items():
        name = jax.tree_util.keystr(path)
        if "trace" in name:
            a, b = a, flat["many"][path]
        elif "batch_stats" in name:
            start = 1.0 if "var" in name else 0.0
            a, b = a - start, flat["many"][path] - start
        else:
            continue
        error = _relative_l2(a, b)
        assert error <= rtol, f"{name}: relative L2 difference {error:.3g} > {rtol}"
        compared += 1
    assert compared > 0


def _train_on_devices(tmp_path: pathlib.Path, devices: int, *overrides: str) -> tuple[dict, list]:
    workdir = tmp_path / f"d{devices}{'-'.join(overrides)}"
    proc = subprocess.run(
        [sys.executable, "-m", "cnnjax.cli", "train", f"{TINY}:resnet20", "--workdir", str(workdir),
         "--config.num_steps=2", "--config.eval_every_steps=2", "--config.log_every_steps=1",
         "--config.schedule.base_lr=0.01", *overrides],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{devices} cpu device(s)" in proc.stdout
    losses = [r["train/loss"] for r in read_metrics(workdir) if "train/loss" in r]
    state = final_params(workdir)
    return {"opt_state": state["opt_state"], "batch_stats": state["batch_stats"]}, losses


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_multi_device_run_equals_single_device_run(tmp_path):
    """8 simulated CPU devices (batch split 8 ways, BN statistics over the global batch) vs one:
    equal up to float32 reduction order (the bounds above)."""
    one, one_losses = _train_on_devices(tmp_path, 1)
    many, many_losses = _train_on_devices(tmp_path, 8)
    np.testing.assert_allclose(many_losses[0], one_losses[0], rtol=MULTI_DEVICE_LOSS_RTOL)
    assert_same_training(one, many)


def test_multi_device_comparison_catches_a_gradient_scaled_by_the_device_count():
    """The comparison is not vacuous: momentum traces 8x too large (a sum over devices instead of a
    mean) fail it, and so does one array off by 20%."""
    rng = np.random.default_rng(0)
    one = {"opt_state": ({"trace": {"conv": {"kernel": rng.normal(size=(3, 3, 1, 16))},
                                    "bn": {"bias": rng.normal(size=16)}}},),
           "batch_stats": {"bn": {"mean": rng.normal(size=16), "var": 1 + rng.random(16)}}}
    assert_same_training(one, jax.tree.map(lambda x: x * (1 + 1e-3), one))
    with pytest.raises(AssertionError, match="trace"):
        assert_same_training(one, {**one, "opt_state": jax.tree.map(lambda x: 8 * x, one["opt_state"])})
    off = jax.tree.map(np.copy, one)
    off["opt_state"][0]["trace"]["bn"]["bias"] *= 1.2
    with pytest.raises(AssertionError, match="bias"):
        assert_same_training(one, off)


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_explicit_convolution_trains_like_xla(tmp_path):
    """The hand-written convolution inside the jitted, batch-sharded training step gives the XLA
    convolution's parameters after two steps, to float32 rounding."""
    params = {}
    for impl in ("xla", "explicit"):
        train_and_evaluate(tiny("num_steps=2", "eval_every_steps=2", f"model.conv_impl={impl}"),
                           tmp_path / impl)
        params[impl] = final_params(tmp_path / impl)["params"]
    for (key, a), (_, b) in zip(_flatten(params["xla"]), _flatten(params["explicit"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=key)
