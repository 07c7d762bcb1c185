"""Batch norm + ReLU, forward and forward+backward, on resnet20's activation shapes: ops.batch_norm
against flax's nn.BatchNorm, the textbook formula under autodiff and (with --compare-torch)
PyTorch's BatchNorm2d, timed interleaved.

    ./launch.sh bench batch_norm
    ./launch.sh bench batch_norm --compare-torch --repeats 7

Forward+backward is jax.grad of sum(relu(bn(x)) * cotangent) with respect to x, scale and bias; the
ms are per call, the median (and min) of the repeats of 10 calls each.
"""

from __future__ import annotations

import argparse
import os
import statistics

import flax.linen as nn
import jax
import jax.numpy as jnp
import ops as conv_bench  # benchmarks/ops.py beside this script: its interleaved timing
from jax import lax

from cnnjax import ops

SHAPES = {"resnet20.stage1": (128, 32, 32, 16), "resnet20.stage2": (128, 16, 16, 32),
          "resnet20.stage3": (128, 8, 8, 64)}
EPS = 1e-5
CALLS = 10


def flax_bn(x, scale, bias):
    bn = nn.BatchNorm(momentum=0.9, epsilon=EPS)
    stats = {"mean": jnp.zeros_like(scale), "var": jnp.ones_like(scale)}
    y, _ = bn.apply({"params": {"scale": scale, "bias": bias}, "batch_stats": stats}, x,
                    use_running_average=False, mutable=["batch_stats"])
    return y


def textbook_bn(x, scale, bias):
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    return (x - mean) * lax.rsqrt(var + EPS) * scale + bias


def jax_fns(shape: tuple[int, ...]) -> dict:
    """name -> zero-argument callable, for each implementation, forward and forward+backward."""
    x = jax.random.normal(jax.random.key(0), shape)
    g = jax.random.normal(jax.random.key(1), shape)
    scale, bias = jnp.full(shape[-1], 1.1), jnp.full(shape[-1], 0.1)
    impls = {"flax": flax_bn, "textbook": textbook_bn,
             "ops": lambda x, s, b: ops.batch_norm(x, s, b, epsilon=EPS)[0]}
    fns = {}
    for name, bn in impls.items():
        fwd = jax.jit(lambda x, s, b, bn=bn: nn.relu(bn(x, s, b)))
        fb = jax.jit(jax.grad(lambda x, s, b, bn=bn: jnp.sum(nn.relu(bn(x, s, b)) * g), (0, 1, 2)))
        fns[f"{name} fwd"] = lambda f=fwd: jax.block_until_ready(f(x, scale, bias))
        fns[f"{name} f+b"] = lambda f=fb: jax.block_until_ready(f(x, scale, bias))
    return fns


def torch_fns(shape: tuple[int, ...]) -> dict:
    import torch

    n, h, w, c = shape
    x = torch.randn(n, c, h, w, requires_grad=True)
    g = torch.randn(n, c, h, w)
    bn = torch.nn.BatchNorm2d(c).train()

    def fwd():
        with torch.no_grad():
            torch.relu(bn(x))

    def fb():
        torch.relu(bn(x)).backward(g)

    return {"torch fwd": fwd, "torch f+b": fb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compare-torch", action="store_true")
    args = parser.parse_args()
    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}; jax {jax.__version__}; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print("ms per call, median (min)")
    for layer, shape in SHAPES.items():
        fns = jax_fns(shape)
        if args.compare_torch:
            fns.update(torch_fns(shape))
        # Each timed call runs the op CALLS times; per call: the median and the min of the repeats.
        batched = {name: lambda fn=fn: [fn() for _ in range(CALLS)] for name, fn in fns.items()}
        timing = conv_bench.interleaved_ms(
            batched, args.repeats, stat=lambda ts: (statistics.median(ts) / CALLS, min(ts) / CALLS))
        row = "  ".join(f"{name} {med:.2f} ({low:.2f})" for name, (med, low) in timing.items())
        print(f"{layer:<16} {shape!s:<18} {row}", flush=True)


if __name__ == "__main__":
    main()
