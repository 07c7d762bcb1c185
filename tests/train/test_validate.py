"""Config validation: every numeric key of the defaults and the data block, refused or accepted at its
boundaries, one line per problem, in milliseconds (no JAX, no dataset decoding); resume comparisons."""

from __future__ import annotations

import math
import pathlib
import time

import pytest

from cnnjax import config as config_io
from cnnjax.config import default_config, validate

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "helpers" / "tiny_config.py")

# key: (values refused, boundary values accepted). Every int/float key of default_config outside
# model.* (the registry checks model knobs) must be listed: see test_every_numeric_key_is_covered.
CASES = {
    "seed": ([-1, 2**31, 1.5, True], [0, 2**31 - 1]),
    "batch_size": ([0, -5, 2.0, True], [1]),
    "eval_batch_size": ([0, -1], [1]),
    "eval_cache_gb": ([-1.0, math.nan], [0.0, 8.0]),
    "num_steps": ([0, -3, -2, 1.5], [-1, 1]),
    "num_epochs": ([0.0, -1.0, math.inf, math.nan], [1e-3]),
    "log_every_steps": ([0, -1, 1.0], [1]),
    "eval_every_steps": ([0, -100], [1]),
    "checkpoint_every_steps": ([0, -1], [1]),
    "keep_checkpoints": ([0, -1], [1]),
    "keep_best": ([-1], [0]),
    "log_images_every_steps": ([-1, 1.5, True], [0, 1]),
    "optimizer.momentum": ([-0.1, 1.0, math.nan], [0.0, 0.999]),
    "optimizer.weight_decay": ([-1e-4, math.inf], [0.0]),
    "optimizer.clip_grad_norm": ([-1.0], [0.0]),
    "optimizer.b1": ([1.0, -0.1], [0.0]),
    "optimizer.b2": ([1.0], [0.0, 0.9999]),
    "optimizer.eps": ([0.0, -1e-8], [1e-12]),
    "optimizer.rms_decay": ([1.0, -1.0], [0.0]),
    "schedule.base_lr": ([0.0, -0.1, math.inf], [1e-9]),
    "schedule.warmup": ([-1.0], [0.0]),
    "schedule.decay_factor": ([0.0, -0.5], [1e-3]),
    "schedule.decay_every": ([0.0, -1.0], [0.5]),
    "schedule.patience": ([-1, 1.5], [0]),
    "schedule.rtol": ([-1e-4], [0.0]),
    "loss.label_smoothing": ([1.0, -0.1], [0.0, 0.99]),
    "loss.aux_weight": ([-0.1], [0.0]),
    "data.image_size": ([0, -32], [1]),
    "data.resize_size": ([0], [1]),
    "data.pca_lighting_std": ([-0.1], [0.0]),
    "data.min_area": ([0.0, 1.1], [1.0, 1e-3]),
    "data.aspect_range": ([(0.0, 1.0), (2.0, 1.0), (1.0,)], [(1.0, 1.0)]),
    "data.mean": ([(0.1, 0.2), (-0.1,)], [(0.0,)]),
    "data.std": ([(0.0,), (0.5, 0.5)], [(1e-3,)]),
    "data.channels": ([2, 0], [1, 3]),
    "data.eval_crops": ([0, 3, 7], [1, 5, 10]),
    "data.num_classes": ([-1, 0], [1]),  # 0 is refused for the synthetic source of the tiny config
    "data.shuffle_buffer": ([0], [1]),
    "data.synthetic_examples": ([0], [1]),
    "data.max_image_pixels": ([0, -1, 1.5], [1]),
    "data.synthetic_shape": ([(0, 32, 1), (32, 32)], [(1, 1, 1)]),
    "data.num_parallel_calls": ([0, -2], [-1, 1]),
}


def tiny():
    return config_io.load_config(TINY)


def with_value(key: str, value):
    config = tiny()
    *parents, leaf = key.split(".")
    node = config
    for parent in parents:
        node = node[parent]
    with node.ignore_type():
        node[leaf] = value
    if key == "num_epochs":
        config.num_steps = -1
    return config


def test_the_tiny_config_is_valid():
    assert validate.config_problems(tiny(), device_count=1, num_train_examples=256) == []


def test_every_numeric_key_is_covered():
    numeric = [k for k, v in validate.flatten(default_config().to_dict()).items()
               if not k.startswith("model.") and not isinstance(v, bool | str)
               and (isinstance(v, int | float) or (isinstance(v, list) and v
                                                   and isinstance(v[0], int | float)))]
    assert sorted(set(numeric) - CASES.keys()) == []


@pytest.mark.parametrize("key", sorted(CASES))
def test_bad_values_are_refused_in_one_line_and_boundaries_accepted(key):
    bad, good = CASES[key]
    for value in bad:
        problems = validate.config_problems(with_value(key, value))
        assert len(problems) == 1, (key, value, problems)
        assert f"config.{key}" in problems[0] and "\n" not in problems[0]
    for value in good:
        assert validate.config_problems(with_value(key, value)) == [], (key, value)


