"""Where the time of a training step goes on the CPU: per-op time from a jax.profiler trace.

    ./launch.sh bench profile_step --model resnet20 --conv-impl onednn
    ./launch.sh bench profile_step --model resnet20 --dtype bfloat16 --steps 5 --top 12

Traces `--steps` steps of train_step.py's jitted SGD step (after its warm-up) and sums, per step,
the time of each XLA op on XLA's threads: a custom call is named by its target (the oneDNN
convolutions: cnnjax_onednn_conv_fwd, _bwd_data, _bwd_weights), any other op by its HLO name
without the numeric suffix (add_divide_fusion, ynn_fusion, ...), with how many run per step. The
threads overlap, so the ops sum to more than the step's wall time, which is printed beside them.
"""

from __future__ import annotations

import argparse
import re
import time

from device import traced_op_times
from train_step import bench_jax


def custom_call_targets(hlo: str) -> dict[str, str]:
    """HLO instruction name -> custom_call_target, from the compiled module's text."""
    return dict(re.findall(r'%?([\w.\-]+) = [^\n]*custom_call_target="(\w+)"', hlo))


def op_times(run, steps: int, targets: dict[str, str]) -> tuple[dict[str, float], dict[str, int]]:
    """(ms per step, calls per step) of each op over one traced run() of `steps` steps."""
    seconds, calls = traced_op_times(
        run, steps, lambda name: targets.get(name, re.sub(r"\.\d+$", "", name)))
    return {k: v * 1e3 for k, v in seconds.items()}, {k: v // steps for k, v in calls.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--conv-impl", default="auto")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=15, help="how many ops to print")
    args = parser.parse_args()
    bench = bench_jax(args.model, args.batch, args.dtype, args.steps, 1, args.conv_impl)
    t0 = time.perf_counter()
    bench["run"]()
    wall_ms = (time.perf_counter() - t0) / args.steps * 1e3
    total, calls = op_times(bench["run"], args.steps, custom_call_targets(bench["compiled"].as_text()))
    print(f"{args.model}, batch {args.batch}, {args.dtype}, conv {args.conv_impl}: step {wall_ms:.1f} ms "
          f"wall (untraced); ops sum to {sum(total.values()):.1f} ms per step over XLA's threads")
    for name, ms in sorted(total.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"{ms:10.2f} ms  {calls[name]:4d} x  {name}")


if __name__ == "__main__":
    main()
