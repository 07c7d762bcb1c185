"""What changes a run's numbers besides its config: config.xla_cpu_conv reaching XLA_FLAGS (on the
CPU only, only when the installed jaxlib knows the flag, never contradicting a flag set by hand), and
environment.json, the record of each start of a run (cnnjax.train.environment)."""

import importlib.metadata
import json
import os
import pathlib
import subprocess
import sys

import jax
import pytest

from cnnjax import cli
from cnnjax import config as config_io
from cnnjax.config import validate
from cnnjax.train import environment
from cnnjax.train.loop import train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "helpers" / "tiny_config.py")
FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def never_asked(name):
    raise AssertionError(f"jaxlib was searched for {name} where no flag is to be set")


def apply(choice, environ, known=True):
    """environ after apply_xla_flags with config.xla_cpu_conv=choice, and the record."""
    environ = dict(environ)
    record = environment.apply_xla_flags({"xla_cpu_conv": choice}, environ, lambda name: known)
    return environ, record


def test_xla_cpu_conv_accepts_eigen_and_ynnpack_and_names_them_otherwise():
    config = config_io.load_config(TINY)
    assert config.xla_cpu_conv == "eigen"  # today's launch.sh behaviour stays the default
    for good in ("eigen", "ynnpack"):
        config.xla_cpu_conv = good
        assert validate.config_problems(config) == []
    config.xla_cpu_conv = "mkl"
    assert validate.config_problems(config) == [
        "config.xla_cpu_conv='mkl' is not accepted: one of 'eigen', 'ynnpack'"]


def test_a_wrong_value_is_one_line_from_the_command_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cnnjax.cli", "train", TINY, "--workdir",
                          str(tmp_path / "w"), "--config.xla_cpu_conv=onednn"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "error: config.xla_cpu_conv='onednn' is not accepted: one of 'eigen', 'ynnpack'"]
    assert not (tmp_path / "w").exists()


