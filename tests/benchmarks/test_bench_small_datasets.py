"""benchmarks/small_datasets.py runs the training loop on both pipelines and reports what it measured:
a smoke run on a tiny IDX set."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
from helpers.data import write_idx

BENCHMARKS = pathlib.Path(__file__).resolve().parents[2] / "benchmarks"


def test_small_datasets_times_both_pipelines(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 300), ("t10k", 16)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28), np.uint8))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import small_datasets

    rows = small_datasets.main(["--steps", "4", "--repeats", "1", "--jobs", "lenet5",
                                "--data", str(tmp_path)])
    sys.modules.pop("small_datasets", None)
    assert [r["pipeline"] for r in rows] == ["tfdata", "device"]
    for r in rows:  # 4 steps of 128 images in the time the loop measured
        assert r["steps"] == 4 and r["seconds"] > 0
        assert abs(r["images_per_sec"] * r["seconds"] - 4 * 128) < 1e-6 * 4 * 128
    assert "main job (lenet5): device / tfdata images/s = " in capsys.readouterr().out
