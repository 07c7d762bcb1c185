"""The converters chain: every weights file cnnjax writes is read wherever weights are read (eval,
predict, convert export, a training run's init_weights), --step means the same in every tool, and
bad input is one line, exit 2, with nothing written.

The run is the issue's: LeNet-5 on MNIST-format IDX files (28x28 grayscale, here 40 random test
images in a folder named 'mnist', padded to 32 as configs/lenet5_mnist.py does), checkpointed at
steps 3 and 6 with random weights, step 3 the best by eval/top1.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
from helpers.convert import abstract, assert_trees_equal, random_variables
from helpers.data import write_idx

from cnnjax import cli, evaluate
from cnnjax.config import default_config, save_config
from cnnjax.convert import load_state_dict, read_weights, record, save_state_dict, variables_to_torch
from cnnjax.data.presets import data_config
from cnnjax.train.checkpoint import Checkpoints

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "helpers" / "tiny_config.py")
SUFFIXES = [".safetensors", ".npz",
            pytest.param(".pth", marks=pytest.mark.skipif(
                not __import__("importlib").util.find_spec("torch"), reason=".pth needs torch"))]


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> pathlib.Path:
    """A folder named like the MNIST preset's, with IDX files of random digits-shaped images."""
    root = tmp_path_factory.mktemp("data") / "mnist"
    root.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 64), ("t10k", 40)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), np.uint8))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory, mnist) -> pathlib.Path:
    """The workdir of a LeNet-5 run on `mnist` with checkpoints at steps 3 (best) and 6."""
    workdir = tmp_path_factory.mktemp("run")
    config = default_config()
    config.model.name = "lenet5"
    config.data = data_config("mnist", image_size=32, source=f"idx:{mnist}")
    config.eval_batch_size = 16
    save_config(config, workdir)
    ckpts = Checkpoints(workdir / "checkpoints", use_async=False)
    for step in (3, 6):
        ckpts.save(step, {"step": np.int32(step), **random_variables(abstract("lenet5"), seed=step)},
                   {"data_step": step})
    ckpts.close()
    (workdir / "metrics.jsonl").write_text('{"step": 3, "eval/top1": 0.2}\n'
                                           '{"step": 6, "eval/top1": 0.1}\n')
    return workdir


def checkpoint_variables(workdir: pathlib.Path, step: int) -> dict:
    return {"params": Checkpoints(workdir / "checkpoints", read_only=True).read_arrays(step)["params"]}


def error_line(argv: list[str], capsys) -> str:
    """The one stderr line of a command that must exit 2."""
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_an_exported_run_evaluates_as_the_run_did(run, mnist, tmp_path, capsys, suffix):
    """export --step best -> eval --weights FILE --model lenet5 --data idx:.../mnist (no config:
    1 channel and 32x32 from the weights and the MNIST preset), and the same file imported ->
    eval of the .npz, score what eval --workdir --step best scores."""
    exported = tmp_path / f"l5{suffix}"
    assert cli.main(["convert", "export", "--workdir", str(run), "--step", "best",
                     "--out", str(exported)]) == 0
    imported = tmp_path / "l5_imported.npz"
    assert cli.main(["convert", "import", str(exported), "--model", "lenet5",
                     "--out", str(imported)]) == 0
    assert cli.main(["eval", "--workdir", str(run), "--step", "best"]) == 0
    expected = json.loads((run / "eval_3_1crop.json").read_text())
    for weights, model in ((exported, ["--model", "lenet5"]), (imported, [])):
        out = tmp_path / f"eval_{weights.name}"
        assert cli.main(["eval", "--weights", str(weights), *model, "--data", f"idx:{mnist}",
                         "--out", str(out)]) == 0
        (result,) = [json.loads(p.read_text()) for p in out.glob("eval_weights_*.json")]
        assert result["examples"] == expected["examples"] == 40
        assert result["top1"] == expected["top1"] and result["top5"] == expected["top5"]
        assert result["confusion_matrix"] == expected["confusion_matrix"]
        # The same float32 network on the same images in batches of other sizes: LeNet-5's 5 layers
        # of K <= 400 terms differ by eps * log2(K) * sqrt(2 * 5) = 3e-6 of the logits' scale at
        # most; cross-entropy is 2-Lipschitz in the logits, so rel 1e-5 holds with margin.
        assert result["loss"] == pytest.approx(expected["loss"], rel=1e-5)


