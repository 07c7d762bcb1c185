"""Steady-state training-step time and throughput of any model on synthetic, device-resident data.

    ./launch.sh bench train_step                  # lenet5, resnet20, resnet50
    ./launch.sh bench train_step --models lenet5,resnet20 --compare-torch
    ./launch.sh bench train_step --models lenet5,resnet20 --conv-impl xla,onednn --compare-torch
    ./launch.sh bench train_step --models resnet50 --batch 256 --dtype bfloat16   # on a GPU
    ./launch.sh bench train_step --models resnet50 --batch 256 --compile-only     # memory, no run
    ./launch.sh bench train_step --models lenet5 --conv-impl onednn --compare-torch --dtype bfloat16
    ./launch.sh bench train_step --models resnet20 --compare-torch --torch-modes compile \
        --torch-channels-last

Times the jitted SGD-momentum step of cnnjax.train.steps (normalisation, forward, backward, update) after
warm-up, median (and min) over repetitions. With --compare-torch (CPU), the same model (the reference
models of cnnjax.convert.torch_models, same parameter count) and step in PyTorch on the same cores, in
each of --torch-modes: 'eager', and 'compile': torch.compile(model) with the default inductor backend
and mode, the way PyTorch's tutorials compile a training model (forward and backward compiled; the
loss, the backward call and the SGD step stay eager); see torch_train_step. The columns jax/eager and
jax/compile are ratios of median step times; 'compile s' of the 'torch compile' row is its first step
(tracing and inductor's compilation, then one step), excluded from the timing like JAX's compilation;
inductor caches compiled graphs on disk (/tmp/torchinductor_$USER), so only a first run shows the cold
compile time (TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 gives it on every run).
A mode that fails (no C++ compiler, an inductor error) prints one line and shows n/a. PyTorch runs
NCHW (its default memory format) unless --torch-channels-last. --dtype bfloat16: cnnjax computes in
bfloat16 with float32 parameters, optimizer state and batch-norm statistics, and PyTorch runs its
forward and loss under torch.autocast('cpu', dtype=torch.bfloat16); the header says whether the CPU
has AVX512-BF16 / AMX-BF16 (without them both emulate bfloat16 and the comparison says little).
Several --conv-impl (comma-separated) and the PyTorch modes are timed interleaved, one repetition of
each in turn, so that load from other jobs on a shared machine falls on all of them alike.
On a GPU it prints model FLOPs utilisation: XLA's cost analysis of the compiled step divided by the
step time, against the device's peak (bfloat16: the bf16 tensor-core peak; float32: the TF32 peak,
since XLA computes f32 convolutions in TF32 on GPUs).
Memory: 'step GiB' is XLA's memory analysis of the compiled step (inputs + outputs + scratch - donated
inputs), 'peak GiB' the allocator's peak where the device reports one (GPUs; the CPU reports none).
Through launch.sh, the run gets the project's XLA_FLAGS for the CPU (launch.sh); they are printed.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from cnnjax import models
from cnnjax.config import default_config
from cnnjax.convert.io import ConvertError
from cnnjax.errors import UserError
from cnnjax.models import layers
from cnnjax.train.distributed import data_mesh, data_shardings
from cnnjax.train.loop import create_train_state
from cnnjax.train.optim import make_optimizer
from cnnjax.train.steps import jit_steps

if TYPE_CHECKING:
    import torch

# Dense peak FLOP/s by device kind (NVIDIA data sheets, SXM parts, without sparsity). XLA runs float32
# convolutions and matmuls on GPUs in TF32 (JAX's default precision), so float32 MFU is measured against
# the TF32 tensor-core peak (H100/H200 495, A100 156 TFLOP/s), not the plain FP32 one (67 / 19.5).
PEAK_FLOPS = {"H100": {"bfloat16": 989e12, "float32": 495e12},
              "H200": {"bfloat16": 989e12, "float32": 495e12},
              "A100": {"bfloat16": 312e12, "float32": 156e12}}
# PyTorch's ways to run the same step (bench_torch): eager, and torch.compile with inductor.
TORCH_MODES = ("eager", "compile")
DEFAULT_BATCH = {"cpu": {"resnet50": 16, "vgg16": 8, "alexnet": 32, "googlenet": 16}, "gpu": {}}


def bench_jax(name: str, batch: int, dtype: str, steps: int, repeats: int, conv_impl: str,
              compile_only: bool = False) -> dict:
    (h, w, c), classes = models.natural_input(name)
    config = default_config()
    config.model.name, config.model.dtype = name, dtype
    model = models.build(name, num_classes=classes, dtype=dtype, conv_impl=conv_impl)
    tx, _ = make_optimizer(config.optimizer, config.schedule, steps_per_epoch=100, total_steps=1000)
    replicated, split = data_shardings(data_mesh())
    state = create_train_state(config, model, tx, (h, w, c), replicated)
    rng = np.random.default_rng(0)
    batch_data = jax.device_put({
        "image": rng.integers(0, 256, (batch, h, w, c), dtype=np.uint8),
        "label": rng.integers(0, classes, (batch,), dtype=np.int32)}, split)
    train_fn, _ = jit_steps((0.5,) * c, (0.25,) * c, dtype, 0.0, 0.3, replicated, split)
    key = jax.random.key(0)
    t0 = time.perf_counter()
    compiled = train_fn.lower(state, batch_data, key).compile()
    compile_s = time.perf_counter() - t0
    memory = compiled.memory_analysis()
    # Live bytes the compiled step needs: inputs, outputs and scratch, less donated (aliased) inputs.
    step_bytes = (memory.argument_size_in_bytes + memory.output_size_in_bytes
                  + memory.temp_size_in_bytes - memory.alias_size_in_bytes) if memory else 0
    if compile_only:
        return {"step_bytes": step_bytes, "compile_s": compile_s}
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0

    holder = {"state": state}

    def run():
        s = holder["state"]
        for _ in range(steps):
            s, metrics = compiled(s, batch_data, key)
        jax.block_until_ready(metrics["loss"])
        holder["state"] = s

    run()  # warm-up
    peak = jax.devices()[0].memory_stats() or {}
    return {"run": run, "compile_s": compile_s, "flops": flops, "step_bytes": step_bytes,
            "peak_bytes": peak.get("peak_bytes_in_use", 0), "compiled": compiled}


def interleaved(runs: dict, repeats: int, steps: int, batch: int) -> dict:
    """Time each run() `repeats` times, taking the runs in turn; per name: step ms (median, min)."""
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            # Let the previous runner's idle threads (XLA's pool, OpenMP, TBB) stop spinning first:
            # without the pause PyTorch ran up to 10x slower right after an XLA run on 2 cores.
            time.sleep(0.2)
            t0 = time.perf_counter()
            run()
            times[name].append((time.perf_counter() - t0) / steps)
    out = {}
    for name, ts in times.items():
        step_s = statistics.median(ts)
        out[name] = {"step_ms": step_s * 1e3, "min_ms": min(ts) * 1e3, "step_s": step_s,
                     "images_per_s": batch / step_s}
    return out


def one_line(error: BaseException) -> str:
    """An exception as one line: its type and the first lines of its message, up to 200 characters
    (torch.compile's errors open with a line such as "backend='inductor' raised:")."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    text = " ".join(lines[:2]) if lines and lines[0].endswith(":") else (lines[0] if lines else "")
    return f"{type(error).__name__}: {text}"[:200]


def torch_train_step(name: str, batch: int, mode: str = "eager", dtype: str = "float32",
                     channels_last: bool = False,
                     seed: int = 0) -> tuple[torch.nn.Module, Callable[[], torch.Tensor]]:
    """(model, step) for `name`'s PyTorch training step on one fixed synthetic batch; step() runs it
    and returns the loss (before the update), as a float32 tensor.

    The step is cnnjax's: uint8 images normalised to (x / 255 - 0.5) / 0.25, forward, mean cross
    entropy, backward, SGD with momentum 0.9 (torch.optim.SGD's default for-loop implementation on
    the CPU). mode 'compile' is torch.compile(model) with the default backend (inductor) and mode,
    as PyTorch's tutorials compile a training model: the forward and (through AOTAutograd) its
    backward are compiled; the normalisation, loss, backward call and optimizer step run as in
    eager. It compiles lazily, in the first step(). dtype 'bfloat16' runs the forward and the loss
    under torch.autocast('cpu', dtype=torch.bfloat16): float32 parameters, gradients and batch-norm
    statistics, bfloat16 convolutions and matmuls. Memory format NCHW (torch's default) unless
    channels_last. Raises ConvertError for a model without a PyTorch reference.
    """
    import torch
    import torch.nn.functional as F

    from cnnjax.convert.torch_models import build_torch_model

    (h, w, c), classes = models.natural_input(name)
    torch.manual_seed(seed)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_torch_model(name, num_classes=classes).to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch, c, h, w), dtype=torch.uint8, generator=gen)
    images = images.contiguous(memory_format=fmt)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    forward = torch.compile(model) if mode == "compile" else model

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        x = (images.float() / 255 - 0.5) / 0.25
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = F.cross_entropy(forward(x), labels)
        loss.backward()
        opt.step()
        return loss.detach().float()

    return model, step


