"""log_images_every_steps: filters and a Grad-CAM as PNGs in the workdir and TensorBoard images."""

from __future__ import annotations

import pathlib

import pytest

from cnnjax import config as config_io
from cnnjax.train.loop import train_and_evaluate

TINY = str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "helpers" / "tiny_config.py")


@pytest.mark.slow  # > 5 s on the 2-core CPU (a short training run)
def test_training_logs_filters_and_grad_cam_every_n_steps_and_at_the_end(tmp_path):
    config = config_io.load_config(TINY)
    config_io.apply_overrides(config, ["num_steps=5", "log_images_every_steps=2"])
    train_and_evaluate(config, tmp_path)
    names = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert names == [f"{kind}_{s}.png" for kind in ("filters", "gradcam") for s in (2, 4, 5)]
    tensorboard = tmp_path / "tensorboard"
    if tensorboard.is_dir():  # tensorboardX installed: the images went there too
        images = sorted((v.tag, e.step) for e in _events(tensorboard) for v in e.summary.value
                        if v.HasField("image"))
        assert images == [(tag, s) for tag in ("filters", "gradcam") for s in (2, 4, 5)]


def test_images_are_off_by_default(tmp_path):
    from cnnjax.config import default_config

    assert default_config().log_images_every_steps == 0


def _events(folder: pathlib.Path):
    """Every Event in the folder's event files (TFRecord framing: length, its CRC, data, CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    for path in sorted(folder.glob("events.*")):
        raw = path.read_bytes()
        at = 0
        while at + 12 <= len(raw):
            length = int.from_bytes(raw[at:at + 8], "little")
            yield Event.FromString(raw[at + 12:at + 12 + length])
            at += 12 + length + 4
