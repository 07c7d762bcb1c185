"""eval and predict on a tiny trained LeNet-5 run, checked against an independent numpy computation
from the model's logits: numpy parameters read from the checkpoint, numpy normalisation, softmax,
crop averaging, accuracy and confusion counts."""

import csv
import json
import pathlib
import shutil

import numpy as np
import pytest
from PIL import Image

from cnnjax import cli, data, evaluate, predict
from cnnjax import config as config_io
from cnnjax.train.checkpoint import Checkpoints
from cnnjax.train.loop import build_model, train_and_evaluate
from cnnjax.train.metrics import read_metrics

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "helpers" / "tiny_config.py")
# A 36x36 image resized to shorter side 36 is unchanged, and its central 32x32 square starts at (2, 2):
# so 'center_crop' inputs can be cut by hand.
OVERRIDES = ["num_steps=4", "data.eval_transform=center_crop", "data.resize_size=36",
             "data.synthetic_shape=(36, 36, 1)", "data.train_transform=alexnet",
             "data.pca_lighting_std=0.0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> pathlib.Path:
    """A 4-step run with checkpoints at steps 2 and 4 and an evaluation at step 4."""
    config = config_io.load_config(TINY)
    config_io.apply_overrides(config, OVERRIDES)
    workdir = tmp_path_factory.mktemp("tiny_run")
    train_and_evaluate(config, workdir)
    return workdir


def reference_probabilities(workdir: pathlib.Path, step: int, images: np.ndarray) -> np.ndarray:
    """Softmax over classes of the model applied to uint8 images (N, [crops,] H, W, C), averaged
    over the crop axis, with parameters read as plain numpy arrays from the checkpoint."""
    config = config_io.load_saved_config(workdir)
    arrays = Checkpoints(workdir / "checkpoints").read_arrays(step)
    variables = {"params": arrays["params"]}
    if arrays.get("batch_stats"):
        variables["batch_stats"] = arrays["batch_stats"]
    crops = images.shape[1] if images.ndim == 5 else 1
    flat = images.reshape(-1, *images.shape[-3:]).astype(np.float64)
    x = (flat / 255.0 - np.asarray(config.data.mean)) / np.asarray(config.data.std)
    logits = np.asarray(build_model(config, 10).apply(variables, x.astype(np.float32), train=False),
                        np.float64)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    probs = e / e.sum(-1, keepdims=True)
    return probs.reshape(images.shape[0], crops, -1).mean(1)


def eval_set(workdir: pathlib.Path, crops: int):
    config = config_io.load_saved_config(workdir)
    batches = list(data.eval_batches(config.data, global_batch_size=64, crops=crops))
    images = np.concatenate([b["image"][b["mask"]] for b in batches])
    labels = np.concatenate([b["label"][b["mask"]] for b in batches])
    return images, labels


@pytest.mark.parametrize("crops", [1, 5, 10])
def test_eval_matches_numpy_on_the_model_logits(run, crops, capsys):
    assert cli.main(["eval", "--workdir", str(run), "--step", "4", "--crops", str(crops)]) == 0
    result = json.loads((run / f"eval_4_{crops}crop.json").read_text())
    images, labels = eval_set(run, crops)
    assert images.shape == ((256, crops, 32, 32, 1) if crops > 1 else (256, 32, 32, 1))
    probs = reference_probabilities(run, 4, images)
    predicted = probs.argmax(-1)
    top5 = np.argsort(-probs, axis=-1)[:, :5]
    assert result["examples"] == 256
    assert result["top1"] == pytest.approx(np.mean(predicted == labels), abs=1e-9)
    assert result["top5"] == pytest.approx(np.mean((top5 == labels[:, None]).any(-1)), abs=1e-9)
    assert result["top1_error"] == pytest.approx(1 - result["top1"])
    nll = -np.log(probs[np.arange(len(labels)), labels] + 1e-12)
    # The tool's float32 logits against the same model's logits computed apart (another batch size,
    # so other summation orders): LeNet-5's 5 layers of K <= 400 terms give eps * log2(K) * sqrt(2 * 5)
    # = 3e-6 of the logits' scale (see tests/convert/test_convert_torch.py), and cross-entropy is
    # 2-Lipschitz in the logits: the loss (about 2.3) agrees far within rel 1e-4.
    assert result["loss"] == pytest.approx(nll.mean(), rel=1e-4)
    confusion = np.asarray(result["confusion_matrix"])
    assert confusion.sum() == 256
    assert np.array_equal(confusion.sum(1), np.bincount(labels, minlength=10))
    assert np.array_equal(confusion.sum(0), np.bincount(predicted, minlength=10))
    assert np.trace(confusion) == round(result["top1"] * 256)
    for c, accuracy in enumerate(result["per_class_accuracy"]):
        in_class = labels == c
        assert accuracy == pytest.approx(np.mean(predicted[in_class] == c))
    png = run / result["confusion_png"]
    assert png.name == f"eval_4_{crops}crop_confusion.png" and png.read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert f"top-1 accuracy {result['top1']:.2%} (error {result['top1_error']:.2%})" in out


def test_ten_crop_geometry_on_an_image_with_known_content(run, tmp_path, capsys):
    """Two 36x36 images whose pixels encode their position, evaluated with 10 crops on a folder
    source: the tool's loss must equal the one computed from crops cut by hand (four corners,
    center, and their mirror images, AlexNet Sec. 4.1)."""
    yy, xx = np.mgrid[0:36, 0:36]
    pictures = [(yy * 7 + xx * 3) % 256, (255 - yy * 5 - xx * 2) % 256]
    for label, picture in enumerate(pictures):
        (tmp_path / f"class{label}").mkdir()
        Image.fromarray(picture.astype(np.uint8), mode="L").save(tmp_path / f"class{label}" / "a.png")
    assert cli.main(["eval", "--workdir", str(run), "--crops", "10", "--data", f"folder:{tmp_path}",
                     "--batch-size", "2"]) == 0
    result = json.loads(next(run.glob("eval_4_10crop_folder*.json")).read_text())
    assert result["examples"] == 2
    # The header names the folder really read: the whole folder, which has no 'test' subfolder.
    assert f", 10 crops, folder:{tmp_path} (2 examples)\n" in capsys.readouterr().out
    windows = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]
    crops = []
    for picture in pictures:
        five = [picture[y:y + 32, x:x + 32] for y, x in windows]
        crops.append(np.stack(five + [c[:, ::-1] for c in five])[..., None])
    probs = reference_probabilities(run, 4, np.stack(crops).astype(np.uint8))
    expected = -np.log(probs[[0, 1], [0, 1]] + 1e-12).mean()
    assert result["loss"] == pytest.approx(expected, rel=1e-4)  # as above: 3e-6 of the logits


