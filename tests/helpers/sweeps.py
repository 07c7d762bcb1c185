"""Sweep folders written by hand, as a sweep leaves them (for status, summarize and the experiments'
analyses). Imported as helpers.sweeps."""

from __future__ import annotations

import json
import pathlib


def write_point(sweep: pathlib.Path, name: str, records: list[dict], overrides: dict | None = None,
                num_steps: int = 8, exit_code: int | None = 0, log: str = "done: 8 steps\n"):
    """A point's folder as a sweep leaves it: metrics.jsonl (when `records` is not None), and with
    `overrides` its sweep_point.json, log.txt and exit_code."""
    folder = sweep / name
    folder.mkdir(parents=True)
    if records is not None:
        with (folder / "metrics.jsonl").open("w") as f:
            for record in records:
                f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    if overrides is not None:
        (folder / "sweep_point.json").write_text(json.dumps(
            {"name": name, "overrides": overrides, "num_steps": num_steps, "num_epochs": 1.0}))
        (folder / "log.txt").write_text(log)
        if exit_code is not None:
            (folder / "exit_code").write_text(f"{exit_code}\n")


def write_sweep(sweep: pathlib.Path, points: list[tuple[str, dict]]) -> None:
    """sweep.json naming `points` ((name, overrides) in sweep order)."""
    (sweep / "sweep.json").write_text(json.dumps({"config": "c.py", "points": [
        {"name": name, "overrides": overrides} for name, overrides in points]}))
