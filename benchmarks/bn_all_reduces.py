"""All-reduces per training step for each batch-norm statistics mode (model knob bn_stats), counted in
the HLO that XLA compiles for 8 devices (fake CPU devices unless real ones are there).

    XLA_FLAGS=--xla_force_host_platform_device_count=8 ./launch.sh bench bn_all_reduces
    ./launch.sh bench bn_all_reduces --model resnet20 --size 32 --modes global,device,group:16

The step is the loss's value and gradient with the batch split across the devices, the parameters
replicated and an SGD update; the image size does not change the count, so a small one keeps the
compilation short.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax

from cnnjax import models
from cnnjax.train.distributed import data_mesh, data_shardings


def count_all_reduces(name: str, bn_stats: str, batch: int, size: int) -> tuple[int, float]:
    """(all-reduce ops in the compiled step, compile seconds) for model `name` on every device."""
    rep, split = data_shardings(data_mesh())
    (_, _, c), classes = models.natural_input(name)
    model = models.build(name, num_classes=classes, bn_stats=bn_stats)
    images = jnp.zeros((batch, size, size, c))
    variables = jax.jit(lambda: model.init(jax.random.key(0), images[:1]), out_shardings=rep)()

    def step(v, images, labels):
        def loss(params):
            logits, updates = model.apply({**v, "params": params}, images, train=True,
                                          mutable=["batch_stats"])
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), updates

        (value, updates), grads = jax.value_and_grad(loss, has_aux=True)(v["params"])
        params = jax.tree.map(lambda p, g: p - 0.1 * g, v["params"], grads)
        return {**v, "params": params, **updates}, value

    t0 = time.perf_counter()
    hlo = jax.jit(step, in_shardings=(rep, split, split), out_shardings=(rep, rep)).lower(
        variables, images, jnp.zeros(batch, jnp.int32)).compile().as_text()
    return hlo.count(" all-reduce(") + hlo.count(" all-reduce-start("), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch", type=int, default=16, help="global batch")
    parser.add_argument("--size", type=int, default=64, help="image side")
    parser.add_argument("--modes", default="global,device,group:8")
    args = parser.parse_args()
    print(f"{args.model}, batch {args.batch} on {jax.device_count()} {jax.devices()[0].platform} "
          f"device(s), jax {jax.__version__}")
    print("| bn_stats | all-reduces per step | compile s |")
    print("| --- | ---: | ---: |")
    for mode in args.modes.split(","):
        count, seconds = count_all_reduces(args.model, mode, args.batch, args.size)
        print(f"| {mode} | {count} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
