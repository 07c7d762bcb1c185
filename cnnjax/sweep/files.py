"""What a sweep folder holds, and the small readers and writers of those files.

    SWEEP_DIR/sweep.json                 the config, the base overrides, every point's name, overrides
                                         and steps to finish
    SWEEP_DIR/sweep.sbatch               the Slurm array script (--slurm)
    SWEEP_DIR/slurm/jobs.jsonl           one line per Slurm submission: the job id and its point indices
    SWEEP_DIR/slurm/<job>_<task>.out     what Slurm itself printed for a task (e.g. a time-limit kill)
    SWEEP_DIR/<point>/sweep_point.json   the point: index, name, overrides, command, steps to finish
    SWEEP_DIR/<point>/log.txt            everything the point's training printed, every attempt appended
    SWEEP_DIR/<point>/exit_code          the exit status of the point's last attempt (absent while it runs)
    SWEEP_DIR/<point>/running.json       host and pid of a point running locally
    SWEEP_DIR/<point>/metrics.jsonl, config.json, checkpoints/   written by the training itself
"""

from __future__ import annotations

import json
import os
import pathlib

from cnnjax import atomic

SWEEP_FILE = "sweep.json"
SBATCH_FILE = "sweep.sbatch"
SLURM_DIR = "slurm"
JOBS_FILE = "jobs.jsonl"
POINT_FILE = "sweep_point.json"
LOG_FILE = "log.txt"
EXIT_FILE = "exit_code"
RUNNING_FILE = "running.json"


def write_text_atomic(path: pathlib.Path, text: str) -> None:
    """Writes `text` to a temporary file and renames it over `path`, so no reader sees half of it."""
    atomic.write_text(path, text)


def write_json(path: pathlib.Path, value: object) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, default=repr) + "\n")


def read_json(path: pathlib.Path) -> dict | None:
    """The JSON object in `path`, or None when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def last_line(path: pathlib.Path, limit: int = 200) -> str:
    """The last non-blank line of a text file ('' when there is none) that srun did not write, cut to
    `limit` characters."""
    try:
        with path.open("rb") as f:
            f.seek(max(f.seek(0, os.SEEK_END) - 64 * 1024, 0))  # logs grow large; read the tail
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    lines = [line.strip() for line in lines if line.strip()]
    # srun's own report of the step's end ('srun: error: ... Exited with exit code 2') follows the
    # training's last words in a Slurm task's log; those words are the ones that say what happened.
    words = [line for line in lines if not line.startswith("srun: ")] or lines
    return words[-1][:limit] if words else ""


def read_exit_code(workdir: pathlib.Path) -> int | None:
    """The exit status the point's last attempt left in its exit_code file (None: none written)."""
    try:
        return int((workdir / EXIT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def write_exit_code(workdir: pathlib.Path, code: int) -> None:
    write_text_atomic(workdir / EXIT_FILE, f"{code}\n")


def metrics_cut_short(workdir: pathlib.Path, name: str = "metrics.jsonl") -> bool:
    """True when the last line of the point's metrics file is not a whole JSON record (a crash or a
    full disk cut it)."""
    line = last_line(workdir / name, limit=1 << 20)
    if not line:
        return False
    try:
        json.loads(line)
    except ValueError:
        return True
    return False