def bench_torch(name: str, batch: int, steps: int, modes: Sequence[str], dtype: str,
                channels_last: bool) -> dict[str, dict] | None:
    """Per PyTorch mode: {'run': steps x step() or None where it failed, 'compile_s': seconds of
    the first step (torch.compile's tracing and compilation, then one step)}, warmed up. None
    where PyTorch or a reference model for `name` is missing. A failing mode prints one line and
    is left out of the timing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    out = {}
    for mode in modes:
        try:
            _, step = torch_train_step(name, batch, mode, dtype, channels_last)
            t0 = time.perf_counter()
            step()  # eager: a first step; compile: tracing and inductor's compilation, then a step
            first_s = time.perf_counter() - t0

            def run(step=step):
                for _ in range(steps):
                    step()

            run()  # warm-up after the first step, as JAX's
        except ConvertError:
            return None
        except Exception as e:  # above all an inductor or C++ compiler error: that column is n/a
            print(f"torch {mode} failed on {name}: {one_line(e)}", flush=True)
            out[mode] = {"run": None, "compile_s": float("nan")}
            continue
        out[mode] = {"run": run, "compile_s": first_s}
    return out


def cpu_description() -> str:
    """lscpu's model name and whether the CPU has AVX512-BF16 and AMX-BF16 (/proc/cpuinfo flags)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        text = ""
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines()
                  if ln.startswith("Model name:")), "unknown (no lscpu)")
    try:
        flags = set(re.findall(r"^flags\s*:(.*)$", pathlib.Path("/proc/cpuinfo").read_text(),
                               re.M)[0].split())
    except (OSError, IndexError):
        return f"cpu: {model}; bfloat16 flags unknown (no /proc/cpuinfo)"
    have = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx512_bf16", "amx_bf16"))
    return f"cpu: {model}; {have}"


