"""eval and predict with --config. overrides of how a run is evaluated, and 5/10-crop evaluation of a
'pad_or_crop' run (28x28 IDX files padded to 32, as Fashion-MNIST's are), checked against crops cut
with numpy from the files' own arrays and the model's softmax computed apart; refused overrides are one
line and write nothing."""

import json
import pathlib
import re

import numpy as np
import pytest
from helpers.data import write_idx
from PIL import Image

from cnnjax import cli
from cnnjax import config as config_io
from cnnjax.train.checkpoint import Checkpoints
from cnnjax.train.loop import build_model, train_and_evaluate
from cnnjax.train.metrics import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "helpers" / "tiny_config.py")
# 28x28 images padded to 32 as MNIST's are; the training evaluates 5 crops (data.eval_crops=5). The
# MLP: after 4 steps LeNet-5's softmax still varies by 1e-6 between images here, too little for a
# wrong crop to show; the MLP's varies by 1e-2.
OVERRIDES = ["model.name=mlp", "num_steps=4", "data.image_size=32", "data.train_transform=pad_or_crop",
             "data.eval_transform=pad_or_crop", "data.eval_crops=5", "schedule.base_lr=0.001"]
# The four corners and the centre of the 32x32 view padded by 4 (40x40).
WINDOWS = [(0, 0), (0, 8), (8, 0), (8, 8), (4, 4)]


@pytest.fixture(scope="module")
def idx(tmp_path_factory) -> tuple[pathlib.Path, np.ndarray, np.ndarray]:
    """(folder, test images (256, 28, 28, 1), labels): MNIST-format files of random 28x28 images."""
    root = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    test = rng.integers(0, 256, (256, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 256).astype(np.uint8)
    write_idx(root / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (256, 28, 28), dtype=np.uint8))
    write_idx(root / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 256).astype(np.uint8))
    write_idx(root / "t10k-images-idx3-ubyte.gz", test)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", labels)
    return root, test[..., None], labels


@pytest.fixture(scope="module")
def run(idx, tmp_path_factory) -> pathlib.Path:
    """A 4-step run with checkpoints at steps 2 and 4, evaluated with 5 crops at step 4."""
    config = config_io.load_config(TINY)
    config_io.apply_overrides(config, [*OVERRIDES, f"data.source=idx:{idx[0]}"])
    workdir = tmp_path_factory.mktemp("pad_run")
    train_and_evaluate(config, workdir)
    return workdir


def numpy_crops(images: np.ndarray, crops: int) -> np.ndarray:
    """(N, [crops,] 32, 32, C): each 28x28 image zero-padded by 2 to 32 (the single view), then for
    5/10 crops padded by 4 more and cut at WINDOWS, and mirrored for 10."""
    view = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)])
    if crops == 1:
        return view
    padded = np.pad(view, [(0, 0), (4, 4), (4, 4), (0, 0)])
    five = [padded[:, y:y + 32, x:x + 32] for y, x in WINDOWS]
    return np.stack(five + [c[:, :, ::-1] for c in five] if crops == 10 else five, axis=1)


def reference_probabilities(workdir: pathlib.Path, step: int, images: np.ndarray) -> np.ndarray:
    """Softmax of the model on uint8 images (N, [crops,] H, W, C), averaged over the crops, from
    numpy parameters read from the checkpoint and numpy normalisation (float64 outside the model)."""
    config = config_io.load_saved_config(workdir)
    arrays = Checkpoints(workdir / "checkpoints").read_arrays(step)
    crops = images.shape[1] if images.ndim == 5 else 1
    flat = images.reshape(-1, *images.shape[-3:]).astype(np.float64)
    x = (flat / 255.0 - np.asarray(config.data.mean)) / np.asarray(config.data.std)
    logits = np.asarray(build_model(config, 10).apply({"params": arrays["params"]},
                                                      x.astype(np.float32), train=False), np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).reshape(images.shape[0], crops, -1).mean(1)


def files(workdir: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file()}


