"""`./launch.sh visualize` end to end on a tiny trained LeNet-5 run: the files it writes, the numbers
in visualize.json against an independent computation, and bad input (one line, exit 2, nothing
written)."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers.hide_tensorflow import HIDE_TENSORFLOW
from PIL import Image

from cnnjax import cli, ops
from cnnjax import config as config_io
from cnnjax.train.checkpoint import Checkpoints
from cnnjax.train.loop import build_model, train_and_evaluate

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "helpers" / "tiny_config.py")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> pathlib.Path:
    """A 4-step LeNet-5 run on synthetic 32x32x1 data with checkpoints at steps 2 and 4."""
    config = config_io.load_config(TINY)
    config_io.apply_overrides(config, ["num_steps=4"])
    workdir = tmp_path_factory.mktemp("tiny_run")
    train_and_evaluate(config, workdir)
    return workdir


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("images") / "digit.png"
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(pixels, "L").save(path)
    return path


def _reference_probabilities(workdir: pathlib.Path, step: int, image: np.ndarray) -> np.ndarray:
    """Softmax of the model on one uint8 (H, W, 1) image, with parameters read as plain arrays from
    the checkpoint and numpy normalisation."""
    config = config_io.load_saved_config(workdir)
    arrays = Checkpoints(workdir / "checkpoints").read_arrays(step)
    x = (image[None].astype(np.float64) / 255.0 - np.asarray(config.data.mean)) / np.asarray(
        config.data.std)
    logits = np.asarray(build_model(config, 10).apply({"params": arrays["params"]},
                                                      x.astype(np.float32), train=False), np.float64)
    e = np.exp(logits - logits.max())
    return (e / e.sum())[0]


@pytest.mark.slow  # > 5 s on the 2-core CPU (two commands: about a minute)
def test_visualize_writes_figures_numbers_and_a_page_that_links_them(run, image, tmp_path, capsys):
    out = tmp_path / "vis"
    argv = ["visualize", "--workdir", str(run), "--step", "2", "--image", str(image), "--out",
            str(out), "--patch-examples", "40", "--erf-images", "2", "--top-k", "3", "--units", "2",
            "--filters", "c3"]
    assert cli.main(argv) == 0
    record = json.loads((out / "visualize.json").read_text())
    # LeNet-5's fields by the recurrences: 5, then +1 (pool 2), +4*2, +1*2, +4*4
    assert [(r["name"], r["theoretical_rf"][0]) for r in record["layers"]] == [
        ("c1", 5), ("s2", 6), ("c3", 14), ("s4", 16), ("c5", 32)]
    for r in record["layers"]:
        assert 0 < r["erf_d95"] <= r["erf_support"][0] <= r["theoretical_rf"][0]
    (entry,) = record["images"]
    probs = _reference_probabilities(run, 2, np.asarray(Image.open(image))[..., None])
    assert entry["predicted_class"] == int(np.argmax(probs))
    # softmax of 10 float32 logits against float64: a few float32 eps of a value below 1
    assert entry["probability"] == pytest.approx(probs.max(), abs=1e-6)
    top = record["top_patches"]
    assert sorted(top) == ["c1", "c3", "c5"]  # three depths: first, middle, last
    for units in top.values():
        for hits in units.values():
            values = [h["value"] for h in hits]
            assert len(hits) == 3 and values == sorted(values, reverse=True)
            assert len({h["image"] for h in hits}) == 3 and all(0 <= h["image"] < 40 for h in hits)
    # c1's recorded activation is its convolution on the cropped field of that evaluation image
    config = config_io.load_saved_config(run)
    from cnnjax import data

    images = np.concatenate([b["image"] for b in data.eval_batches(config.data, global_batch_size=64)])
    params = Checkpoints(run / "checkpoints").read_arrays(2)["params"]["c1"]
    for unit, hits in top["c1"].items():
        for h in hits:
            t, left, size, _ = h["box"]
            piece = images[h["image"], t:t + size, left:left + size].astype(np.float32)
            x = (piece[None] / 255.0 - 0.5) / 0.25
            value = ops.conv2d(x, params["kernel"], params["bias"])[0, 0, 0, int(unit)]
            assert float(value) == pytest.approx(h["value"], abs=1e-5)  # a 25-tap float32 sum
    page = (out / "index.html").read_text()
    linked = set(re.findall(r'src="([^"]+)"', page))
    pngs = {p.name for p in out.glob("*.png")}
    assert linked == pngs and {"erf.png", "filters_c1.png", "filters_c3.png", "maps_c3.png",
                               "attribution_0.png", "patches_c5.png"} <= pngs
    for png in pngs:
        assert Image.open(out / png).size[0] > 50
    assert not list(tmp_path.glob(".vis.partial-*"))
    # a second run into the same folder replaces the files in place
    assert cli.main([*argv[:-2], "--layers", "c1"]) == 0
    assert [r["name"] for r in json.loads((out / "visualize.json").read_text())["layers"]] == ["c1"]


@pytest.mark.slow  # > 5 s on the 2-core CPU (export, import, visualize)
def test_imported_weights_are_visualized_with_the_model_they_record(run, image, tmp_path, capsys):
    """The converters chain into visualize: export the run's step 4, import it (the .npz records
    lenet5 and its knobs), visualize it without --model: the same prediction as from the run."""
    pth, npz = tmp_path / "l5.pth", tmp_path / "l5.npz"
    assert cli.main(["convert", "export", "--workdir", str(run), "--step", "4", "--out", str(pth)]) == 0
    assert cli.main(["convert", "import", str(pth), "--model", "lenet5", "--out", str(npz)]) == 0
    common = ["--image", str(image), "--patch-examples", "8", "--erf-images", "1", "--layers", "c1"]
    assert cli.main(["visualize", "--weights", str(npz), "--config", TINY, "--out",
                     str(tmp_path / "from_weights"), *common]) == 0
    assert cli.main(["visualize", "--workdir", str(run), "--step", "4", "--out",
                     str(tmp_path / "from_run"), *common]) == 0
    capsys.readouterr()
    (a,), (b,) = (json.loads((tmp_path / d / "visualize.json").read_text())["images"]
                  for d in ("from_weights", "from_run"))
    assert a["predicted_class"] == b["predicted_class"]
    # the same float32 parameters through the same jitted model: equal up to a few roundings
    assert a["probability"] == pytest.approx(b["probability"], abs=1e-6)


@pytest.mark.parametrize("args, message", [
    (["--workdir", "{missing}"], "does not exist"),
    (["--workdir", "{run}", "--image", "{missing}"], "does not exist"),
    (["--workdir", "{run}", "--layers", "c9"], "choose from: all, c1, s2, c3, s4, c5"),
    (["--workdir", "{run}", "--gradcam-layer", "fc"], "choose from: all, c1"),
    (["--workdir", "{run}", "--filters", "s2"], "conv layers: c1, c3, c5"),
    (["--workdir", "{run}", "--step", "3"], "available steps: 2, 4"),
    (["--workdir", "{run}", "--units", "0"], "--units must be at least 1"),
    (["--workdir", "{run}", "--class", "10"], "0 to 9"),
    (["--workdir", "{run}", "--image", "{text}"], "cannot read image"),
    (["--weights", "{missing}", "--model", "lenet5"], "{missing}"),
    (["--weights", "{text}"], "unsupported weights file"),
    (["--workdir", "{run}", "--knob", "transform_input=False"], "go with --weights"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(run, tmp_path, capsys, args, message):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    values = {"run": str(run), "missing": str(tmp_path / "absent"), "text": str(text)}
    out = tmp_path / "vis"
    argv = ["visualize", *[a.format(**values) for a in args], "--out", str(out),
            "--patch-examples", "8", "--erf-images", "1"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message.format(**values) in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.slow  # > 5 s on the 2-core CPU (a fresh interpreter imports JAX)
def test_visualize_functions_run_without_tensorflow():
    script = HIDE_TENSORFLOW + textwrap.dedent("""
        import jax, jax.numpy as jnp
        from cnnjax.models import build
        from cnnjax.visualize import erf, features
        model = build("lenet5", num_classes=10)
        v = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
        table = features.layers(model, (32, 32, 1))
        m = erf.erf_map(lambda x: features.feature_maps(model, v, x, ["c3"])["c3"],
                        jnp.ones((1, 32, 32, 1)))
        print("RESULT", erf.support(m), sorted(k for k in sys.modules if k.startswith("tensorflow")))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("RESULT ", 1)[1].strip() == "(14, 14) []"