def peak_flops(dtype: str) -> float | None:
    kind = jax.devices()[0].device_kind
    for name, peaks in PEAK_FLOPS.items():
        if name in kind:
            return peaks.get(dtype)
    return None


def torch_modes(text: str) -> tuple[str, ...]:
    """--torch-modes: a comma-separated subset of TORCH_MODES, in the order given."""
    modes = tuple(dict.fromkeys(m.strip() for m in text.split(",")))
    if not modes or not set(modes) <= set(TORCH_MODES):
        raise argparse.ArgumentTypeError(f"takes {' and/or '.join(TORCH_MODES)}, comma-separated; "
                                         f"got {text!r}")
    return modes


def torch_header(modes: Sequence[str], dtype: str, channels_last: bool) -> str:
    """The PyTorch line of the header: version, modes, precision, memory format, threads."""
    try:
        import torch
    except ImportError:
        return "torch: not installed (pip install torch, or ./launch.sh test installs it)"
    fmt = "channels_last (NHWC in memory)" if channels_last else "NCHW (torch's default)"
    cast = "autocast bfloat16" if dtype == "bfloat16" else "float32"
    return (f"torch {torch.__version__}: {', '.join(modes)} (compile: torch.compile(model), "
            f"inductor, default mode); {cast}; memory format {fmt}; {torch.get_num_threads()} threads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet5,resnet20,resnet50")
    parser.add_argument("--batch", type=int, default=0, help="0: 128, or less for big models on CPU")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--conv-impl", default="xla",
                        help="conv implementation(s), comma-separated: xla, explicit, onednn")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed repetition")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-materialize", action="store_true",
                        help="turn off cnnjax.ops.materialize in the conv layers, to measure that lever")
    parser.add_argument("--compile-only", action="store_true",
                        help="compile and print the step's memory (XLA's analysis) without running it")
    parser.add_argument("--compare-torch", action="store_true",
                        help="also time PyTorch (CPU) on the same model and cores, interleaved")
    parser.add_argument("--torch-modes", type=torch_modes, default=None,
                        help="with --compare-torch: eager and/or compile (torch.compile, inductor), "
                             "comma-separated (default both)")
    parser.add_argument("--torch-channels-last", action="store_true",
                        help="with --compare-torch: PyTorch in channels_last memory format "
                             "(default NCHW)")
    args = parser.parse_args()
    if not args.compare_torch and (args.torch_modes or args.torch_channels_last):
        parser.error("--torch-modes and --torch-channels-last need --compare-torch")

    platform = jax.devices()[0].platform
    if args.no_materialize:
        layers.materialize = lambda x: x
    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} ({platform}); "
          f"jax {jax.__version__}; dtype {args.dtype}; conv {args.conv_impl}"
          f"{'; materialize off' if args.no_materialize else ''}")
    if platform == "cpu":
        print(cpu_description())
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    modes = (args.torch_modes or TORCH_MODES) if args.compare_torch else ()
    if modes:
        print(torch_header(modes, args.dtype, args.torch_channels_last))
    impls = args.conv_impl.split(",")
    header = (f"{'model':<12} {'run':<14} {'batch':>5} {'step ms':>9} {'min ms':>8} {'img/s':>9} "
              f"{'compile s':>9}")
    header += "".join(f" {'jax/' + m:>11}" for m in modes)
    header += "   GFLOP/step   MFU" if platform == "gpu" else ""
    header += "  step GiB  peak GiB"
    if args.compile_only:
        header = (f"{'model':<12} {'conv':<8} {'batch':>5} {'compile s':>9}  "
                  "step GiB (inputs + outputs + scratch)")
    print(header)
    for name in args.models.split(","):
        kind = "gpu" if platform == "gpu" else "cpu"
        batch = args.batch or DEFAULT_BATCH[kind].get(name, 128)
        results = {impl: bench_jax(name, batch, args.dtype, args.steps, args.repeats, impl,
                                   args.compile_only) for impl in impls}
        if args.compile_only:
            for impl, r in results.items():
                print(f"{name:<12} {impl:<8} {batch:>5} {r['compile_s']:>9.1f}  "
                      f"{r['step_bytes'] / 2**30:>8.2f}", flush=True)
            continue
        runs = {impl: r["run"] for impl, r in results.items()}
        torch_results = (bench_torch(name, batch, args.steps, modes, args.dtype,
                                     args.torch_channels_last) if modes else {})
        if torch_results is None:
            print(f"{name}: no PyTorch reference (torch not installed or no such model in "
                  "cnnjax.convert.torch_models)")
            torch_results = {}
        runs.update({f"torch {m}": r["run"] for m, r in torch_results.items() if r["run"]})
        timing = interleaved(runs, args.repeats, args.steps, batch)
        for impl, r in results.items():
            t = timing[impl]
            line = (f"{name:<12} {impl:<14} {batch:>5} {t['step_ms']:>9.2f} {t['min_ms']:>8.2f} "
                    f"{t['images_per_s']:>9.0f} {r['compile_s']:>9.1f}")
            for m in modes:
                tt = timing.get(f"torch {m}")
                line += f" {t['step_ms'] / tt['step_ms']:>11.2f}" if tt else f" {'n/a':>11}"
            if platform == "gpu":
                peak = peak_flops(args.dtype)
                mfu = r["flops"] / t["step_s"] / peak if peak and r["flops"] else float("nan")
                line += f"   {r['flops'] / 1e9:>10.1f}   {mfu:.1%}"
            line += f"  {r['step_bytes'] / 2**30:>8.2f}  {r['peak_bytes'] / 2**30:>8.2f}"
            print(line, flush=True)
        for m, r in torch_results.items():
            t = timing.get(f"torch {m}")
            cells = (f"{t['step_ms']:>9.2f} {t['min_ms']:>8.2f} {t['images_per_s']:>9.0f}" if t
                     else f"{'n/a':>9} {'n/a':>8} {'n/a':>9}")
            first = f"{r['compile_s']:>9.1f}" if m == "compile" and r["run"] else f"{'-':>9}"
            print(f"{name:<12} {'torch ' + m:<14} {batch:>5} {cells} {first}", flush=True)


if __name__ == "__main__":
    jnp.zeros(())  # initialise the backend before timing anything
    try:
        main()
    except UserError as e:  # an unknown model or a knob it does not take: one line, as the CLI's
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