@pytest.mark.parametrize("crops", [1, 5, 10])
def test_multi_crop_eval_of_a_pad_or_crop_run_matches_numpy(run, idx, crops):
    assert cli.main(["eval", "--workdir", str(run), "--step", "4", "--crops", str(crops)]) == 0
    result = json.loads((run / f"eval_4_{crops}crop.json").read_text())
    _, images, labels = idx
    probs = reference_probabilities(run, 4, numpy_crops(images, crops))
    assert result["examples"] == 256 and result["crops"] == crops
    # The run's config says 5 crops: only another count is an override.
    assert result["overrides"] == ({} if crops == 5 else {"data.eval_crops": crops})
    # Per-example predictions, as the confusion matrix counts them: equal unless an example's top-1
    # margin lies within the float32 rounding of the logits (below); kept exact, as a wrong crop moves
    # many of them.
    assert result["confusion_matrix"] == confusion(labels, probs)
    assert result["top1"] == pytest.approx(np.mean(probs.argmax(-1) == labels), abs=1e-9)
    nll = -np.log(probs[np.arange(len(labels)), labels] + 1e-12)
    # float32 logits of the MLP (layers of K <= 1024 terms) computed in two batch sizes differ by
    # about eps * log2(K) * sqrt(2 * layers) < 1e-5 of their scale, and cross-entropy is 2-Lipschitz
    # in the logits: the mean loss (about 2.3) agrees far within rel 1e-4.
    assert result["loss"] == pytest.approx(nll.mean(), rel=1e-4)
    # ... and this can fail: the other crop counts predict other classes for some examples
    for other in {1, 5, 10} - {crops}:
        wrong = reference_probabilities(run, 4, numpy_crops(images, other))
        assert result["confusion_matrix"] != confusion(labels, wrong)


def confusion(labels: np.ndarray, probs: np.ndarray) -> list[list[int]]:
    counts = np.zeros((10, 10), int)
    np.add.at(counts, (labels, probs.argmax(-1)), 1)
    return counts.tolist()


def test_training_and_eval_share_the_evaluator(run):
    """The run evaluated 5 crops at step 4 (data.eval_crops=5); eval with no flag reads the same
    config and must report the same figures."""
    assert cli.main(["eval", "--workdir", str(run), "--step", "4"]) == 0
    result = json.loads((run / "eval_4_5crop.json").read_text())
    logged = [r for r in read_metrics(run) if r.get("step") == 4 and "eval/top1" in r][-1]
    assert logged["eval/examples"] == result["examples"] == 256
    assert logged["eval/top1"] == pytest.approx(result["top1"], abs=1e-9)  # same counts
    # the same jitted step on the same batches: identical sums, divided alike
    assert logged["eval/loss"] == pytest.approx(result["loss"], rel=1e-6)


def test_overrides_are_recorded_and_named_apart(run, capsys):
    assert cli.main(["eval", "--workdir", str(run), "--step", "4", "--crops", "1"]) == 0
    before = (run / "eval_4_1crop.json").read_bytes()
    # center_crop: shorter side 28 -> 36, central 32: another evaluation of the same step
    assert cli.main(["eval", "--workdir", str(run), "--step", "4", "--crops", "1",
                     "--config.data.eval_transform=center_crop", "--config.data.resize_size=36",
                     "--config.eval_batch_size=50"]) == 0
    assert (run / "eval_4_1crop.json").read_bytes() == before  # not overwritten
    result = json.loads((run / "eval_4_1crop_eval_transform-center_crop_resize_size-36.json")
                        .read_text())
    # every change is recorded; the batch size, which does not change the result, is not in the name
    assert result["overrides"] == {"data.eval_crops": 1, "data.eval_transform": "center_crop",
                                   "data.resize_size": 36, "eval_batch_size": 50}
    assert result["examples"] == 256 and result["loss"] != json.loads(before)["loss"]
    assert "with data.eval_crops=1, data.eval_transform='center_crop'" in capsys.readouterr().out
    # the flag and its key are one path: the same file, the same figures
    assert cli.main(["eval", "--workdir", str(run), "--step", "4",
                     "--config.data.eval_crops=1"]) == 0
    assert json.loads((run / "eval_4_1crop.json").read_bytes()) == json.loads(before)


