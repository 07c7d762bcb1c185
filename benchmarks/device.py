"""One-shot device check: what one accelerator does with cnnjax's training step, in one run.

    ./launch.sh bench device              # on a GPU/TPU machine: about 5 minutes on one H100/H200
    ./launch.sh bench device --smoke      # a tiny run on the CPU that checks the script end to end
    CNNJAX_PYTHON=$(which python) ./launch.sh bench device   # an image with JAX preinstalled

Needs jax, flax, optax (and chex, which flax/optax bring) only: no TensorFlow, no ml_collections, no
package index. Prints, in this order:
  1. the environment (versions, devices, XLA_FLAGS);
  2. per model (ResNet-50, VGG-16, GoogLeNet, AlexNet), bfloat16 compute, batch 256 on synthetic
     device-resident data: compile time, step time, img/s, TFLOP/s and MFU (XLA's cost analysis of the
     compiled step over the step time, against the chip's dense bf16 peak, 989 TFLOP/s for H100/H200),
     and the device's peak memory;
  3. a loss-decreases check (ResNet-50 from its initial parameters fitting one fixed batch for 11
     steps: its loss must fall);
  4. the op classes taking the most device time in ResNet-50 (a jax.profiler trace, parsed);
  5. the host-to-device copy rate (a batch of uint8 images, as the input pipeline sends them);
  6. PyTorch's torchvision ResNet-50 (channels_last, bfloat16 autocast, SGD) at the same batch, when
     torch and torchvision import, so the JAX figure is also a ratio to the peer.
"""

from __future__ import annotations

import argparse
import functools
import glob
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnnjax import models
from cnnjax.train.state import TrainState
from cnnjax.train.steps import train_step

MODELS = ("resnet50", "vgg16", "googlenet", "alexnet")
# Dense (no sparsity) bfloat16 peak FLOP/s by device kind: NVIDIA SXM data sheets, Google Cloud TPU docs.
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "GH200": 989e12, "B200": 2250e12, "A100": 312e12,
             "L4": 121e12, "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5p": 459e12,
             "TPU v6 lite": 918e12}
# Op classes, by the names that XLA and the kernels give the events of a profile (first match wins).
OP_CLASSES = (("collective", ("all-reduce", "allreduce", "all-gather", "reduce-scatter", "nccl")),
              ("convolution", ("conv", "cudnn", "xmma", "implicit_gemm", "fprop", "dgrad", "wgrad")),
              ("matmul", ("gemm", "dot", "cublas", "matmul")),
              ("copy/transpose", ("copy", "transpose", "memcpy", "memset")),
              ("reduction", ("reduce",)),
              ("fusion (elementwise)", ("fusion", "loop_", "input_", "elementwise")))
# Profile events that are bookkeeping, not device work.
NOT_WORK = ("ThreadpoolListener", "SlinkyThreadPool", "ThunkExecutor", "end:", "$", "Pjit",
            "PjRt", "Execute")


def peak_flops(kind: str) -> float | None:
    """Dense bf16 peak of a device kind ('NVIDIA H100 80GB HBM3' -> 989e12), None if unknown."""
    for name, peak in sorted(PEAK_BF16.items(), key=lambda kv: -len(kv[0])):
        if name.lower() in kind.lower():
            return peak
    return None


def op_class(name: str) -> str:
    lowered = name.lower()
    for cls, keys in OP_CLASSES:
        if any(k in lowered for k in keys):
            return cls
    return "other"


# ---------------------------------------------------------------------------------------------------
# The pieces
# ---------------------------------------------------------------------------------------------------

