"""Datasets by name (cnnjax.data.presets), the transform vocabulary (transform_names + transforms),
today's transform names as aliases, and predict using evaluation's transform code."""

import pathlib

import numpy as np
import pytest
from helpers.data import coordinate_image, encode

from cnnjax import config as config_io
from cnnjax import data as cnndata
from cnnjax import predict
from cnnjax.data import presets, transform_names
from cnnjax.data import transforms as T
from cnnjax.data.config import DataError, check_data_config, default_data_config
from cnnjax.data.sources import read_idx
from cnnjax.data.tf_cpu import tf

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_every_preset_is_a_valid_data_block(name):
    data = presets.data_config(name, **({"source": "folder:/x"} if name == "image_folder" else {}))
    assert data.preset == name
    assert set(data) == set(default_data_config())  # a preset adds no field of its own
    for key, value in presets.PRESETS[name].items():
        if key != "source" or name != "image_folder":
            assert data[key] == value
    check_data_config(data)


def _train_mean_std(images: np.ndarray) -> tuple[float, float]:
    x = images.astype(np.float64) / 255.0
    return float(x.mean()), float(x.std())


def test_mnist_statistics_are_those_of_the_shipped_training_images():
    images = read_idx(REPO / "data" / "mnist" / "train-images-idx3-ubyte.gz")
    mean, std = _train_mean_std(images)
    # The presets are the statistics rounded to 4 decimals (0.1307, 0.3081): within half a unit.
    assert presets.PRESETS["mnist"]["mean"] == pytest.approx((mean,), abs=5e-5)
    assert presets.PRESETS["mnist"]["std"] == pytest.approx((std,), abs=5e-5)


def test_fashion_mnist_statistics_are_those_of_its_training_images(shared_data):
    path = shared_data / "fashion_mnist" / "train-images-idx3-ubyte.gz"
    mean, std = _train_mean_std(read_idx(path))
    assert presets.PRESETS["fashion_mnist"]["mean"] == pytest.approx((mean,), abs=5e-5)
    assert presets.PRESETS["fashion_mnist"]["std"] == pytest.approx((std,), abs=5e-5)


def test_unknown_preset_and_field_are_one_line():
    with pytest.raises(DataError, match="unknown data preset 'svhn'; valid presets: mnist, "
                                        "fashion_mnist, cifar10, cifar100, imagenet2012, image_folder"):
        presets.data_config("svhn")
    with pytest.raises(DataError, match=r"unknown data field\(s\) image_sise; valid fields:"):
        presets.data_config("mnist", image_sise=32)


def test_preset_switch_on_the_command_line_keeps_what_the_config_changed():
    lenet = str(REPO / "configs" / "lenet5_mnist.py")  # mnist preset with image_size 32 (native 28)
    config = config_io.resolve_config(lenet, ["data.preset=fashion_mnist"])
    assert config.data.source == "idx:../shared/data/fashion_mnist"
    assert config.data.mean == (0.2860,) and config.data.image_size == 32
    config = config_io.resolve_config(lenet, ["data.preset=cifar10"])
    assert (config.data.source, config.data.train_transform, config.data.channels) == (
        "tfds:cifar10", "pad_crop_flip", 3)
    with pytest.raises(DataError, match="valid presets"):
        config_io.resolve_config(lenet, ["data.preset=svhn"])


def test_unknown_transform_fails_at_config_time_naming_the_valid_ones():
    with pytest.raises(DataError) as info:
        config_io.resolve_config(str(REPO / "configs" / "lenet5_mnist.py"),
                                 ["data.train_transform=cutout"])
    message = str(info.value)
    assert "\n" not in message and "got 'cutout'" in message
    for name in transform_names.names(train=True):
        assert name in message
    assert "center_crop" not in message  # an evaluation-only transform is not offered for training


def test_every_name_has_one_builder_and_every_builder_a_name():
    assert set(T.BUILDERS) == set(transform_names.TRANSFORMS)
    for alias, meanings in transform_names.ALIASES.items():
        assert alias not in transform_names.TRANSFORMS
        assert all(m is None or m in transform_names.TRANSFORMS for m in meanings)


@pytest.mark.parametrize("alias,name,train", [
    ("mnist", "pad_or_crop", True), ("mnist", "pad_or_crop", False),
    ("cifar", "pad_crop_flip", True), ("cifar", "pad_or_crop", False),
    ("alexnet", "crop_flip_pca", True), ("inception", "random_resized_crop", True),
])
def test_old_names_give_the_same_pixels_as_the_new_ones(alias, name, train):
    data = default_data_config()
    data.update(image_size=24, resize_size=28, channels=3, pca_lighting_std=0.1)
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (30, 36, 3), np.uint8))
    key = tf.constant([3, 4], tf.int32)
    old = T.make_transform(data, alias, (30, 36, 3), train=train)
    new = T.make_transform(data, name, (30, 36, 3), train=train)
    assert old.name == new.name == name
    np.testing.assert_array_equal(old.on_decoded(image, key, key).numpy(),
                                  new.on_decoded(image, key, key).numpy())


@pytest.mark.parametrize("transform,size", [("center_crop", 16), ("pad_or_crop", 24), ("cifar", 20)])
def test_predict_reads_a_file_as_evaluation_does(tmp_path, transform, size):
    folder = tmp_path / "images" / "test" / "a"
    folder.mkdir(parents=True)
    pixels = coordinate_image(30, 22)
    (folder / "x.png").write_bytes(encode(pixels))
    data = default_data_config()
    data.update(source=f"folder:{tmp_path / 'images'}", eval_split="test", channels=3,
                image_size=size, resize_size=20, eval_transform=transform, num_classes=1)
    batch = next(iter(cnndata.eval_batches(data, global_batch_size=1)))
    np.testing.assert_array_equal(predict.load_image(folder / "x.png", data), batch["image"][0])