def test_eval_all_and_best(run):
    assert cli.main(["eval", "--workdir", str(run), "--all"]) == 0
    with (run / "eval_all_1crop.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [int(r["step"]) for r in table] == [2, 4]
    for row in table:
        single = json.loads((run / f"eval_{row['step']}_1crop.json").read_text())
        assert float(row["top1"]) == pytest.approx(single["top1"])
    assert len(json.loads((run / "eval_all_1crop.json").read_text())) == 2
    assert (run / "eval_all_1crop.png").read_bytes()[:4] == b"\x89PNG"
    # 'best' among the checkpoints (2, 4): training evaluated step 4 only
    records = read_metrics(run)
    assert evaluate.resolve_step("best", [2, 4], records, "eval/top1", "max") == 4
    assert evaluate.resolve_step("latest", [2, 4], records, "eval/top1", "max") == 4
    assert evaluate.resolve_step("2", [2, 4], records, "eval/top1", "max") == 2


def test_best_step_uses_the_logged_metric_of_checkpointed_steps():
    records = [{"step": 2, "eval/top1": 0.5}, {"step": 4, "eval/top1": 0.7},
               {"step": 6, "eval/top1": 0.9}, {"step": 8, "eval/top1": 0.7},
               {"step": 4, "eval/loss": 0.1}]
    assert evaluate.best_step(records, [2, 4, 8], "eval/top1", "max") == 4  # 6 was not kept
    assert evaluate.best_step(records, [2, 4, 8], "eval/top1", "min") == 2
    with pytest.raises(ValueError, match="no checkpoint step has a logged 'eval/top5'"):
        evaluate.best_step(records, [2, 4], "eval/top5", "max")


def test_confusion_matrix_against_a_loop():
    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    expected = np.zeros((4, 4), int)
    for t, p in zip(labels, predictions, strict=True):
        expected[t, p] += 1
    matrix = evaluate.confusion_matrix(labels, predictions, 4)
    assert np.array_equal(matrix, expected)
    accuracy = evaluate.per_class_accuracy(np.array([[3, 1], [0, 0]]))
    assert accuracy == [0.75, None]


def test_predict_prints_top5_with_probabilities_from_the_model(run, tmp_path, capsys):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(2):
        picture = rng.integers(0, 256, (36, 36), dtype=np.uint8)
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(picture, mode="L").save(paths[-1])
    assert cli.main(["predict", "--workdir", str(run), *map(str, paths)]) == 0
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith(str(tmp_path))]
    assert len(lines) == 2
    for path, line in zip(paths, lines, strict=True):
        picture = np.asarray(Image.open(path))[2:34, 2:34, None]
        probs = reference_probabilities(run, 4, picture[None])[0]
        expected = np.argsort(-probs)[:5]
        printed = [part.strip().split(" ") for part in line.split(": ", 1)[1].split(",")]
        assert [int(c) for c, _ in printed] == expected.tolist()
        assert [p for _, p in printed] == [f"{probs[c]:.2%}" for c in expected]
    assert predict.top_k(np.array([0.1, 0.4, 0.4, 0.1]), 3) == [(1, 0.4), (2, 0.4), (0, 0.1)]