def test_relations_with_devices_processes_and_dataset_size():
    config = tiny()  # batch 16, eval batch 64
    assert validate.config_problems(config, device_count=8, num_train_examples=16) == []
    problems = validate.config_problems(config, device_count=3)
    # the evaluation batch (64) is padded up to the devices: only the training batch must divide
    assert len(problems) == 1 and problems[0].startswith("config.batch_size=16 ")
    assert "multiple of the 3 devices" in problems[0]
    assert "multiple of the 3 processes" in validate.config_problems(config, process_count=3)[0]
    (line,) = validate.config_problems(config, num_train_examples=15)
    assert line.startswith("config.batch_size=16 ") and "at most the 15 examples" in line


def test_batch_norm_groups_must_tile_the_batch_before_anything_is_written():
    """bn_stats='group:N' with a batch that N does not divide fails here, not when the model is
    traced (after the workdir holds a config.json that then refuses the corrected value)."""
    config = tiny()  # batch 16
    config.model.norm = "batch"
    for ok in ("group:16", "group:4", "group:1", "device", "global"):
        config.model.bn_stats = ok
        assert validate.config_problems(config) == [], ok
    config.model.bn_stats = "group:3"
    (line,) = validate.config_problems(config)
    assert line == ("config.batch_size=16 is not accepted: a multiple of the groups of "
                    "model.bn_stats='group:3'")
    config.model.norm = "none"   # no batch norm: the knob does nothing, so nothing to refuse
    assert validate.config_problems(config) == []


def test_several_problems_give_one_line_each():
    config = tiny()
    config.batch_size, config.log_every_steps, config.schedule.base_lr = 0, 0, -1.0
    with pytest.raises(validate.ConfigValidationError) as err:
        validate.check_config(config)
    assert len(str(err.value).splitlines()) == 3 == len(err.value.problems)


def test_validation_is_fast():
    config = tiny()
    # The first call imports JAX and the models (about 1 s): outside the timing, which is per call.
    validate.config_problems(config, device_count=1, num_train_examples=256)
    start = time.perf_counter()
    for _ in range(100):
        validate.config_problems(config, device_count=1, num_train_examples=256)
    assert (time.perf_counter() - start) / 100 < 0.01


def test_resume_changes_split_frozen_from_allowed():
    saved = tiny().to_dict()
    new = tiny()
    new.num_steps, new.log_every_steps = 100, 5
    assert validate.resume_changes(saved, new.to_dict()) == (
        [], {"log_every_steps": [2, 5], "num_steps": [8, 100]})
    for key, value in (("model.name", "smallcnn"), ("data.channels", 3), ("seed", 1),
                       ("optimizer.name", "adamw"), ("schedule.name", "cosine")):
        refused, _ = validate.resume_changes(saved, with_value(key, value).to_dict())
        assert len(refused) == 1 and refused[0].startswith(key), refused
    # keys on one side only (an older or newer cnnjax wrote the saved config) are not compared
    new = tiny()
    new.model.width = 2
    assert validate.resume_changes(saved, new.to_dict()) == ([], {})
    assert validate.resume_changes(saved, with_value("restart_if_damaged", True).to_dict()) == ([], {})


def test_an_image_folder_needs_a_transform_that_gives_the_image_size():
    """Folders hold images of any size: 'none' (each image at its own size) cannot batch them, and
    used to end in a traceback at the model's first trace."""
    config = default_config()
    config.data.source = "folder:/data/my_images"
    config.data.train_transform = config.data.eval_transform = "none"
    problems = validate.config_problems(config)
    assert any(p.startswith("config.data.train_transform='none'") and "pad_or_crop" in p
               for p in problems)
    assert any(p.startswith("config.data.eval_transform='none'") and "center_crop" in p
               for p in problems)
    config.data.eval_source = "synthetic"  # evaluation elsewhere: only training's transform matters
    assert not any("eval_transform" in p for p in validate.config_problems(config))


def test_data_pipeline_choices_and_the_device_with_an_image_folder():
    for value in ("gpu", "", None, True):
        problems = validate.config_problems(with_value("data.pipeline", value))
        assert len(problems) == 1 and problems[0].startswith(f"config.data.pipeline={value!r}")
        assert "'auto', 'device', 'tfdata'" in problems[0]
    for value in ("auto", "device", "tfdata"):
        assert validate.config_problems(with_value("data.pipeline", value)) == []
    config = with_value("data.pipeline", "device")
    config.data.eval_source = "folder:/data/my_images"  # evaluation from a folder: refused too
    config.data.eval_transform = "pad_or_crop"
    problems = validate.config_problems(config)
    assert len(problems) == 1 and "data.pipeline='device'" in problems[0]
    assert "for the image folder 'folder:/data/my_images'" in problems[0]
    config.data.pipeline = "auto"  # auto serves the folder through tf.data
    assert validate.config_problems(config) == []
    config = with_value("data.pipeline", "device")
    config.data.train_transform = "inception"  # random_resized_crop: tf.data only
    [problem] = validate.config_problems(config)
    assert "for data.train_transform='inception'" in problem
    assert "the device runs only none, pad_or_crop, pad_crop_flip" in problem