def environment() -> list[str]:
    import flax

    dev = jax.devices()[0]
    lines = [f"python {platform.python_version()} on {platform.machine()}, "
             f"{len(os.sched_getaffinity(0))} host cores",
             f"jax {jax.__version__}, jaxlib {jax.lib.__version__}, flax {flax.__version__}, "
             f"optax {optax.__version__}",
             f"devices: {jax.device_count()} x {dev.device_kind} ({dev.platform}), "
             f"{jax.process_count()} process(es)",
             f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"]
    peak = peak_flops(dev.device_kind)
    lines.append(f"dense bf16 peak: {peak / 1e12:.0f} TFLOP/s" if peak else
                 "dense bf16 peak: unknown for this device kind (no MFU)")
    return lines


def make_step(name: str, batch: int, size: int, lr: float = 0.1):
    """(compiled step, state, batch, key, flops per step, compile seconds) for model `name`."""
    model = models.build(name, num_classes=1000, dtype="bfloat16")
    tx = optax.sgd(lr, momentum=0.9)

    def init():
        v = model.init({"params": jax.random.key(0), "dropout": jax.random.key(0)},
                       jnp.zeros((1, size, size, 3)), train=False)
        return TrainState.create(apply_fn=model.apply, params=v["params"], tx=tx,
                                 batch_stats=v.get("batch_stats") or None)

    state = jax.jit(init)()
    images = jax.random.randint(jax.random.key(1), (batch, size, size, 3), 0, 256, jnp.int32)
    data = {"image": images.astype(jnp.uint8),
            "label": jax.random.randint(jax.random.key(2), (batch,), 0, 1000, jnp.int32)}
    step = jax.jit(functools.partial(train_step, mean=(0.485, 0.456, 0.406),
                                     std=(0.229, 0.224, 0.225), compute_dtype="bfloat16"),
                   donate_argnums=0)
    key = jax.random.key(3)
    t0 = time.perf_counter()
    compiled = step.lower(state, data, key).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    flops = float((cost or {}).get("flops", 0.0))
    return compiled, state, data, key, flops, compile_s


def time_steps(compiled, state, data, key, steps: int, repeats: int):
    """(median seconds per step, final state, losses of the last repeat)."""
    times, losses = [], []
    state, metrics = compiled(state, data, key)  # warm-up
    jax.block_until_ready(metrics["loss"])
    for _ in range(repeats):
        losses = []
        t0 = time.perf_counter()
        for _ in range(steps):
            state, metrics = compiled(state, data, key)
            losses.append(metrics["loss"])
        jax.block_until_ready(losses[-1])
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times), state, [float(x) for x in losses]


def peak_memory() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return peak / 2**30 if peak else None


def traced_op_times(run: Callable[[], None], steps: int, name_of: Callable[[str], str]
                    ) -> tuple[dict[str, float], dict[str, int]]:
    """(seconds per step, calls) of each op, under the name `name_of` gives it, in a jax.profiler
    trace of run() (which runs `steps` steps): GPUs/TPUs' kernels on the device's stream lines, on
    the CPU the ops on XLA's executor threads."""
    from jax.profiler import ProfileData

    # The trace is read into memory and its folder removed: a suite run left one per call in /tmp.
    with tempfile.TemporaryDirectory(prefix="cnnjax_profile_") as directory:
        with jax.profiler.trace(directory):
            run()
        files = glob.glob(f"{directory}/**/*.xplane.pb", recursive=True)
        planes = ProfileData.from_file(files[0]).planes if files else ()
    totals: dict[str, float] = {}
    calls: dict[str, int] = {}
    for plane in planes:
        on_device = plane.name.startswith("/device:")
        for line in plane.lines:
            if on_device:
                if any(k in line.name for k in ("Modules", "Steps", "Launch", "Framework")):
                    continue
            elif not line.name.startswith("tf_XLA"):
                continue
            for event in line.events:
                if event.name.startswith(NOT_WORK):
                    continue
                name = name_of(event.name)
                totals[name] = totals.get(name, 0.0) + event.duration_ns * 1e-9 / steps
                calls[name] = calls.get(name, 0) + 1
    return totals, calls


def profile_classes(compiled, state, data, key, steps: int) -> tuple[dict[str, float], int]:
    """Device time per op class (seconds per step) over `steps` steps, and the number of events."""
    def run():
        s, metrics = state, None
        for _ in range(steps):
            s, metrics = compiled(s, data, key)
        jax.block_until_ready(metrics["loss"])

    totals, calls = traced_op_times(run, steps, op_class)
    return totals, sum(calls.values())