def test_predict_names_a_missing_or_unreadable_image(run, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    assert cli.main(["predict", "--workdir", str(run), str(tmp_path / "nope.png")]) == 2
    assert capsys.readouterr().err == f"error: image {tmp_path / 'nope.png'} does not exist\n"
    with pytest.warns(data.CorruptImageWarning, match=f"skipped image {bad}: not a JPEG, PNG"):
        assert cli.main(["predict", "--workdir", str(run), str(bad)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"warning: skipped 1 unreadable image file(s) (1 time(s) in all): {bad}",
        "error: none of the 1 image file(s) given could be read (each is named in a warning above)"]


def test_predict_on_a_folder_classifies_its_images_and_names_the_ones_it_skips(run, tmp_path,
                                                                              capsys):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(2)
    good = [folder / "sub" / "y.png", folder / "x.png"]  # in sorted order
    for path in good:
        Image.fromarray(rng.integers(0, 256, (36, 36), dtype=np.uint8), mode="L").save(path)
    Image.fromarray(np.zeros((40, 40), np.uint8), mode="L").save(folder / "big.png")
    (folder / "bad.jpg").write_bytes(b"not an image at all")
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "notes.txt").write_text("not an image, and not named like one: ignored")
    (folder / "sub" / "up").symlink_to("..")  # a folder loop: symlinked folders are not followed
    # 36 x 36 = 1,296 pixels pass, 40 x 40 = 1,600 do not
    with pytest.warns(data.CorruptImageWarning) as caught:
        assert cli.main(["predict", "--workdir", str(run), "--config.data.max_image_pixels=1296",
                         str(folder)]) == 0
    out, err = capsys.readouterr()
    assert sorted(str(w.message).split(" (")[0] for w in caught) == [
        f"skipped image {folder / 'bad.jpg'}: not a JPEG, PNG, GIF or BMP file",
        f"skipped image {folder / 'big.png'}: 40x40 = 1,600 pixels, more than "
        "data.max_image_pixels=1,296",
        f"skipped image {folder / 'loop.png'}: a symlink loop"]
    assert err.startswith("warning: skipped 3 unreadable image file(s) (3 time(s) in all)")
    lines = [line for line in out.splitlines() if line.startswith(str(folder))]
    assert [line.split(": ")[0] for line in lines] == list(map(str, good))
    for path, line in zip(good, lines, strict=True):
        picture = np.asarray(Image.open(path))[2:34, 2:34, None]
        top = int(np.argmax(reference_probabilities(run, 4, picture[None])[0]))
        assert line.split(": ", 1)[1].split(" ")[0] == str(top)


def test_predict_on_a_folder_without_images_says_so_in_one_line(run, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no images here")
    assert cli.main(["predict", "--workdir", str(run), str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: folder {tmp_path} holds no image file (.jpg, .jpeg, "
                                       ".png, .gif, .bmp, in it or its subfolders)\n")


@pytest.fixture(scope="module")
def broken_runs(run, tmp_path_factory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("broken")
    (root / "no_config").mkdir()
    (root / "no_checkpoints").mkdir()
    shutil.copy(run / "config.json", root / "no_checkpoints" / "config.json")
    shutil.copytree(run, root / "mismatch")
    saved = json.loads((run / "config.json").read_text())
    saved["data"]["num_classes"] = 7
    (root / "mismatch" / "config.json").write_text(json.dumps(saved))
    return {p.name: p for p in root.iterdir()}


@pytest.mark.parametrize("case, args, message", [
    ("missing", [], "workdir {w} does not exist"),
    ("no_config", [], "no config.json in {w}: not a cnnjax workdir"),
    ("no_checkpoints", [], "no checkpoints in {w}/checkpoints: nothing to evaluate"),
    ("run", ["--step", "3"], "no checkpoint at step 3; available steps: 2, 4"),
    ("run", ["--step", "first"], "--step must be a number, 'best' or 'latest', got 'first'"),
    ("run", ["--batch-size", "0"], "config.eval_batch_size=0 is not accepted: an integer >= 1 "
     "(--batch-size is short for --config.eval_batch_size)"),
    ("run", ["--config.data.nope=1"], "unknown config key 'data.nope'"),
    ("mismatch", [], "does not match the config: params/output/bias (10,) vs (7,); "
     "params/output/kernel (84, 10) vs (84, 7)"),
])
def test_eval_errors_are_one_line(run, broken_runs, tmp_path, capsys, case, args, message):
    workdir = {"run": run, "missing": tmp_path / "missing", **broken_runs}[case]
    assert cli.main(["eval", "--workdir", str(workdir), *args]) == 2
    err = capsys.readouterr().err
    assert message.format(w=workdir) in err, err
    assert err.count("\n") == 1 and err.startswith("error: ")