@pytest.mark.parametrize("args, message", [
    (["--config.data.nope=1"], "unknown config key 'data.nope'; eval may change data.eval_transform, "
     "data.image_size, data.resize_size, data.eval_crops, data.eval_source, data.eval_split, "),
    (["--config.model.activation=tanh"], "eval cannot change model.activation (the checkpoint's "
     "parameters or its training depend on it; it is 'relu'); eval may change data.eval_transform, "),
    (["--config.data.num_classes=7"], "eval cannot change data.num_classes"),
    (["--config.data.channels=3"], "eval cannot change data.channels"),
    (["--config.data.mean=(0.3,)"], "eval cannot change data.mean"),
    (["--config.schedule.base_lr=0.1"], "eval cannot change schedule.base_lr"),
    (["--config.data.eval_crops=7"], "data.eval_crops must be one of (1, 5, 10), got 7"),
    (["--config.data.eval_crops=five"], "--config.data.eval_crops: cannot read 'five' as a int"),
    (["--config.data.eval_transform=pad_crop_flip"], "data.eval_transform must be one of none, "
     "pad_or_crop, center_crop"),
    (["--crops", "5", "--config.data.eval_crops=10"], "data.eval_crops is given twice, as '5' and "
     "'10' (--crops is short for --config.data.eval_crops)"),
    (["--batch-size", "0"], "config.eval_batch_size=0 is not accepted: an integer >= 1 "
     "(--batch-size is short for --config.eval_batch_size)"),
    # 5 crops of 32 cut from the image resized to shorter side 16: larger than what they are cut from
    (["--crops", "5", "--config.data.eval_transform=center_crop", "--config.data.resize_size=16"],
     "data.image_size=32 must not exceed data.resize_size=16 for the 'center_crop' transform"),
    # a size the parameters do not fit (the MLP's first layer): the checkpoint's shape check
    (["--config.data.image_size=28"], "does not match the config: params/"),
])
def test_refused_overrides_are_one_line_and_write_nothing(run, capsys, args, message):
    before = files(run)
    assert cli.main(["eval", "--workdir", str(run), *args]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert files(run) == before


def test_a_key_set_to_its_own_value_is_no_change(run):
    assert cli.main(["eval", "--workdir", str(run), "--step", "2",
                     "--config.model.activation=relu", "--config.data.num_classes=10"]) == 0
    assert json.loads((run / "eval_2_5crop.json").read_text())["overrides"] == {}


def test_predict_averages_the_softmax_over_the_crops(run, tmp_path, capsys):
    picture = np.random.default_rng(3).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(picture, mode="L").save(tmp_path / "digit.png")
    assert cli.main(["predict", "--workdir", str(run), "--top", "3", "--config.data.eval_crops=10",
                     str(tmp_path / "digit.png")]) == 0
    out = capsys.readouterr().out
    assert "at step 4 with data.eval_crops=10:" in out
    probs = reference_probabilities(run, 4, numpy_crops(picture[None, :, :, None], 10))[0]
    printed = re.findall(r"(\d+) ([\d.]+)%", out.splitlines()[-1])
    assert [int(c) for c, _ in printed] == list(np.argsort(-probs, kind="stable")[:3])
    for c, percent in printed:
        # printed to 0.01 %: half a unit (5e-5) of rounding, plus the model's float32 error
        # (1e-5 of the logits, as above; the softmax is 1/2-Lipschitz in them)
        assert abs(float(percent) / 100 - probs[int(c)]) <= 5e-5 + 1e-5


def test_predict_refuses_what_only_eval_may_change(run, tmp_path, capsys):
    Image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(tmp_path / "a.png")
    assert cli.main(["predict", "--workdir", str(run), "--config.data.eval_split=train",
                     str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: predict cannot change data.eval_split (only eval reads it: "
                          "predict reads the image files it is given; it is 'test')")
    assert err.count("\n") == 1
    assert "predict may change data.eval_transform, data.image_size, data.resize_size, " in err
