"""benchmarks/profile_step.py names each oneDNN custom call by its target: the per-op table of a
traced lenet5 step has the three convolution maps with the number of conv layers each runs."""

from __future__ import annotations

import pathlib
import sys

import pytest

from cnnjax.ops import onednn

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.skipif(not onednn.load(), reason="the oneDNN extension is not built here")
def test_profile_counts_the_onednn_calls_of_a_lenet5_step(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import profile_step

    bench = profile_step.bench_jax("lenet5", 8, "float32", 2, 1, "onednn")
    targets = profile_step.custom_call_targets(bench["compiled"].as_text())
    total, calls = profile_step.op_times(bench["run"], 2, targets)
    # LeNet-5 has three convolutions (C1, C3, C5); the input's gradient is not needed for C1.
    assert calls["cnnjax_onednn_conv_fwd"] == 3
    assert calls["cnnjax_onednn_conv_bwd_weights"] == 3
    assert calls["cnnjax_onednn_conv_bwd_data"] == 2
    assert all(ms > 0 for ms in total.values())
    sys.modules.pop("profile_step", None)
