"""The training loop runs where neither TensorFlow nor tensorboardX can be imported (an accelerator
image with only jax/flax/optax/orbax): synthetic data is served by numpy and kept on the device,
metrics go to metrics.jsonl only."""

import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
from helpers.hide_tensorflow import HIDE_TENSORFLOW

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "helpers" / "tiny_config.py"

SCRIPT = HIDE_TENSORFLOW + textwrap.dedent("""
    import json

    from cnnjax import config as config_io
    from cnnjax.train.loop import train_and_evaluate

    config = config_io.load_config(sys.argv[1])
    config.num_steps = 6
    final = train_and_evaluate(config, sys.argv[2])
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorboardX"))
    print("RESULT", json.dumps({"final": final, "loaded": loaded}))
""")


def test_lenet5_trains_on_synthetic_data_without_tensorflow_or_tensorboard(tmp_path):
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(TINY), str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert result["loaded"] == []
    assert "tensorboardX is not installed" in out.stdout
    assert not (tmp_path / "tensorboard").exists()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in records if "train/loss" in r]
    assert len(losses) == 3 and all(0 < loss < 10 for loss in losses)
    assert result["final"]["eval/examples"] == 256  # the whole synthetic evaluation set, once
    assert (tmp_path / "checkpoints").is_dir()


IDX_SCRIPT = HIDE_TENSORFLOW + textwrap.dedent("""
    import json

    from cnnjax import config as config_io
    from cnnjax.train.loop import train_and_evaluate

    config = config_io.load_config(sys.argv[1])
    config.data.source = "idx:" + sys.argv[3]
    config.data.pipeline = "device"
    config.data.train_transform, config.data.eval_transform = "pad_crop_flip", "pad_or_crop"
    config.data.synthetic_examples = 1
    config.data.num_classes = 0
    config.num_steps = 4
    final = train_and_evaluate(config, sys.argv[2])
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tensorboardX"))
    print("RESULT", json.dumps({"final": final, "loaded": loaded}))
""")


def test_lenet5_trains_and_evaluates_idx_files_from_the_device_without_tensorflow(tmp_path):
    from helpers.data import write_idx

    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 21)):  # MNIST's 28 x 28, padded to 32 on the way
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28),
                                                                          np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    workdir = tmp_path / "run"
    out = subprocess.run([sys.executable, "-c", IDX_SCRIPT, str(TINY), str(workdir), str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert result["loaded"] == []
    assert result["final"]["eval/examples"] == 21  # every test image once, whatever the padding
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in records if "train/loss" in r]) == 2
