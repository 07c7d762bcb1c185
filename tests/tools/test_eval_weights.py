"""`eval --weights`: a PyTorch state dict evaluated on a data source, checked against PyTorch itself."""

import json
import pathlib

import numpy as np
import pytest

from cnnjax import cli, data, evaluate
from cnnjax import config as config_io

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = str(REPO / "tests" / "helpers" / "tiny_config.py")


def test_torch_lenet5_weights_score_what_torch_scores(tmp_path):
    from cnnjax.convert.torch_models import build_torch_model

    torch.manual_seed(0)
    net = build_torch_model("lenet5", num_classes=10).eval()
    weights = tmp_path / "lenet5.pth"
    torch.save(net.state_dict(), weights)

    out = tmp_path / "out"
    assert evaluate.main(["--weights", str(weights), "--model", "lenet5", "--config", TINY,
                          "--out", str(out)]) == 0
    result = json.loads((out / "eval_weights_1crop.json").read_text())

    # The same images through PyTorch: normalised as the config says, NCHW.
    config = config_io.load_config(TINY)
    hits = total = 0
    nll = 0.0
    for batch in data.eval_batches(config.data, global_batch_size=64):
        keep = batch["mask"]
        x = (batch["image"][keep].astype(np.float32) / 255 - 0.5) / 0.25
        with torch.no_grad():
            logits = net(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
        labels = batch["label"][keep]
        hits += int((logits.argmax(-1) == labels).sum())
        log_probs = torch.log_softmax(torch.from_numpy(logits).double(), -1).numpy()
        nll -= float(log_probs[np.arange(len(labels)), labels].sum())
        total += int(keep.sum())
    assert result["examples"] == total == 256
    assert result["top1"] == pytest.approx(hits / total)
    # PyTorch's float32 logits against cnnjax's: 5 layers of K <= 400 terms, eps * log2(K) per layer
    # on each side, sqrt(2 * 5) * log2(400) * eps = 3e-6 of the logits' scale; cross-entropy is
    # 2-Lipschitz in the logits, so the mean loss agrees far within rel 1e-4.
    assert result["loss"] == pytest.approx(nll / total, rel=1e-4)


def test_torch_state_dict_imported_then_evaluated_scores_what_torch_scores(tmp_path):
    """The issue's round trip: a LeNet-5 made in PyTorch (random weights) -> torch.save ->
    `convert import` -> `eval --weights IMPORTED.npz --data idx:DIR/mnist` (no --model, no config:
    the model from the file's record, the settings from the MNIST preset and the weights' one
    input channel and 32x32 input) gives the accuracy and loss of the torch model itself on the
    same images, prepared here by hand: 28x28 padded with 2 zero pixels each side, normalised by
    MNIST's mean 0.1307 and std 0.3081."""
    from helpers.data import write_idx

    from cnnjax.convert.torch_models import build_torch_model

    root = tmp_path / "mnist"
    root.mkdir()
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (60, 28, 28), np.uint8)
    labels = rng.integers(0, 10, 60).astype(np.uint8)
    for prefix in ("train", "t10k"):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    torch.manual_seed(1)
    net = build_torch_model("lenet5", num_classes=10).eval()
    torch.save(net.state_dict(), tmp_path / "lenet5.pth")
    imported = tmp_path / "lenet5.npz"
    assert cli.main(["convert", "import", str(tmp_path / "lenet5.pth"), "--model", "lenet5",
                     "--out", str(imported)]) == 0
    out = tmp_path / "out"
    assert cli.main(["eval", "--weights", str(imported), "--data", f"idx:{root}",
                     "--out", str(out)]) == 0
    (result,) = [json.loads(p.read_text()) for p in out.glob("eval_weights_*.json")]

    x = (np.pad(images, ((0, 0), (2, 2), (2, 2))).astype(np.float32) / 255 - 0.1307) / 0.3081
    with torch.no_grad():
        logits = net(torch.from_numpy(x[:, None])).double()
    log_probs = torch.log_softmax(logits, -1).numpy()
    assert result["examples"] == 60
    assert result["top1"] == pytest.approx(np.mean(log_probs.argmax(-1) == labels), abs=1e-12)
    # The same bound as above: PyTorch's and cnnjax's float32 logits differ by
    # sqrt(2 * 5) * log2(400) * eps = 3e-6 of their scale, and the mean cross-entropy, 2-Lipschitz
    # in the logits, agrees far within rel 1e-4.
    nll = -float(log_probs[np.arange(60), labels].mean())
    assert result["loss"] == pytest.approx(nll, rel=1e-4)


@pytest.mark.parametrize("argv,message", [
    (["--weights", "w.pth"], "--weights needs --data"),
    (["--workdir", "w", "--model", "resnet50"], "go with --weights"),
])
def test_weights_argument_errors(argv, message):
    with pytest.raises(ValueError, match=message):
        evaluate.parse_args(argv)
