"""Steady-state training-step time and throughput of any model on synthetic, device-resident data.

    ./launch.sh bench train_step                  # lenet5, resnet20, resnet50
    ./launch.sh bench train_step --models lenet5,resnet20 --compare-torch
    ./launch.sh bench train_step --models lenet5,resnet20 --conv-impl xla,onednn --compare-torch
    ./launch.sh bench train_step --models resnet50 --batch 256 --dtype bfloat16   # on a GPU
    ./launch.sh bench train_step --models resnet50 --batch 256 --compile-only     # memory, no run

Times the jitted SGD-momentum step of cnnjax.train.steps (normalisation, forward, backward, update) after
warm-up, median (and min) over repetitions. With --compare-torch (CPU), the same model and optimizer
step in PyTorch eager on the same cores, and the ratio. Several --conv-impl (comma-separated) and
PyTorch are timed interleaved, one repetition of each in turn, so that load from other jobs on a
shared machine falls on all of them alike. On a GPU it prints model FLOPs utilisation: XLA's cost
analysis of the compiled step divided by the step time, against the device's peak (bfloat16: the bf16
tensor-core peak; float32: the TF32 peak, since XLA computes f32 convolutions in TF32 on GPUs).
Memory: 'step GiB' is XLA's memory analysis of the compiled step (inputs + outputs + scratch - donated
inputs), 'peak GiB' the allocator's peak where the device reports one (GPUs; the CPU reports none).
Through launch.sh, the run gets the project's XLA_FLAGS for the CPU (launch.sh); they are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from cnnjax import models
from cnnjax.config import default_config
from cnnjax.models import layers
from cnnjax.train.distributed import data_mesh
from cnnjax.train.loop import create_train_state
from cnnjax.train.optim import make_optimizer
from cnnjax.train.steps import jit_steps

# Dense peak FLOP/s by device kind (NVIDIA data sheets, SXM parts, without sparsity). XLA runs float32
# convolutions and matmuls on GPUs in TF32 (JAX's default precision), so float32 MFU is measured against
# the TF32 tensor-core peak (H100/H200 495, A100 156 TFLOP/s), not the plain FP32 one (67 / 19.5).
PEAK_FLOPS = {"H100": {"bfloat16": 989e12, "float32": 495e12},
              "H200": {"bfloat16": 989e12, "float32": 495e12},
              "A100": {"bfloat16": 312e12, "float32": 156e12}}
DEFAULT_BATCH = {"cpu": {"resnet50": 16, "vgg16": 8, "alexnet": 32, "googlenet": 16}, "gpu": {}}


def bench_jax(name: str, batch: int, dtype: str, steps: int, repeats: int, conv_impl: str,
              compile_only: bool = False) -> dict:
    (h, w, c), classes = models.natural_input(name)
    config = default_config()
    config.model.name, config.model.dtype = name, dtype
    model = models.build(name, num_classes=classes, dtype=dtype, conv_impl=conv_impl)
    tx, _ = make_optimizer(config.optimizer, config.schedule, steps_per_epoch=100, total_steps=1000)
    mesh = data_mesh()
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
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
            "peak_bytes": peak.get("peak_bytes_in_use", 0)}


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


def bench_torch(name: str, batch: int, steps: int, repeats: int) -> dict | None:
    try:
        import torch

        from cnnjax.convert.torch_models import build_torch_model
    except ImportError:
        return None
    (h, w, c), classes = models.natural_input(name)
    try:
        model = build_torch_model(name, num_classes=classes)
    except ValueError:
        return None
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, c, h, w)
    y = torch.randint(0, classes, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def run():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()

    run()
    return run


def peak_flops(dtype: str) -> float | None:
    kind = jax.devices()[0].device_kind
    for name, peaks in PEAK_FLOPS.items():
        if name in kind:
            return peaks.get(dtype)
    return None


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
                        help="also time PyTorch eager (CPU) on the same model and cores")
    args = parser.parse_args()

    platform = jax.devices()[0].platform
    if args.no_materialize:
        layers.materialize = lambda x: x
    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind} ({platform}); "
          f"jax {jax.__version__}; dtype {args.dtype}; conv {args.conv_impl}"
          f"{'; materialize off' if args.no_materialize else ''}")
    print(f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    impls = args.conv_impl.split(",")
    header = (f"{'model':<12} {'conv':<8} {'batch':>5} {'step ms':>9} {'min ms':>8} {'img/s':>9} "
              f"{'compile s':>9}")
    header += "  torch ms  torch min  torch img/s  jax/torch time" if args.compare_torch else ""
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
        torch_run = bench_torch(name, batch, args.steps, args.repeats) if args.compare_torch else None
        if torch_run is not None:
            runs["torch"] = torch_run
        timing = interleaved(runs, args.repeats, args.steps, batch)
        for impl, r in results.items():
            t = timing[impl]
            line = (f"{name:<12} {impl:<8} {batch:>5} {t['step_ms']:>9.2f} {t['min_ms']:>8.2f} "
                    f"{t['images_per_s']:>9.0f} {r['compile_s']:>9.1f}")
            if args.compare_torch and torch_run is None:
                line += "  (no torch reference)"
            elif args.compare_torch:
                tt = timing["torch"]
                line += (f"  {tt['step_ms']:>8.2f}  {tt['min_ms']:>9.2f}  {tt['images_per_s']:>11.0f}  "
                         f"{t['step_ms'] / tt['step_ms']:>14.2f}")
            if platform == "gpu":
                peak = peak_flops(args.dtype)
                mfu = r["flops"] / t["step_s"] / peak if peak and r["flops"] else float("nan")
                line += f"   {r['flops'] / 1e9:>10.1f}   {mfu:.1%}"
            line += f"  {r['step_bytes'] / 2**30:>8.2f}  {r['peak_bytes'] / 2**30:>8.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    jnp.zeros(())  # initialise the backend before timing anything
    main()
