"""`eval --weights`: a PyTorch state dict evaluated on a data source, checked against PyTorch itself."""

import json
import pathlib

import numpy as np
import pytest

from cnnjax import data, evaluate
from cnnjax.train import config_io

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


@pytest.mark.parametrize("argv,message", [
    (["--weights", "w.pth"], "--weights needs --data"),
    (["--workdir", "w", "--model", "resnet50"], "go with --weights"),
])
def test_weights_argument_errors(argv, message):
    with pytest.raises(ValueError, match=message):
        evaluate.parse_args(argv)
