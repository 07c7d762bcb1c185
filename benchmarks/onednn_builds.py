"""oneDNN builds against each other: the training step with cnnjax's convolutions on each.

    ./launch.sh bench onednn_builds --build gomp=/tmp/dnnl/gomp --build tbb=/tmp/dnnl/tbb
    ./launch.sh bench onednn_builds --build gomp=.venv --build gomp1=.venv,OMP_NUM_THREADS=1

Each --build is NAME=PREFIX[,VAR=VALUE...]: a prefix holding a oneDNN's include/ and lib/ (a venv, or
`pip install --no-deps --prefix DIR onednn-cpu-tbb==2023.2.0 onednn-devel-cpu-tbb==2023.2.0 tbb==2021.*`),
and environment variables for its runs (thread counts). conv.cc is compiled against each prefix into a
temporary folder. Two oneDNN libraries cannot share a process (both are libdnnl.so.3), so each run is
a child process that loads one build and times the jitted training step of train_step.py for every
model; the builds take turns, round after round, so that load from other jobs falls on all alike.
Prints per build and model the median and the minimum step time over all rounds' repetitions.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNTIMES = {1: "seq", 2: "omp", 4: "tbb", 8: "threadpool", 512: "sycl"}


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int),
                ("hash", ctypes.c_char_p), ("cpu_runtime", ctypes.c_uint),
                ("gpu_runtime", ctypes.c_uint)]


def dnnl_version(library: Path) -> str:
    """'3.2.0 omp' for the oneDNN that `library` (the built extension) loaded."""
    lib = ctypes.CDLL(str(library))
    lib.dnnl_version.restype = ctypes.POINTER(_Version)
    v = lib.dnnl_version().contents
    return f"{v.major}.{v.minor}.{v.patch} {RUNTIMES.get(v.cpu_runtime, v.cpu_runtime)}"


def child(library: str, models: list[str], batch: int, steps: int, repeats: int) -> None:
    """Load `library` as cnnjax's oneDNN extension and print {model: [seconds per step, ...]}."""
    sys.path.insert(0, str(Path(__file__).parent))
    from cnnjax.ops.onednn import build

    build.LIBRARY = Path(library)  # read by cnnjax.ops.onednn at the first load
    from train_step import bench_jax

    from cnnjax.ops import onednn

    if not onednn.load():
        raise SystemExit(f"cannot load {library}: {onednn.failure()}")
    out = {"version": dnnl_version(Path(library))}
    for name in models:
        run = bench_jax(name, batch, "float32", steps, repeats, "onednn")["run"]
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) / steps)
        out[name] = times
    print("RESULT " + json.dumps(out), flush=True)


def compile_extension(prefix: Path, folder: Path, name: str) -> Path:
    from cnnjax.ops.onednn import build

    output = folder / f"conv_{name}.so"
    cmd = build.compile_command(prefix, build.ffi_include_dir(), output)
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"error: conv.cc does not build against {prefix}: {result.stderr[-300:]}")
    return output


def parse_build(text: str) -> tuple[str, Path, dict[str, str]]:
    name, _, rest = text.partition("=")
    prefix, *assignments = rest.split(",")
    env = dict(a.split("=", 1) for a in assignments)
    if not name or not (Path(prefix) / "include" / "oneapi" / "dnnl" / "dnnl.hpp").is_file():
        raise SystemExit(f"error: --build {text!r}: expected NAME=PREFIX with PREFIX/include/oneapi/dnnl")
    return name, Path(prefix).resolve(), env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="append", default=[], help="NAME=PREFIX[,VAR=VALUE...]")
    parser.add_argument("--models", default="lenet5,resnet20")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed repetition")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions per child process")
    parser.add_argument("--rounds", type=int, default=3, help="child processes per build")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    models = args.models.split(",")
    if args.child:
        return child(args.child, models, args.batch, args.steps, args.repeats)

    if not args.build:
        parser.error("name at least one --build NAME=PREFIX (e.g. --build gomp=.venv)")
    builds = [parse_build(b) for b in args.build]
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; batch {args.batch}; {args.rounds} rounds x "
          f"{args.repeats} repetitions x {args.steps} steps, float32")
    times: dict[str, dict[str, list[float]]] = {name: {m: [] for m in models} for name, _, _ in builds}
    versions = {}
    with tempfile.TemporaryDirectory() as folder:
        libraries = {name: compile_extension(prefix, Path(folder), name) for name, prefix, _ in builds}
        for r in range(args.rounds):
            order = builds[r % len(builds):] + builds[:r % len(builds)]  # rotate who goes first
            for name, prefix, env in order:
                child_env = {**os.environ, **env}
                drivers = sorted((prefix / "lib").glob("libintelocl.so*"))
                if drivers:  # a SYCL build's CPU device is found through the OpenCL ICD loader
                    child_env["OCL_ICD_FILENAMES"] = str(drivers[0])
                result = subprocess.run(
                    [sys.executable, __file__, "--child", str(libraries[name]), "--models", args.models,
                     "--batch", str(args.batch), "--steps", str(args.steps), "--repeats",
                     str(args.repeats)], capture_output=True, text=True, env=child_env, check=False)
                line = next((ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if line is None:
                    raise SystemExit(f"error: build {name} failed: {result.stderr.strip()[-400:]}")
                out = json.loads(line[len("RESULT "):])
                versions[name] = out.pop("version")
                for m, ts in out.items():
                    times[name][m].extend(ts)
                time.sleep(1.0)
    print(f"{'build':<10} {'oneDNN':<12} {'env':<24} " + "".join(
        f"{m + ' ms (median / min)':>34}" for m in models))
    for name, _, env in builds:
        cells = "".join(f"{statistics.median(times[name][m]) * 1e3:>24.2f} / "
                        f"{min(times[name][m]) * 1e3:>7.2f}" for m in models)
        envs = ",".join(f"{k}={v}" for k, v in env.items()) or "-"
        print(f"{name:<10} {versions[name]:<12} {envs:<24} {cells}")


if __name__ == "__main__":
    main()
