"""summarize on hand-written sweep folders: the CSV numbers, the markdown table, failed points kept
and marked, the errors."""

import csv
import json
import os
import pathlib
import socket

import pytest
from helpers.sweeps import write_point, write_sweep

from cnnjax import cli
from cnnjax.sweep import summarize


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
    ], {"model.activation": "tanh", "seed": 0}, num_steps=12)
    write_sweep(root, [("model.activation=tanh,seed=0", {"model.activation": "tanh", "seed": 0}),
                       ("model.activation=relu,seed=0", {"model.activation": "relu", "seed": 0})])
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
    # accuracies in percent, as training logs them (0.45 logged: 45%); losses as logged
    assert float(relu["final eval/top1 (%)"]) == 45 and float(relu["best eval/top1 (%)"]) == 50
    assert int(relu["best_step"]) == 4 and int(relu["last_step"]) == 8
    assert float(relu["final train/loss"]) == 1.0 and float(relu["final eval/top5 (%)"]) == 95
    assert float(tanh["final eval/top1 (%)"]) == 55 and float(tanh["best eval/top1 (%)"]) == 60
    assert int(tanh["best_step"]) == 4  # a tie with step 8: the earlier step
    assert int(tanh["last_step"]) == 12
    assert tanh["final train/loss"] == ""  # never logged
    assert cols[:5] == ["point", "model.activation", "seed", "status", "last_step"]
    assert tanh["status"] == relu["status"] == "finished"


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
    assert header.startswith("| point | model.activation | seed | status | last_step |")
    assert len(body) == 2
    assert body[1].startswith("| model.activation=relu,seed=0 | relu | 0 | finished | 8 |")
    assert "| 45.00 |" in body[1] and "| 50.00 |" in body[1]
    assert (sweep / "eval_top1.png").is_file()


def test_failed_points_stay_in_the_table_and_figure_marked_with_the_reason(tmp_path, capsys,
                                                                          monkeypatch):
    """The issue's sweep: one point fails at model build (no metrics at all), one diverges (today's
    trainer: exit 2 and 'loss is nan'; the new one: exit 3), one still runs, one finished."""
    root = tmp_path / "sweep"
    ok = [{"step": 4, "eval/top1": 0.5}, {"step": 8, "eval/top1": 0.6}]
    write_point(root, "act=relu", ok, {"act": "relu"})
    write_point(root, "act=bogus", None, {"act": "bogus"}, exit_code=2,
                log="[cmd]\nerror: unknown activation 'bogus'; expected relu, tanh\n")
    write_point(root, "lr=9", [{"step": 4, "eval/top1": 0.1}], {"lr": 9}, exit_code=2,
                log="error: loss is nan (or the parameters are no longer finite) at step 6\n")
    write_point(root, "lr=8", [{"step": 2, "eval/top1": 0.1}], {"lr": 8}, exit_code=3,
                log="error: loss is inf at step 4\n")
    write_point(root, "lr=7", [{"step": 4, "eval/top1": 0.2}], {"lr": 7}, exit_code=None)
    (root / "lr=7" / "running.json").write_text(json.dumps({"pid": os.getpid(),
                                                            "host": socket.gethostname()}))
    write_sweep(root, [(n, json.loads((root / n / "sweep_point.json").read_text())["overrides"])
                       for n in ("act=relu", "act=bogus", "lr=9", "lr=8", "lr=7")])
    curves = []
    monkeypatch.setattr(summarize, "plot_metric", lambda path, c, metric, title: curves.append(
        (title, c)))

    assert cli.main(["summarize", str(root)]) == 1
    out = capsys.readouterr().out
    rows = {r["point"]: r for r in csv.DictReader((root / "results.csv").open())}
    assert list(rows) == ["act=relu", "act=bogus", "lr=9", "lr=8", "lr=7"]
    assert rows["act=relu"]["status"] == "finished" and rows["act=relu"]["last_step"] == "8"
    assert rows["act=bogus"]["status"] == (
        "failed: user error (exit status 2) before logging any metrics: "
        "error: unknown activation 'bogus'; expected relu, tanh")
    assert rows["act=bogus"]["last_step"] == "" and rows["act=bogus"]["final eval/top1 (%)"] == ""
    assert rows["lr=9"]["status"].startswith("failed: diverged (exit status 2), last logged step 4: error: "
                                             "loss is nan")
    assert rows["lr=8"]["status"].startswith("failed: diverged (exit status 3), last logged step 2: error: "
                                             "loss is inf")
    assert rows["lr=7"]["status"].startswith(f"running: pid {os.getpid()} on ")
    assert "3 of 5 points FAILED:" in out
    assert "  act=bogus: user error (exit status 2) before logging any metrics: error: unknown" in out
    assert "1 of 5 points are still running or pending: the table is not final" in out
    (title, drawn), = curves
    assert title.endswith("(3 failed)")
    assert [label for label, _, _ in drawn] == ["act=relu", "act=bogus [FAILED]", "lr=9 [FAILED]",
                                                "lr=8 [FAILED]", "lr=7 [running]"]
    assert drawn[1][1] == [] and drawn[2][1] == [4]  # no curve to draw, but in the legend


