"""Every knob of every model is a config key: the model block is completed from the registry once
model.name is known (also after --config.model.name=...), each knob takes --config.model.KNOB=VALUE,
and bad knobs or values fail in one line before anything runs; config.json records every knob."""

import dataclasses
import json
import pathlib
import subprocess
import sys

import pytest

from cnnjax import cli, models
from cnnjax import config as config_io
from cnnjax.config import default_config

REPO = pathlib.Path(__file__).resolve().parents[2]
LENET = str(REPO / "configs" / "lenet5_mnist.py")


def _fields(cls) -> dict:
    """The family class's own dataclass defaults, read independently of the registry."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.name not in ("parent", "name")}


@pytest.mark.parametrize("name", models.list_models())
def test_model_block_holds_every_knob_with_the_variants_default(name):
    config = default_config()
    config.model.name = name
    config.data.num_classes = 10
    config_io.apply_overrides(config, [])
    knobs = {k: v for k, v in config.model.items() if k != "name"}
    module = models.build(name, num_classes=10)
    # The completed block reproduces the module the registry builds with no knobs at all.
    assert knobs == {k: getattr(module, k) for k in knobs}
    family = type(module)
    structure = set(getattr(family, "STRUCTURE", ()))
    assert set(knobs) == set(_fields(family)) - structure - {"num_classes"}


def test_the_issue_commands_work():
    config = config_io.resolve_config(LENET, ["model.activation=relu"])
    assert config.model.activation == "relu" and config.model.pool == "avg"
    vgg = config_io.resolve_config(str(REPO / "configs" / "vgg_imagenet.py") + ":e", ["model.norm=batch"])
    assert vgg.model.norm == "batch"
    assert "batch_norm" not in (REPO / "configs" / "vgg_imagenet.py").read_text()


@pytest.mark.parametrize("override,expected", [
    ("model.widths=16,16,32,32", (16, 16, 32, 32)),      # a tuple, without parentheses
    ("model.widths=(8, 8)", (8, 8)),
    ("model.dropout_rate=0", 0.0),                        # an int where a float is expected
    ("model.norm=batch", "batch"),
    ("model.dtype=bfloat16", "bfloat16"),
])
def test_knob_values_take_the_knobs_type(override, expected):
    config = config_io.resolve_config(str(REPO / "experiments" / "relu_vs_tanh" / "config.py"), [override])
    key = override.split("=")[0].split(".")[1]
    assert config.model[key] == expected and type(config.model[key]) is type(expected)


def test_bool_knobs_and_a_one_element_tuple():
    config = default_config()
    config.model.name = "googlenet_small"
    config_io.apply_overrides(config, ["model.aux_heads=false"])
    assert config.model.aux_heads is False
    # Knobs the new model does not take go with the old model.
    config_io.apply_overrides(config, ["model.name=mlp"])
    assert "aux_heads" not in config.model and config.model.hidden == (1024, 512)
    config = default_config()
    config_io.apply_overrides(config, ["model.name=mlp", "model.hidden=300"])
    assert config.model.hidden == (300,)


def test_model_name_on_the_command_line_comes_first_and_brings_its_own_defaults():
    # plain20's shortcut default ('none') must not leak into resnet20 (whose default is identity_pad),
    # whatever the order of the overrides.
    spec = str(REPO / "configs" / "resnet_cifar.py") + ":plain20"
    for order in (["model.zero_init_residual=true", "model.name=resnet20"],
                  ["model.name=resnet20", "model.zero_init_residual=true"]):
        config = config_io.resolve_config(spec, order)
        assert config.model.name == "resnet20"
        assert config.model.shortcut == "identity_pad" and config.model.zero_init_residual is True
    # A knob the config changed from the old model's default is kept across the switch ...
    config = config_io.resolve_config(LENET, ["model.activation=relu", "model.name=smallcnn"])
    assert config.model.activation == "relu" and config.model.widths == (32, 32, 64, 64)
    # ... knobs the new model does not take and that were at the old default are dropped.
    config = config_io.resolve_config(str(REPO / "configs" / "resnet_cifar.py") + ":resnet20",
                                      ["model.name=lenet5"])
    assert "shortcut" not in config.model and config.model.activation == "tanh"


def test_a_second_round_of_overrides_switches_model_like_one_round():
    # The sweep applies the base overrides, then each point's: the same result as one round.
    spec = str(REPO / "configs" / "resnet_cifar.py") + ":plain20"
    once = config_io.resolve_config(spec, ["model.name=resnet56"])
    twice = config_io.resolve_config(spec, [])
    config_io.apply_overrides(twice, ["model.name=resnet56"])
    assert once.to_dict() == twice.to_dict()


@pytest.mark.parametrize("override,message", [
    ("model.activaton=relu", "model 'lenet5' has no knob 'activaton'; valid knobs: activation, "
     "bn_stats, conv_impl, dropout_rate, dtype, norm, pool"),
    ("model.norm=lrn2", "lenet5: norm must be one of 'none', 'lrn', 'batch'; got 'lrn2'"),
    ("model.dropout_rate=1.5", "dropout_rate must be a number in [0, 1)"),
    ("model.name=lenet6", "unknown model 'lenet6'; valid names: alexnet,"),
    ("model.pool=3", "pool must be one of 'max', 'avg', 'strided_conv'; got '3'"),
])
def test_bad_knobs_fail_in_one_line(override, message):
    with pytest.raises(config_io.ConfigError) as info:
        config_io.resolve_config(LENET, [override])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_config_file_setting_a_knob_its_model_lacks_fails(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("from cnnjax.train.defaults import default_config\n\n\ndef get_config():\n"
                    "    c = default_config()\n    c.model.widths = (8, 8)\n    return c\n")
    with pytest.raises(config_io.ConfigError, match="model 'lenet5' does not take knob"):
        config_io.resolve_config(str(path), [])


def test_config_json_records_every_knob_and_old_ones_still_load(tmp_path):
    config = config_io.load_config(LENET)  # as a config file gives it: only name and dtype
    assert set(config.model) == {"name", "dtype"}
    config_io.save_config(config, tmp_path)
    saved = json.loads((tmp_path / config_io.CONFIG_FILE).read_text())["model"]
    assert saved == {"name": "lenet5", **models.knobs("lenet5")}
    # A config.json written before the model block was completed still loads, with the defaults.
    old = json.loads((tmp_path / config_io.CONFIG_FILE).read_text())
    old["model"] = {"name": "smallcnn", "dtype": "float32", "widths": [16, 16, 32, 32]}
    (tmp_path / config_io.CONFIG_FILE).write_text(json.dumps(old))
    loaded = config_io.load_saved_config(tmp_path)
    config_io.apply_overrides(loaded, ["model.norm=batch"])
    assert loaded.model.norm == "batch" and loaded.model.pool == "max"
    assert list(loaded.model.widths) == [16, 16, 32, 32]


def test_rejected_knob_on_the_command_line_writes_nothing(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert cli.main(["train", LENET, "--workdir", str(workdir), "--config.model.norm=lrn2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "norm must be one of" in err
    assert not workdir.exists()


def test_summary_lists_knobs_defaults_and_allowed_values():
    out = subprocess.run([sys.executable, "-m", "cnnjax.summary", "resnet20", "--norm=none"],
                         capture_output=True, text=True, timeout=120, cwd=REPO, check=True).stdout
    knob_lines = out[out.index("knobs of resnet20"):].splitlines()[1:]
    rows = {line.split()[0]: line for line in knob_lines}
    assert set(rows) == set(models.knobs("resnet20"))
    assert rows["shortcut"].split()[1] == "'identity_pad'"
    assert "'projection' | 'identity_pad' | 'none'" in rows["shortcut"]
    assert "(here 'none')" in rows["norm"] and "'batch' | 'none'" in rows["norm"]
    # with norm='none' as asked, zero_init_residual=True is refused (it needs batch norm): not listed
    assert rows["zero_init_residual"].split()[1:] == ["False", "False"]
