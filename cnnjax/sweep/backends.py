"""Where a sweep's points run: a Backend takes the validated plan and runs it or submits it.

One backend is one module with one object that satisfies `Backend`, listed in BACKENDS below; the
sweep command (cnnjax.sweep.cli) adds each backend's options, chooses one with --backend NAME (or
its shortcut --NAME), refuses in one line an option of a backend that was not chosen, lets the chosen
one refuse the options it cannot honour, plans every point (with absolute paths where the backend
starts them in another directory), and hands it the plan. Whatever the backend, each point trains
with the command of its PointRun and leaves its log, exit_code and metrics in its folder
(cnnjax.sweep.files), which `sweep status` and `summarize` read; a backend that queues points
(Slurm) also records its task ids there (slurm/jobs.jsonl) for status to ask the queue about.

    local   this machine, --parallel points at a time on shares of its GPUs or CPU cores
    slurm   one sbatch array job, task i = point i (--slurm, --slurm-args)

A third (say, a list of ssh hosts) is one new module with its Backend and one entry in BACKENDS.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import TYPE_CHECKING, Protocol

from cnnjax.sweep import local, slurm

if TYPE_CHECKING:
    from cnnjax.sweep.plan import PointRun


class Backend(Protocol):
    """What the sweep command asks of a backend."""

    name: str             # --backend NAME, and the shortcut --NAME
    description: str      # one line for --help
    absolute_paths: bool  # its points start elsewhere: commands, logs and folders get absolute paths

    def add_arguments(self, parser: argparse.ArgumentParser) -> list[str]:
        """Adds its own options to the sweep command's parser; returns their dests (an option of a
        backend that is not chosen is refused when it is given)."""

    def check(self, args: argparse.Namespace) -> None:
        """One-line UserError for an option it cannot honour, before anything is planned."""

    def run(self, plan: list[PointRun], sweep_dir: pathlib.Path, config_spec: str, base: list[str],
            args: argparse.Namespace) -> int:
        """Runs (or submits) the unfinished points of `plan`, writing the sweep's records
        (plan.write_records) unless args.dry_run; returns the command's exit status."""


BACKENDS: dict[str, Backend] = {b.name: b for b in (local.BACKEND, slurm.BACKEND)}
DEFAULT = local.BACKEND.name
