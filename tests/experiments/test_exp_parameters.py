"""experiments/parameters/run.py: the counting helpers against hand arithmetic and the notes."""

from __future__ import annotations

import pytest


@pytest.fixture
def run(experiment_module):
    return experiment_module("parameters/run.py")


def test_conv_params_by_hand(run):
    assert run.conv_params(3, 1, 1, bias=False) == 9
    assert run.conv_params(3, 3, 64) == 3 * 3 * 3 * 64 + 64
    assert run.conv_params(5, 6, 16) == 2_416  # LeNet-5's C3 with full connectivity


def test_dense_params_match_the_notes(run):
    assert run.dense_params((224, 224, 3), 1024, bias=False) == 154_140_672
    assert run.dense_params((32, 32, 1), 512, bias=False) == 1024 * 512
    assert run.dense_params((32, 32, 1), 512) == 1024 * 512 + 512


@pytest.mark.parametrize("bad", [(0, 1, 1), (3, 0, 1), (3, 1, 0)])
def test_conv_params_rejects_empty_layers(run, bad):
    with pytest.raises(ValueError, match="must be >= 1"):
        run.conv_params(*bad)


def test_first_layer_rows_hold_the_notes_numbers(run):
    rows = {r["layer"]: r for r in run.first_layer_rows()}
    assert rows["dense 224x224x3 -> 1024 units (notes)"]["weights"] == 154_140_672
    assert rows["one 3x3 filter, 1 channel"]["weights"] == 9


def test_ratio(run):
    assert run.ratio(19.6e9, 19.6e9) == 1.0
    assert run.ratio(5.0, None) is None
    with pytest.raises(ValueError, match="positive"):
        run.ratio(1.0, 0.0)


def test_lenet5_row_from_the_layer_list(run):
    """The table's LeNet-5 row: 61,706 parameters; multiply-adds summed by hand over C1, C3
    (full connectivity), C5, F6 and the output layer."""
    (row,) = run.architecture_rows(["lenet5"])
    macs = 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 120 * 400 + 84 * 120 + 10 * 84
    assert (row["params"], row["macs"], row["input"]) == (61_706, macs, "32x32x1")
    assert row["params_ratio"] == pytest.approx(61_706 / 60_000)


def test_rows_sort_by_family_then_size(run):
    rows = [{"model": m, "input": i, "params": p} for m, i, p in
            [("resnet20", "32x32x3", 1), ("alexnet", "224x224x3", 9), ("resnet18", "224x224x3", 5),
             ("lenet5", "32x32x1", 2)]]
    assert [r["model"] for r in sorted(rows, key=run.family_order)] == [
        "lenet5", "alexnet", "resnet18", "resnet20"]
