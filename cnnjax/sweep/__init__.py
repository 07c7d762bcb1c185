"""Sweeps: the points of a config file's get_sweep(), run locally or on Slurm, reported and summarized.

    points.py     building sweeps (product, zip_, chain), point names and training commands (pure)
    plan.py       a config file's get_sweep() -> validated, named points with folders and commands
    files.py      what a sweep folder holds (sweep.json, each point's log, exit_code, ...)
    devices.py    GPUs or CPU cores shared out among points running side by side
    backends.py   the Backend interface (run or submit a plan) and its registry, BACKENDS
    local.py      the local backend: points side by side on this machine's devices
    slurm.py      the Slurm backend: the sbatch array script, its submission, and squeue/sacct
    status.py     finished / failed (why) / running / pending, per point
    summarize.py  the results table and figure of a sweep folder
    cli.py        ./launch.sh CONFIG.py --sweep, ./launch.sh sweep status|summarize DIR

Config files import their sweep helpers from here: `from cnnjax.sweep import product, zip_, chain`.
"""

from cnnjax.sweep.points import chain, product, zip_

__all__ = ["chain", "product", "zip_"]