def test_eigen_sets_the_flag_on_the_cpu_keeping_flags_set_by_hand():
    environ, record = apply("eigen", {"JAX_PLATFORMS": "cpu"})
    assert environ["XLA_FLAGS"] == FLAG
    assert record["in_effect"] and record["xla_flags_by_hand"] is None
    environ, _ = apply("eigen", {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_dump_to=/tmp/x"})
    assert environ["XLA_FLAGS"].split() == ["--xla_dump_to=/tmp/x", FLAG]
    again, _ = apply("eigen", environ)  # idempotent: the CLI and train_and_evaluate both apply
    assert again["XLA_FLAGS"] == environ["XLA_FLAGS"]


def test_ynnpack_sets_nothing():
    environ, record = apply("ynnpack", {"JAX_PLATFORMS": "cpu"})
    assert "XLA_FLAGS" not in environ and record["in_effect"]


def test_a_cpu_flag_never_reaches_an_accelerator_run():
    for platforms in ("cuda", "tpu", "cuda,cpu", "rocm"):
        environ = {"JAX_PLATFORMS": platforms, "XLA_FLAGS": "--xla_dump_to=/tmp/x"}
        record = environment.apply_xla_flags({"xla_cpu_conv": "eigen"}, environ, never_asked)
        assert environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x", platforms
        assert not record["in_effect"] and record["platform"] == "accelerator"


def test_a_jaxlib_that_lacks_the_flag_does_not_get_it():
    environ, record = apply("eigen", {"JAX_PLATFORMS": "cpu"}, known=False)
    assert "XLA_FLAGS" not in environ  # XLA would abort at start-up on an unknown flag
    assert not record["in_effect"] and "does not know" in record["why"]


def test_a_hand_set_flag_that_contradicts_the_config_is_refused_in_one_line():
    for choice, hand in (("eigen", "--xla_cpu_experimental_ynn_fusion_type="),
                         ("ynnpack", FLAG),
                         ("eigen", f"{FLAG} --xla_cpu_experimental_ynn_fusion_type=all")):
        with pytest.raises(environment.XlaFlagError) as e:
            apply(choice, {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": hand})
        assert len(str(e.value).splitlines()) == 1 and "--config.xla_cpu_conv" in str(e.value)
    environ, record = apply("eigen", {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": FLAG})
    assert environ["XLA_FLAGS"] == FLAG and record["xla_flags_by_hand"] == FLAG  # agrees: kept once


def test_jaxlib_is_searched_once_per_install(tmp_path):
    jaxlib = tmp_path / "jaxlib"
    (jaxlib / "sub").mkdir(parents=True)
    (jaxlib / "sub" / "_xla.so.1").write_bytes(b"\x7fELF\0xla_known_flag\0")
    cache = tmp_path / "cache"
    assert environment.jaxlib_knows("xla_known_flag", jaxlib, cache)
    assert not environment.jaxlib_knows("xla_other_flag", jaxlib, cache)
    assert len(list(cache.iterdir())) == 2
    (jaxlib / "sub" / "_xla.so.1").write_bytes(b"\x7fELF\0")  # the answer stays cached ...
    assert environment.jaxlib_knows("xla_known_flag", jaxlib, cache)
    os.utime(jaxlib, (2e9, 2e9))  # ... until the folder changes (a reinstall)
    assert not environment.jaxlib_knows("xla_known_flag", jaxlib, cache)


def test_a_flag_name_across_two_reads_is_found(tmp_path):
    path = tmp_path / "lib.so"
    path.write_bytes(b"x" * 10 + b"xla_flag_name" + b"y" * 10)
    for chunk in range(2, 40):  # every split of the name between two reads
        assert environment._contains(path, b"xla_flag_name", chunk), chunk
    assert not environment._contains(path, b"xla_flag_nameX", 4)


def test_the_installed_jaxlib_knows_the_flag_launch_sh_used():
    assert environment.jaxlib_knows(environment.CPU_CONV_FLAG)


def test_flags_a_config_chose_are_not_taken_for_hand_set_ones():
    """A process started from a run (a sweep point, a test's subprocess) inherits its XLA_FLAGS:
    the flag the parent's config chose must give way to the child's, not be refused as set by hand."""
    parent, _ = apply("eigen", {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_dump_to=/tmp/x"})
    child, record = apply("ynnpack", parent)
    assert child["XLA_FLAGS"] == "--xla_dump_to=/tmp/x"
    assert record["xla_flags_by_hand"] == "--xla_dump_to=/tmp/x"
    assert environment.FROM_CONFIG not in child
    child, _ = apply("ynnpack", {k: v for k, v in parent.items() if k != "XLA_FLAGS"})
    assert "XLA_FLAGS" not in child


def test_eval_and_predict_use_the_workdirs_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setattr(environment, "backends_started", lambda: False)  # as in a fresh process
    for choice, expected in (("ynnpack", None), ("eigen", FLAG)):
        monkeypatch.delenv("XLA_FLAGS", raising=False)
        monkeypatch.delenv(environment.FROM_CONFIG, raising=False)
        workdir = tmp_path / choice
        workdir.mkdir()
        config = config_io.load_config(TINY)
        config.xla_cpu_conv = choice
        config_io.save_config(config, workdir)
        cli._apply_workdir_xla_flags(["--workdir", str(workdir), "--step", "best"])
        assert os.environ.get("XLA_FLAGS") == expected, choice


def test_the_cli_run_records_the_flag_it_set(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-m", "cnnjax.cli", "train", TINY, "--workdir",
                          str(tmp_path / "w"), "--config.num_steps=1"],
                         capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr
    [start] = json.loads((tmp_path / "w" / environment.ENVIRONMENT_FILE).read_text())
    assert start["xla_flags"] == FLAG and start["xla_flags_by_hand"] is None
    assert start["xla_cpu_conv"]["chosen"] == "eigen" and start["xla_cpu_conv"]["in_effect"]


def test_each_start_is_recorded_with_versions_devices_and_cpu(tmp_path):
    workdir = tmp_path / "w"
    config = config_io.load_config(TINY)
    config.num_steps = 2
    train_and_evaluate(config, workdir)
    [first] = json.loads((workdir / environment.ENVIRONMENT_FILE).read_text())
    for package in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint"):
        assert first["versions"][package] == importlib.metadata.version(package)
    assert first["device_kind"] == jax.devices()[0].device_kind and first["platform"] == "cpu"
    assert first["device_count"] == jax.device_count() and first["process_count"] == 1
    assert first["cpu_model"] and first["step"] == 0 and isinstance(first["xla_flags"], str)
    assert first["conv_impl"] == "xla" and first["xla_cpu_conv"]["chosen"] == "eigen"
    config.num_steps = 4  # resumed: a second entry; the first start's record is kept as it was
    train_and_evaluate(config, workdir)
    starts = json.loads((workdir / environment.ENVIRONMENT_FILE).read_text())
    assert [s["step"] for s in starts] == [0, 2] and starts[0] == first


def test_a_resume_on_another_machine_is_named():
    first = {"versions": {"jaxlib": "0.10.2"}, "cpu_model": "A", "xla_flags": ""}
    now = {"versions": {"jaxlib": "0.10.2"}, "cpu_model": "B", "xla_flags": ""}
    assert environment.environment_changes(first, now) == ["cpu_model: 'A' -> 'B'"]
    assert environment.environment_changes(first, dict(first)) == []