def test_predict_reads_an_exported_file_as_it_reads_the_run(run, mnist, tmp_path, capsys):
    """predict --weights FILE --model lenet5 --data idx:.../mnist prints, image for image, what
    predict --workdir prints for the step the file was exported from."""
    from PIL import Image

    from cnnjax.data.sources import read_idx

    for i, image in enumerate(read_idx(mnist / "t10k-images-idx3-ubyte.gz")[:3]):
        Image.fromarray(image).save(tmp_path / f"digit{i}.png")
    images = sorted(str(p) for p in tmp_path.glob("digit*.png"))
    exported = tmp_path / "l5.safetensors"
    assert cli.main(["convert", "export", "--workdir", str(run), "--step", "6",
                     "--out", str(exported)]) == 0
    capsys.readouterr()
    assert cli.main(["predict", "--workdir", str(run), "--step", "6", *images]) == 0
    from_run = capsys.readouterr().out.splitlines()
    assert cli.main(["predict", "--weights", str(exported), "--model", "lenet5", "--data",
                     f"idx:{mnist}", *images]) == 0
    from_file = capsys.readouterr().out.splitlines()
    assert from_file[1:] == from_run[1:] and len(from_run) == 4


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_export_then_import_gives_the_checkpoint_bit_for_bit(run, tmp_path, suffix):
    exported = tmp_path / f"l5{suffix}"
    assert cli.main(["convert", "export", "--workdir", str(run), "--step", "6",
                     "--out", str(exported)]) == 0
    imported = tmp_path / "l5.npz" if suffix != ".npz" else tmp_path / "l5_imported.npz"
    assert cli.main(["convert", "import", str(exported), "--model", "lenet5",
                     "--out", str(imported)]) == 0
    assert_trees_equal(read_weights(imported).variables, checkpoint_variables(run, 6))
    # and back: export of the imported file is the first export, entry for entry
    again = tmp_path / f"again{suffix}"
    assert cli.main(["convert", "export", "--weights", str(imported), "--out", str(again)]) == 0
    first, second = load_state_dict(exported), load_state_dict(again)
    assert sorted(first) == sorted(second)
    for name in first:
        assert first[name].dtype == second[name].dtype and np.array_equal(first[name], second[name])


def test_a_grayscale_resnet_checkpoint_reads_back_with_one_channel(tmp_path):
    """A resnet20 trained on 1-channel images (Fashion-MNIST, say): its first convolution takes one
    channel, which read_weights takes from the file instead of the model's natural three."""
    import jax
    import jax.numpy as jnp
    from helpers.convert import build

    module = build("resnet20")
    gray = jax.eval_shape(lambda x: module.init(jax.random.key(0), x),
                          jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32))
    variables = random_variables(gray, seed=4)
    path = save_state_dict(variables_to_torch(variables, "resnet20"), tmp_path / "gray.safetensors")
    weights = read_weights(path, "resnet20")
    assert weights.input_channels == 1
    assert_trees_equal(weights.variables, variables)
    assert read_weights(save_state_dict(variables_to_torch(random_variables(abstract("resnet20")),
                                                           "resnet20"), tmp_path / "rgb.npz"),
                        "resnet20").input_channels == 3


