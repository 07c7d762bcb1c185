"""Evaluation that fits any device count (the batch padded, the padding masked out) and that reuses
the decoded evaluation set across evaluations while it fits the memory cap."""

import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers.ops_reference import network_rtol

from cnnjax import config as config_io
from cnnjax import data
from cnnjax.train import evaluator
from cnnjax.train.evaluator import EvalCache, padded_batch_size

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "helpers" / "tiny_config.py"


def test_padded_batch_size_rounds_up_to_the_devices():
    assert padded_batch_size(500, 8) == 504
    assert padded_batch_size(512, 8) == 512
    assert padded_batch_size(3, 8) == 8
    with pytest.raises(ValueError, match="must be positive"):
        padded_batch_size(0, 8)


def test_eval_batch_of_500_runs_on_8_devices_and_counts_every_example_once(tmp_path):
    script = textwrap.dedent("""
        import json, sys
        import jax
        from cnnjax import config as config_io
        from cnnjax.train.loop import train_and_evaluate
        config = config_io.load_config(sys.argv[1])
        config_io.apply_overrides(config, ["num_steps=2", "eval_every_steps=2", "eval_batch_size=500",
                                           "data.synthetic_examples=1001", "batch_size=16",
                                           "schedule.base_lr=1e-9"])
        final = train_and_evaluate(config, sys.argv[2])
        print("RESULT", json.dumps({"devices": jax.device_count(), **final}))
    """)
    results = {}
    for devices in (1, 8):
        env = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
               "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
        out = subprocess.run([sys.executable, "-c", script, str(TINY), str(tmp_path / str(devices))],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        results[devices] = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert results[8]["devices"] == 8 and results[8]["eval/examples"] == 1001
    # Same model: at base_lr 1e-9 an update is below half an ulp of nearly every weight, so both
    # runs evaluate the initial LeNet-5 rather than two trainings whose gradients were summed in
    # different orders. Same examples, evaluated in other batch sizes (500 against 63 per device)
    # by kernels that may sum in other orders: logits within 2 * network_rtol(400, 5) = 1.4e-3 of
    # their scale (O(1) for a He-initialised network on unit-scale inputs; 10 with margin), and
    # cross-entropy moves by at most twice the largest logit change: 2.9e-2 against a loss of
    # about ln 10 = 2.3: rtol 1.3e-2. The mean over 1001 adds sum_rtol(1001) = 1.1e-5.
    loss_rtol = 2 * 2 * network_rtol(400, 5) * 10 / np.log(10)
    np.testing.assert_allclose(results[8]["eval/loss"], results[1]["eval/loss"], rtol=loss_rtol)
    # Counts of correct examples: equal unless an example's top-k margin lies within the logits'
    # rounding; kept exact, because one example more or less is what a padding bug looks like.
    for key in ("eval/top1", "eval/top5"):
        assert round(results[8][key] * 1001) == round(results[1][key] * 1001), key


def counting(monkeypatch) -> list:
    calls = []
    original = data.eval_batches

    def eval_batches(*args, **kwargs):
        calls.append(kwargs["global_batch_size"])
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluator.data, "eval_batches", eval_batches)
    return calls


def passes(cache, config, n=2) -> list[list[dict]]:
    return [list(cache.batches(config.data, global_batch_size=48, split=None, crops=1))
            for _ in range(n)]


def test_a_second_pass_comes_from_memory(monkeypatch):
    config = config_io.load_config(str(TINY))
    calls = counting(monkeypatch)
    first, second = passes(EvalCache(1e9), config)
    assert calls == [48]  # the pipeline was built once
    assert len(first) == 6 and len(second) == 6  # 256 examples in batches of 48
    for a, b in zip(first, second, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert int(sum(b["mask"].sum() for b in second)) == 256


def test_a_pass_over_the_cap_is_decoded_again(monkeypatch):
    config = config_io.load_config(str(TINY))
    calls = counting(monkeypatch)
    one_batch = 48 * 32 * 32 + 48 * 4 + 48  # images, labels, mask
    first, second = passes(EvalCache(3 * one_batch), config)
    assert calls == [48, 48] and len(first) == len(second) == 6
