"""Time conv2d's implementations, forward and forward+backward, on real layer shapes.

    ./launch.sh bench ops                    # all layers
    ./launch.sh bench ops --quick            # fewer repeats, smaller batches
    ./launch.sh bench ops --compare-torch    # and PyTorch eager's conv on the same shapes

Each case is jitted and warmed up; the table shows the median wall time in ms over --repeats
runs, the implementations (and PyTorch) taken in turn within each repeat so that load from other
jobs falls on all alike. fwd+bwd is jax.grad of sum(conv2d(x, w)) with respect to both x and w
(for torch, backward of the sum into both). Ratios are explicit / xla (lower is better for
explicit), xla / torch and onednn / torch; `onednn` is impl='onednn' (oneDNN through the XLA FFI),
its columns are left out when the extension is unavailable.

Note: on a 2-core CPU, XLA's default concurrency-optimised scheduler runs the explicit backward's
independent dots side by side and slows it down for small-channel layers (CIFAR 3x3x16: ~3x);
XLA_FLAGS=--xla_cpu_enable_concurrency_optimized_scheduler=false removes most of that gap.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from cnnjax import ops
from cnnjax.ops import onednn


@dataclass(frozen=True)
class Case:
    """One conv layer: input (N, H, W, Cin), kernel (k, k, Cin/groups, Cout), geometry."""

    name: str
    batch: int
    size: int
    cin: int
    cout: int
    kernel: int
    stride: int = 1
    padding: int = 0
    groups: int = 1


def cases(scale: float) -> list[Case]:
    """LeNet-5 (LeCun et al. 1998), AlexNet (Krizhevsky et al. 2012, Fig. 2, two towers as
    groups=2), ResNet (He et al. 2016, Table 1 stem and stage convs; CIFAR net of Sec. 4.2)."""
    def b(n: int) -> int:
        return max(1, int(n * scale))
    return [
        Case("lenet5.C1", b(128), 32, 1, 6, 5),
        Case("lenet5.C3", b(128), 14, 6, 16, 5),
        Case("alexnet.conv1", b(8), 227, 3, 96, 11, stride=4),
        Case("alexnet.conv2", b(8), 27, 96, 256, 5, padding=2, groups=2),
        Case("alexnet.conv3", b(8), 13, 256, 384, 3, padding=1),
        Case("alexnet.conv4", b(8), 13, 384, 384, 3, padding=1, groups=2),
        Case("alexnet.conv5", b(8), 13, 384, 256, 3, padding=1, groups=2),
        Case("resnet.stem7x7/2", b(8), 224, 3, 64, 7, stride=2, padding=3),
        Case("resnet.conv2_x", b(8), 56, 64, 64, 3, padding=1),
        Case("resnet.conv3_x", b(8), 28, 128, 128, 3, padding=1),
        Case("resnet.conv4_x", b(8), 14, 256, 256, 3, padding=1),
        Case("resnet.conv5_x", b(8), 7, 512, 512, 3, padding=1),
        Case("resnet.cifar16", b(128), 32, 16, 16, 3, padding=1),
    ]


def interleaved_ms(fns: dict, repeats: int, stat=statistics.median) -> dict:
    """`stat` (median) of the ms of each blocking fn(), warmed up twice, timed in turn `repeats`
    times."""
    for fn in fns.values():
        fn(), fn()  # compile and warm up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(0.05)  # let the last runner's idle threads (XLA, OpenMP, TBB) stop spinning
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: stat(ts) for name, ts in times.items()}


def jax_fns(case: Case, impls: tuple[str, ...], dtype) -> dict:
    """{(impl, 'fwd' | 'fb'): blocking call} for each conv2d implementation."""
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (case.batch, case.size, case.size, case.cin), dtype)
    w = jax.random.normal(kw, (case.kernel, case.kernel, case.cin // case.groups, case.cout),
                          dtype)
    fns = {}
    for impl in impls:
        def fwd(x, w, impl=impl):
            return ops.conv2d(x, w, stride=case.stride, padding=case.padding, groups=case.groups,
                              impl=impl)
        grad = jax.jit(jax.grad(lambda x, w, f=fwd: jnp.sum(f(x, w)), argnums=(0, 1)))
        fwd_jit = jax.jit(fwd)
        fns[impl, "fwd"] = lambda f=fwd_jit: jax.block_until_ready(f(x, w))
        fns[impl, "fb"] = lambda f=grad: jax.block_until_ready(f(x, w))
    return fns


def torch_fns(case: Case) -> dict:
    """PyTorch eager (NCHW) forward and forward+backward (x and w), or {} without torch."""
    try:
        import torch
    except ImportError:
        return {}
    x = torch.randn(case.batch, case.cin, case.size, case.size, requires_grad=True)
    w = torch.randn(case.cout, case.cin // case.groups, case.kernel, case.kernel, requires_grad=True)

    def fwd():
        return torch.nn.functional.conv2d(x, w, stride=case.stride, padding=case.padding,
                                          groups=case.groups)

    def fwd_bwd():
        x.grad = w.grad = None
        fwd().sum().backward()

    return {("torch", "fwd"): fwd, ("torch", "fb"): fwd_bwd}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats and quarter batches")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", default="", help="substring filter on layer names")
    parser.add_argument("--min", action="store_true",
                        help="report the fastest repeat instead of the median (on a loaded machine "
                             "PyTorch's OpenMP barriers suffer most from descheduled threads)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--compare-torch", action="store_true",
                        help="also PyTorch eager (CPU, float32) on the same shapes and cores")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    scale = 0.25 if args.quick else 1.0
    dtype = jnp.dtype(args.dtype)
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), dtype {dtype.name}, "
          f"{'min' if args.min else 'median'} of {repeats}")
    impls = ("xla", "explicit", "onednn") if onednn.load() else ("xla", "explicit")
    header = (f"{'layer':18} {'x shape -> kernel':36} {'xla fwd':>8} {'expl fwd':>9} {'ratio':>6} "
              f"{'xla f+b':>8} {'expl f+b':>9} {'ratio':>6}")
    if "onednn" in impls:
        header += f" {'dnnl fwd':>8} {'dnnl f+b':>8}"
    if args.compare_torch:
        header += f" {'torch fwd':>9} {'torch f+b':>9} {'xla/torch f+b':>13}"
        header += f" {'dnnl/torch f+b':>14}" if "onednn" in impls else ""
    print(header)
    print("-" * len(header))
    for case in cases(scale):
        if args.only not in case.name:
            continue
        shape = (f"({case.batch},{case.size},{case.size},{case.cin}) "
                 f"{case.kernel}x{case.kernel}/{case.stride} g{case.groups}->{case.cout}")
        fns = jax_fns(case, impls, dtype)
        if args.compare_torch:
            fns.update(torch_fns(case))
        t = interleaved_ms(fns, repeats, min if args.min else statistics.median)
        xf, ef, xb, eb = t["xla", "fwd"], t["explicit", "fwd"], t["xla", "fb"], t["explicit", "fb"]
        line = (f"{case.name:18} {shape:36} {xf:8.2f} {ef:9.2f} {ef / xf:6.2f} {xb:8.2f} {eb:9.2f} "
                f"{eb / xb:6.2f}")
        if "onednn" in impls:
            line += f" {t['onednn', 'fwd']:8.2f} {t['onednn', 'fb']:8.2f}"
        if ("torch", "fb") in t:
            tb = t["torch", "fb"]
            line += f" {t['torch', 'fwd']:9.2f} {tb:9.2f} {xb / tb:13.2f}"
            line += f" {t['onednn', 'fb'] / tb:14.2f}" if "onednn" in impls else ""
        print(line, flush=True)


if __name__ == "__main__":
    main()