def test_step_means_the_same_in_every_tool(run, tmp_path, capsys):
    """A step the run's clean-up removed: convert export, eval and predict refuse it in the same one
    line (evaluate.resolve_step's), naming the steps that remain, and write nothing."""
    workdir = tmp_path / "run"
    shutil.copytree(run, workdir)
    shutil.rmtree(workdir / "checkpoints" / "3")
    out = tmp_path / "out.safetensors"
    image = tmp_path / "digit.png"
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    before = sorted(tmp_path.rglob("*"))
    lines = {error_line(argv, capsys) for argv in (
        ["convert", "export", "--workdir", str(workdir), "--step", "3", "--out", str(out)],
        ["eval", "--workdir", str(workdir), "--step", "3"],
        ["predict", "--workdir", str(workdir), "--step", "3", str(image)])}
    assert lines == {"error: no checkpoint at step 3; available steps: 6"}
    assert sorted(tmp_path.rglob("*")) == before
    # 'best' is among the steps that exist: step 3 scored best but is gone, so step 6
    assert cli.main(["convert", "export", "--workdir", str(workdir), "--step", "best", "--out",
                     str(out)]) == 0
    assert "step 6" in capsys.readouterr().out


@pytest.fixture()
def bad_files(tmp_path) -> dict[str, pathlib.Path]:
    """Weights files a user may hand over by mistake."""
    good = variables_to_torch(random_variables(abstract("lenet5"), seed=1), "lenet5")
    files = {"another model": save_state_dict(
        variables_to_torch(random_variables(abstract("resnet20"), seed=2), "resnet20"),
        tmp_path / "resnet20.safetensors")}
    for suffix in (".safetensors", ".npz"):
        whole = save_state_dict(good, tmp_path / f"whole{suffix}").read_bytes()
        (tmp_path / f"truncated{suffix}").write_bytes(whole[:len(whole) // 2])
        files[f"truncated {suffix}"] = tmp_path / f"truncated{suffix}"
    files["unknown extension"] = tmp_path / "lenet5.h5"
    files["unknown extension"].write_bytes(b"\x89HDF")
    return files


MESSAGES = {"another model": "does not fit lenet5",
            "truncated .safetensors": "truncated.safetensors", "truncated .npz": "truncated.npz",
            "unknown extension": "expected a name ending in"}


@pytest.mark.parametrize("what", list(MESSAGES))
def test_bad_weights_are_one_line_and_nothing_is_written(bad_files, mnist, tmp_path, capsys, what):
    path = bad_files[what]
    out = tmp_path / "out"
    tools = [["convert", "export", "--weights", str(path), "--model", "lenet5",
              "--out", str(out / "x.safetensors")],
             ["convert", "import", str(path), "--model", "lenet5", "--out", str(out / "x.npz")],
             ["predict", "--weights", str(path), "--model", "lenet5", str(tmp_path)],
             ["eval", "--weights", str(path), "--model", "lenet5", "--data", f"idx:{mnist}",
              "--out", str(out)]]
    for argv in tools:
        assert MESSAGES[what] in error_line(argv, capsys), argv
        assert not out.exists(), argv


def test_init_weights_starts_a_run_from_a_weights_file(run, tmp_path, capsys):
    """config.init_weights: the run's parameters at step 0 are the file's. With a learning rate of
    1e-30 the 2 SGD steps change no weight (each update is below 1e-28, under half an ulp of any
    weight above 1e-20 in magnitude), so the step-2 checkpoint holds the file's arrays bit for bit.
    A file that does not fit (another class count) is refused in one line."""
    exported = tmp_path / "l5.safetensors"
    assert cli.main(["convert", "export", "--workdir", str(run), "--step", "6",
                     "--out", str(exported)]) == 0
    workdir = tmp_path / "init"
    argv = ["train", TINY, "--workdir", str(workdir), "--config.num_steps=2",
            "--config.schedule.base_lr=1e-30", f"--config.init_weights={exported}"]
    assert cli.main(argv) == 0
    assert "initialised from the weights in" in capsys.readouterr().out
    assert_trees_equal(checkpoint_variables(workdir, 2), checkpoint_variables(run, 6))
    # Resumed, the checkpoint wins: another file is not read (this one would not even fit).
    other = save_state_dict(variables_to_torch(random_variables(abstract("resnet20")), "resnet20"),
                            tmp_path / "r20.safetensors")
    assert cli.main([*argv[:-1], "--config.num_steps=4", f"--config.init_weights={other}"]) == 0
    assert "(config.init_weights is for a fresh run: not read)" in capsys.readouterr().out

    wide = save_state_dict(
        variables_to_torch(random_variables(abstract("lenet5", num_classes=100)), "lenet5"),
        tmp_path / "lenet5_100.npz")
    message = error_line(["train", TINY, "--workdir", str(tmp_path / "w2"), "--config.num_steps=2",
                          f"--config.init_weights={wide}"], capsys)
    assert "lenet5_100.npz" in message and "output.weight (100, 84) (expected (10, 84))" in message
    assert not (tmp_path / "w2").exists()  # refused before the workdir is opened: nothing written
    message = error_line(["train", TINY, "--workdir", str(tmp_path / "w3"),
                          "--config.init_weights=/nonexistent.pth"], capsys)
    assert "config.init_weights='/nonexistent.pth'" in message
    assert not (tmp_path / "w3").exists()


def test_an_imported_file_records_what_fit_weights_reads(run, tmp_path):
    """fit_weights reads an imported .npz (its variables, back through torch names) as it reads the
    state dict it came from."""
    from cnnjax.convert import fit_weights

    exported = tmp_path / "l5.safetensors"
    assert cli.main(["convert", "export", "--workdir", str(run), "--step", "3",
                     "--out", str(exported)]) == 0
    imported = tmp_path / "l5.npz"
    assert cli.main(["convert", "import", str(exported), "--model", "lenet5",
                     "--out", str(imported)]) == 0
    assert record.RECORD_KEY in load_state_dict(imported)
    template = abstract("lenet5")
    assert_trees_equal(fit_weights(imported, template, "lenet5"),
                       fit_weights(exported, template, "lenet5"))
    assert_trees_equal(fit_weights(imported, template, "lenet5"), checkpoint_variables(run, 3))
    with pytest.raises(ValueError, match="does not fit resnet20"):
        fit_weights(imported, abstract("resnet20"), "resnet20")
    assert evaluate.resolve_step("best", [3, 6], [{"step": 3, "eval/top1": 0.2}], "eval/top1",
                                 "max") == 3


@pytest.mark.parametrize("source, model, channels, expected", [
    # the preset whose source has the same kind and folder name; LeNet-5's fixed 32x32 input
    ("idx:../shared/data/mnist", "lenet5", 1,
     dict(preset="mnist", image_size=32, channels=1, mean=(0.1307,), eval_transform="pad_or_crop")),
    ("idx:/elsewhere/fashion_mnist/", "lenet5", 1,
     dict(preset="fashion_mnist", image_size=32, mean=(0.2860,))),
    # a globally pooled RGB model on gray digits: the preset's 28, the one mean repeated
    ("idx:data/mnist", "resnet20", 3, dict(preset="mnist", image_size=28, channels=3,
                                           mean=(0.1307,) * 3, std=(0.3081,) * 3)),
    ("tfds:cifar10", "resnet20", 3, dict(preset="cifar10", image_size=32, eval_split="test")),
    # no preset: ImageNet's settings; a folder's split is 'test'; VGG keeps 224 of 256
    ("folder:/data/val", "vgg11", 3, dict(preset="imagenet2012", image_size=224, resize_size=256,
                                          eval_split="test", eval_transform="center_crop")),
    # LeNet-5 on a folder of photos: its 32x32 gray input, the resize keeping 256:224
    ("folder:/photos", "lenet5", 1, dict(image_size=32, resize_size=37, channels=1)),
])
def test_data_settings_for_weights_without_a_config(source, model, channels, expected):
    from types import SimpleNamespace

    data = evaluate.data_for_weights(source, SimpleNamespace(model=model, input_channels=channels))
    got = {k: tuple(data[k]) if isinstance(data[k], list | tuple) else data[k] for k in expected}
    assert got == expected
