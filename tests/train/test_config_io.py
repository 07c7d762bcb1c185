"""Config files, command-line overrides and their errors; every shipped config loads and builds."""

import pathlib

import pytest

from cnnjax import config as config_io
from cnnjax import models

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIG_VARIANTS = [
    ("lenet5_mnist.py", None), ("lenet5_mnist.py", "smoke"),
    ("alexnet_imagenet.py", None), ("alexnet_imagenet.py", "torchvision"),
    *[("vgg_imagenet.py", v) for v in ("a", "a_lrn", "b", "c", "d", "e")],
    ("googlenet_imagenet.py", None),
    *[("resnet_imagenet.py", v) for v in ("18", "34", "50", "101", "152", "plain18", "plain34",
                                                    "50,inception")],
    *[("resnet_cifar.py", v) for v in ("resnet20", "plain56,fashion_mnist", "resnet110,cifar100")],
    ("mlp_cifar_gray.py", None), ("mlp_cifar_gray.py", "fashion_mnist"),
]


@pytest.mark.parametrize("name,arg", CONFIG_VARIANTS)
def test_every_config_loads_and_names_a_buildable_model(name, arg):
    spec = str(REPO / "configs" / name) + (f":{arg}" if arg else "")
    config = config_io.load_config(spec)
    knobs = {k: v for k, v in config.model.items() if k != "name"}
    module = models.build(config.model.name, num_classes=config.data.num_classes, **knobs)
    assert module is not None
    assert config.batch_size > 0 and config.schedule.base_lr > 0


def test_config_docstrings_give_the_command():
    for path in (REPO / "configs").glob("*.py"):
        module = config_io.load_module(str(path))
        assert f"./launch.sh configs/{path.name}" in (module.__doc__ or ""), path.name


def test_bad_config_argument_is_one_clear_error():
    with pytest.raises(ValueError, match="vgg_imagenet takes one of"):
        config_io.load_config(str(REPO / "configs" / "vgg_imagenet.py") + ":z")


def test_missing_config_file():
    with pytest.raises(config_io.ConfigError, match="does not exist"):
        config_io.load_config("configs/no_such_config.py")


@pytest.fixture
def config():
    return config_io.load_config(str(REPO / "configs" / "lenet5_mnist.py"))


def test_overrides_take_the_type_of_the_value_they_replace(config):
    config_io.apply_overrides(config, ["batch_size=64", "schedule.base_lr=1", "model.dtype=bfloat16",
                                       "async_checkpoints=false", "schedule.boundaries=(1, 2)"])
    assert config.batch_size == 64 and isinstance(config.schedule.base_lr, float)
    assert config.model.dtype == "bfloat16" and config.async_checkpoints is False
    assert config.schedule.boundaries == (1, 2)


def test_misspelt_key_fails_and_lists_valid_keys(config):
    with pytest.raises(config_io.ConfigError, match=r"unknown config key 'optimizer.momentm'.*"
                                                    r"optimizer\.momentum"):
        config_io.apply_overrides(config, ["optimizer.momentm=0.5"])


@pytest.mark.parametrize("item,message", [("batch_size=big", "batch_size"),
                                          ("batch_size=1.5", "expected a int"),
                                          ("async_checkpoints=maybe", "true or false"),
                                          ("batch_size", "--config.KEY=VALUE")])
def test_bad_override_values(config, item, message):
    with pytest.raises(config_io.ConfigError, match=message):
        config_io.apply_overrides(config, [item])


def test_saved_config_round_trips(config, tmp_path):
    config_io.save_config(config, tmp_path)
    again = config_io.load_saved_config(tmp_path)
    assert again.model.name == config.model.name and again.batch_size == config.batch_size
    assert list(again.data.mean) == list(config.data.mean)
    with pytest.raises(config_io.ConfigError, match="not a cnnjax workdir"):
        config_io.load_saved_config(tmp_path / "elsewhere")
