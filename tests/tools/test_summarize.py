"""summarize on hand-written metrics.jsonl files: the CSV numbers, the markdown table, the errors."""

import csv
import json
import pathlib

import pytest

from cnnjax import cli, summarize


def write_point(sweep: pathlib.Path, name: str, records: list[dict], overrides: dict | None = None):
    folder = sweep / name
    folder.mkdir(parents=True)
    with (folder / "metrics.jsonl").open("w") as f:
        for record in records:
            f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    if overrides is not None:
        (folder / "sweep_point.json").write_text(json.dumps({"name": name, "overrides": overrides}))


@pytest.fixture
def sweep(tmp_path) -> pathlib.Path:
    root = tmp_path / "sweep"
    write_point(root, "model.activation=relu,seed=0", [
        {"step": 2, "train/loss": 2.0, "train/top1": 0.2},
        {"step": 4, "train/loss": 1.5, "train/top1": 0.4},
        {"step": 4, "eval/top1": 0.50, "eval/top5": 0.9, "eval/loss": 1.4},
        {"step": 8, "train/loss": 1.0, "train/top1": 0.6},
        {"step": 8, "eval/top1": 0.45, "eval/top5": 0.95, "eval/loss": 1.2},
    ], {"model.activation": "relu", "seed": 0})
    # resumed after step 4: step 4 is logged twice, and the later record is the one that counts
    write_point(root, "model.activation=tanh,seed=0", [
        {"step": 4, "eval/top1": 0.30, "eval/loss": 2.0},
        {"step": 4, "eval/top1": 0.60, "eval/loss": 1.1},
        {"step": 8, "eval/top1": 0.60, "eval/loss": 0.9},
        {"step": 12, "eval/top1": 0.55, "eval/loss": 1.0},
        '{"step": 16, "eval/to',  # a line cut short by a crash
    ], {"model.activation": "tanh", "seed": 0})
    (root / "sweep.json").write_text(json.dumps({"points": [
        {"name": "model.activation=tanh,seed=0"}, {"name": "model.activation=relu,seed=0"}]}))
    (root / "not_a_point").mkdir()
    return root


def test_csv_has_final_and_best_values_per_point(sweep):
    _, cols = summarize.summarize(sweep, "eval/top1")
    with (sweep / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [r["point"] for r in table] == ["model.activation=tanh,seed=0",
                                           "model.activation=relu,seed=0"]  # sweep.json order
    tanh, relu = table
    assert tanh["model.activation"] == "tanh" and tanh["seed"] == "0"
    assert float(relu["final eval/top1"]) == 0.45 and float(relu["best eval/top1"]) == 0.50
    assert int(relu["best_step"]) == 4 and int(relu["last_step"]) == 8
    assert float(relu["final train/loss"]) == 1.0 and float(relu["final eval/top5"]) == 0.95
    assert float(tanh["final eval/top1"]) == 0.55 and float(tanh["best eval/top1"]) == 0.60
    assert int(tanh["best_step"]) == 4  # a tie with step 8: the earlier step
    assert int(tanh["last_step"]) == 12
    assert tanh["final train/loss"] == ""  # never logged
    assert cols[:3] == ["point", "model.activation", "seed"]


def test_a_loss_metric_is_minimised_and_the_figure_is_written(sweep):
    rows, _ = summarize.summarize(sweep, "eval/loss")
    best = {r["point"]: (r["best eval/loss"], r["best_step"]) for r in rows}
    assert best["model.activation=relu,seed=0"] == (1.2, 8)
    assert best["model.activation=tanh,seed=0"] == (0.9, 8)
    rows, _ = summarize.summarize(sweep, "eval/loss", mode="max")
    assert {r["best eval/loss"] for r in rows} == {1.4, 1.1}
    png = sweep / "eval_loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_prints_and_saves_the_markdown_table(sweep, capsys):
    assert cli.main(["summarize", str(sweep)]) == 0
    out = capsys.readouterr().out
    saved = (sweep / "results.md").read_text()
    assert saved in out
    header, _, *body = saved.splitlines()
    assert header.startswith("| point | model.activation | seed | last_step |")
    assert len(body) == 2 and body[1].startswith("| model.activation=relu,seed=0 | relu | 0 | 8 |")
    assert "| 0.45 |" in body[1] and "| 0.5 |" in body[1]
    assert (sweep / "eval_top1.png").is_file()


def test_folders_without_sweep_records_use_their_names(tmp_path):
    write_point(tmp_path, "run_b", [{"step": 1, "eval/top1": 0.1}])
    write_point(tmp_path, "run_a", [{"step": 1, "eval/top1": 0.2}])
    rows, cols = summarize.summarize(tmp_path)
    assert [r["point"] for r in rows] == ["run_a", "run_b"]
    assert cols == ["point", "last_step", "final eval/top1", "best eval/top1", "best_step"]


@pytest.mark.parametrize("setup, args, message", [
    (lambda p: None, [], "does not exist"),
    (lambda p: p.mkdir(), [], "no results in"),
    (lambda p: write_point(p, "x", []), [], "no results in"),
    (lambda p: write_point(p, "x", [{"step": 1, "eval/top1": 0.1}]), ["--metric", "eval/top9"],
     "'eval/top9' is in no point's metrics.jsonl; logged metrics: eval/top1"),
])
def test_errors_are_one_line(tmp_path, capsys, setup, args, message):
    target = tmp_path / "sweep"
    setup(target)
    assert cli.main(["summarize", str(target), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
