"""Where metrics go: metrics.jsonl and (where tensorboardX is installed) TensorBoard event files in the
workdir, and a console line.

Only process 0 writes; other processes get a writer that does nothing.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys
import time

METRICS_FILE = "metrics.jsonl"


def is_fraction(key: str) -> bool:
    """Whether metric `key` is logged as a fraction in [0, 1] and shown as a percent: the top-k
    accuracies (train/top1, eval/top5, ...), as progress_line prints them."""
    return re.fullmatch(r"top\d+", key.rpartition("/")[2]) is not None


def format_duration(seconds: float) -> str:
    """7384 -> '2h03m', 95 -> '1m35s', 4.2 -> '4.2s'."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_line(step: int, total: int, metrics: dict[str, float], eta_seconds: float) -> str:
    """One console line: step, loss, accuracies, learning rate, throughput and time to go."""
    parts = [f"step {step:>{len(str(total))}}/{total}"]
    for key, fmt in (("train/loss", "loss {:.4f}"), ("train/top1", "top1 {:.2%}"),
                     ("eval/top1", "eval top1 {:.2%}"), ("train/lr", "lr {:.3g}"),
                     ("train/images_per_sec", "{:.0f} img/s")):
        if key in metrics:
            parts.append(fmt.format(metrics[key]))
    parts.append(f"ETA {format_duration(eta_seconds)}")
    return " | ".join(parts)


class MetricWriter:
    """Appends {'step': s, **metrics} to metrics.jsonl and writes the same scalars to TensorBoard."""

    def __init__(self, workdir: str | pathlib.Path, enabled: bool = True):
        self.enabled = enabled
        self.path = pathlib.Path(workdir) / METRICS_FILE
        self._tb = None
        if enabled:
            try:
                from tensorboardX import SummaryWriter  # light: no TensorFlow needed
            except ImportError:  # TensorBoard is optional: metrics.jsonl has every scalar
                print("note: tensorboardX is not installed; metrics go to metrics.jsonl only",
                      file=sys.stdout, flush=True)
            else:
                self._tb = SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "time": time.time(), **{k: float(v) for k, v in metrics.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(key, float(value), int(step))
            self._tb.flush()

    def say(self, text: str) -> None:
        """A line on the console, from process 0 only."""
        if self.enabled:
            print(text, file=sys.stdout, flush=True)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: str | pathlib.Path) -> list[dict]:
    """The records of a run's metrics.jsonl, oldest first (an interrupted last line is ignored)."""
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