def test_a_sweep_where_every_point_failed_still_gets_its_table(tmp_path, capsys):
    root = tmp_path / "sweep"
    write_point(root, "a", None, {"a": 1}, exit_code=1, log="Traceback ...\nKeyError: 'x'\n")
    write_sweep(root, [("a", {"a": 1})])
    assert cli.main(["summarize", str(root)]) == 1
    row, = csv.DictReader((root / "results.csv").open())
    assert row["status"] == "failed: crashed (exit status 1) before logging any metrics: KeyError: 'x'"


def test_folders_without_sweep_records_use_their_names(tmp_path):
    write_point(tmp_path, "run_b", [{"step": 1, "eval/top1": 0.1}])
    write_point(tmp_path, "run_a", [{"step": 1, "eval/top1": 0.2}])
    rows, cols = summarize.summarize(tmp_path)
    assert [r["point"] for r in rows] == ["run_a", "run_b"]
    assert cols == ["point", "last_step", "final eval/top1 (%)", "best eval/top1 (%)", "best_step"]


@pytest.mark.parametrize("setup, args, message", [
    (lambda p: None, [], "does not exist"),
    (lambda p: p.mkdir(), [], "no results in"),
    (lambda p: write_point(p, "x", []), [], "no results in"),
    (lambda p: (write_point(p, "x", None, {"x": 1}, exit_code=None, log=""),
                (p / "x" / "log.txt").unlink(), write_sweep(p, [("x", {"x": 1})])), [],
     "no results in"),
    (lambda p: write_point(p, "x", [{"step": 1, "eval/top1": 0.1}]), ["--metric", "eval/top9"],
     "'eval/top9' is in no point's metrics.jsonl; logged metrics: eval/top1"),
])
def test_errors_are_one_line(tmp_path, capsys, setup, args, message):
    target = tmp_path / "sweep"
    setup(target)
    assert cli.main(["summarize", str(target), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_each_metric_has_its_own_results_files(sweep):
    summarize.summarize(sweep)  # the default metric, eval/top1: results.csv and .md as before
    default_csv, default_md = (sweep / "results.csv").read_bytes(), (sweep / "results.md").read_bytes()
    summarize.summarize(sweep, "train/loss")
    assert (sweep / "results.csv").read_bytes() == default_csv  # not overwritten
    assert (sweep / "results.md").read_bytes() == default_md
    rows = list(csv.DictReader((sweep / "results_train_loss.csv").open()))
    assert {r["point"]: r["best train/loss"] for r in rows} == {
        "model.activation=tanh,seed=0": "", "model.activation=relu,seed=0": "1.0"}
    assert (sweep / "results_train_loss.md").read_text().startswith("| point |")
    assert (sweep / "train_loss.png").is_file()
    assert not list(sweep.glob(".*"))  # no temporary file left behind
    assert summarize.results_name("eval/top-5 (crops)") == "results_eval_top_5_crops"


def test_accuracies_are_percent_and_other_metrics_as_logged(tmp_path):
    write_point(tmp_path, "a", [{"step": 1, "train/top1": 0.5836, "train/loss": 0.25,
                                 "train/lr": 0.5, "eval/top5": 1.0}])
    rows, cols = summarize.summarize(tmp_path, "train/top1")
    row, = rows
    # training prints train/top1 0.5836 as 58.36%; 1e-9 absolute covers the double rounding of x100
    assert row["final train/top1 (%)"] == pytest.approx(58.36, abs=1e-9)
    assert row["best train/top1 (%)"] == pytest.approx(58.36, abs=1e-9)
    assert row["final eval/top5 (%)"] == 100 and row["final train/loss"] == 0.25
    assert "| 58.36 | 58.36 |" in (tmp_path / "results_train_top1.md").read_text()
    assert {c for c in cols if c.endswith("(%)")} == {
        "final eval/top5 (%)", "final train/top1 (%)", "best train/top1 (%)"}


def test_a_key_a_point_does_not_override_shows_the_config_value(tmp_path):
    from cnnjax import models

    root = tmp_path / "sweep"
    config = pathlib.Path(__file__).resolve().parents[1] / "helpers" / "tiny_config.py"
    write_point(root, "act", [{"step": 8, "eval/top1": 0.5}], {"model.activation": "relu"})
    (root / "act" / "config.json").write_text(json.dumps(  # what this point trained with
        {"model": {"name": "lenet5", "activation": "relu"}, "schedule": {"base_lr": 0.3}}))
    write_point(root, "lr", [{"step": 8, "eval/top1": 0.4}], {"schedule.base_lr": 0.01})
    write_point(root, "seed", [{"step": 8, "eval/top1": 0.4}], {"seed": 3})
    (root / "sweep.json").write_text(json.dumps({
        "config": str(config), "base_overrides": ["schedule.base_lr=0.07"],
        "points": [{"name": n, "overrides": json.loads((root / n / "sweep_point.json").read_text())[
            "overrides"]} for n in ("act", "lr", "seed")]}))
    summarize.summarize(root)
    rows = {r["point"]: r for r in csv.DictReader((root / "results.csv").open())}
    assert rows["act"]["schedule.base_lr"] == "0.3"  # from its config.json
    assert rows["act"]["seed"] == "0"  # config.json lacks it: tiny_config's default_config seed
    assert rows["lr"]["schedule.base_lr"] == "0.01"  # its own override
    # no config.json: tiny_config.py with the sweep's base override, and lenet5's default activation
    assert rows["lr"]["model.activation"] == models.knobs("lenet5")["activation"]
    assert rows["seed"]["schedule.base_lr"] == "0.07" and rows["seed"]["seed"] == "3"