def host_to_device(batch: int, size: int, repeats: int) -> tuple[float, float]:
    """(GB/s, images/s) of copying a (batch, size, size, 3) uint8 array to the first device."""
    host = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    jax.block_until_ready(jax.device_put(host))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(jax.device_put(host))
        times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    return host.nbytes / seconds / 1e9, batch / seconds


def torch_resnet50(batch: int, size: int, steps: int) -> tuple[float, str] | str:
    """(img/s, device) of torchvision's ResNet-50 training step (channels_last, bf16 autocast,
    SGD momentum), or why it was skipped."""
    try:
        import torch
        import torchvision
    except ImportError as e:
        return f"skipped: {e}"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torchvision.models.resnet50().to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0), f"torch {torch.__version__} on {device}"


# ---------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="batch 2, 96x96 images, 2 steps: checks the script on any machine")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=224, help="image side")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.size, args.steps, args.repeats = 2, 96, 2, 1
    start = time.perf_counter()

    print("== environment")
    for line in environment():
        print("  " + line)
    peak = peak_flops(jax.devices()[0].device_kind)

    print(f"\n== training step, bfloat16, batch {args.batch}, {args.size}x{args.size}, synthetic data "
          "on the device")
    print("| model | compile s | step ms | img/s | TFLOP/step | TFLOP/s | MFU | peak GiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    kept = None
    for name in args.models.split(","):
        compiled, state, data, key, flops, compile_s = make_step(name, args.batch, args.size)
        if name == "resnet50":  # from the fresh parameters, before the timed steps train them
            _, state, losses = time_steps(compiled, state, data, key, 10, 1)
        step_s, state, _ = time_steps(compiled, state, data, key, args.steps, args.repeats)
        mfu = f"{flops / step_s / peak:.1%}" if peak and flops else "n/a"
        mem = peak_memory()
        print(f"| {name} | {compile_s:.1f} | {step_s * 1e3:.1f} | {args.batch / step_s:,.0f} | "
              f"{flops / 1e12:.3f} | {flops / step_s / 1e12:.1f} | {mfu} | "
              f"{f'{mem:.1f}' if mem is not None else 'n/a'} |", flush=True)
        if name == "resnet50":
            kept = (compiled, state, data, key)
        else:
            del compiled, state, data

    if kept is None:  # the checks below use ResNet-50
        kept = make_step("resnet50", args.batch, args.size)[:4]
        _, state, losses = time_steps(*kept, 10, 1)
        kept = (kept[0], state, *kept[2:])
    compiled, state, data, key = kept
    print("\n== loss-decreases check (resnet50 from its initial parameters, one fixed batch)")
    ok = losses[-1] < losses[0]
    print(f"  loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps: "
          f"{'PASS' if ok else 'FAIL'}")

    print("\n== device time by op class (resnet50, profiled)")
    try:
        classes, events = profile_classes(compiled, state, data, key, max(args.steps // 2, 2))
    except Exception as e:  # the profiler is optional equipment: report, do not stop the check
        classes, events = {}, 0
        print(f"  profile unavailable: {type(e).__name__}: {e}")
    total = sum(classes.values())
    for cls, seconds in sorted(classes.items(), key=lambda kv: -kv[1]):
        print(f"  {cls:<22} {seconds * 1e3:9.2f} ms/step  {seconds / total:6.1%}")
    if classes:
        print(f"  ({events} events)")
    del compiled, state, data

    print("\n== host-to-device copy")
    gbs, ips = host_to_device(args.batch, args.size, max(args.repeats, 3))
    print(f"  {gbs:.2f} GB/s, {ips:,.0f} uint8 {args.size}x{args.size} images/s")

    print("\n== PyTorch torchvision resnet50 (channels_last, bf16 autocast), same batch")
    result = torch_resnet50(args.batch, args.size, max(args.steps // 2, 2))
    print("  " + (result if isinstance(result, str) else f"{result[0]:,.0f} img/s ({result[1]})"))
    print(f"\ndone in {time.perf_counter() - start:.0f}s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
