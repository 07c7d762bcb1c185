"""Batch-norm statistics by choice (model knob bn_stats): over the global batch, per device, or over
groups of N examples, on 8 fake CPU devices with the batch split across them, against a numpy
reference; and the all-reduces per training step of resnet20 in the compiled HLO for each mode."""

import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers.ops_reference import BF16_U, F32_U, batch_norm_bounds

from cnnjax import models
from cnnjax.models.layers import BN_EPSILON, BN_MOMENTUM

REPO = pathlib.Path(__file__).resolve().parents[2]
MODES = {"global": 32, "device": 4, "group:2": 2, "group:16": 16}  # mode -> examples per group

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import NamedSharding, PartitionSpec as P
    from cnnjax import models
    from cnnjax.models import layers

    out_dir, modes = sys.argv[1], sys.argv[2].split(",")
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    rep, bat = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (32, 3, 3, 4)).astype(np.float32) * rng.uniform(0.5, 2, 32)[:, None, None, None]
    scale, bias = rng.normal(1, 0.5, 4).astype(np.float32), rng.normal(0, 1, 4).astype(np.float32)
    arrays, counts = {"x": x, "scale": scale, "bias": bias}, {}
    for mode in modes:
        for dtype in ("float32", "bfloat16"):
            bn = layers.batch_norm(layers.LayerOptions(norm="batch", dtype=dtype, bn_stats=mode), "bn")
            v = bn.init(jax.random.key(0), x[:1], use_running_average=True)
            v = {"params": {"scale": scale, "bias": bias}, "batch_stats": v["batch_stats"]}
            f = jax.jit(lambda v, x: bn.apply(v, x, use_running_average=False, mutable=["batch_stats"]),
                        in_shardings=(rep, bat))
            y, upd = f(v, x)
            tag = f"{mode}/{dtype}"
            arrays[f"{tag}/y"] = np.asarray(y.astype(jnp.float32))
            arrays[f"{tag}/mean"] = np.asarray(upd["batch_stats"]["mean"])
            arrays[f"{tag}/var"] = np.asarray(upd["batch_stats"]["var"])
            counts[f"{tag}/dtypes"] = [str(y.dtype), str(upd["batch_stats"]["mean"].dtype)]
    for mode in ("global", "device", "group:16"):
        model = models.build("resnet20", num_classes=10, bn_stats=mode)
        images = jnp.zeros((32, 32, 32, 3))
        v = jax.jit(lambda: model.init(jax.random.key(0), images[:1]), out_shardings=rep)()

        def step(v, images, labels):
            def loss(p):
                logits, upd = model.apply({"params": p, "batch_stats": v["batch_stats"]}, images,
                                          train=True, mutable=["batch_stats"])
                return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), upd
            (l, upd), g = jax.value_and_grad(loss, has_aux=True)(v["params"])
            return {"params": jax.tree.map(lambda a, b: a - 0.1 * b, v["params"], g), **upd}, l

        hlo = jax.jit(step, in_shardings=(rep, bat, bat), out_shardings=(rep, rep)).lower(
            v, images, jnp.zeros(32, jnp.int32)).compile().as_text()
        counts[f"all-reduce/{mode}"] = hlo.count(" all-reduce(") + hlo.count(" all-reduce-start(")
    np.savez(f"{out_dir}/bn.npz", **arrays)
    print("COUNTS", json.dumps(counts))
""")


@pytest.fixture(scope="module")
def on_8_devices(tmp_path_factory):
    out = tmp_path_factory.mktemp("bn")
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu",
           "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(out), ",".join(MODES)], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    counts = json.loads(run.stdout.split("COUNTS ", 1)[1])
    return dict(np.load(out / "bn.npz")), counts


def reference(x, scale, bias, group):
    """Batch norm (Ioffe & Szegedy 2015, Alg. 1) per group of `group` consecutive examples, and
    the running averages after one step from mean 0 / var 1, moving by 1 - BN_MOMENTUM."""
    xg = x.astype(np.float64).reshape(-1, group, *x.shape[1:])
    mean = xg.mean(axis=(1, 2, 3), keepdims=True)
    var = xg.var(axis=(1, 2, 3), keepdims=True)
    y = ((xg - mean) / np.sqrt(var + BN_EPSILON) * scale + bias).reshape(x.shape)
    decay = 1 - BN_MOMENTUM
    return y, decay * mean.reshape(-1, 4).mean(0), BN_MOMENTUM + decay * var.reshape(-1, 4).mean(0)


@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode_matches_numpy_on_8_devices(on_8_devices, mode):
    arrays, counts = on_8_devices
    x, scale, bias = arrays["x"], arrays["scale"], arrays["bias"]
    y, mean, var = reference(x, scale, bias, MODES[mode])
    # Float32 bounds of each group's statistics and of y (helpers.ops_reference), with 3 more
    # roundings per sum for an all-reduce over 8 devices (log2 8 levels); the running averages
    # average the groups' statistics and mix them with the old ones: 3 more roundings.
    groups = x.shape[0] // MODES[mode]
    y_err, mean_err, var_err = batch_norm_bounds(x, scale, bias, groups, BN_EPSILON, extra=3)
    decay = 1 - BN_MOMENTUM
    bounds = {"y": y_err, "mean": decay * mean_err.mean(0) + 3 * F32_U * np.abs(mean),
              "var": decay * var_err.mean(0) + 3 * F32_U * np.abs(var)}
    for name, want in (("y", y), ("mean", mean), ("var", var)):
        error = np.abs(arrays[f"{mode}/float32/{name}"] - want)
        assert (error <= bounds[name]).all(), name
    # bfloat16 compute: outputs in bfloat16 (to its precision), statistics kept in float32. If x is
    # rounded to bfloat16 first (u = 2**-8), the mean moves by up to u mean|x| and y by
    # |k| u (|x| + mean|x|) plus |x - mean| |k| u E[x^2] / var through the variance; then y is
    # rounded to bfloat16 once. Statistics summed in bfloat16 would be off by ~n u: they fail.
    assert counts[f"{mode}/bfloat16/dtypes"] == ["bfloat16", "float32"]
    xg = np.float64(x).reshape(groups, -1, x.shape[-1])
    mean_abs, ex2, var_g = np.abs(xg).mean(1), (xg**2).mean(1), xg.var(1)
    k = np.abs(scale) / np.sqrt(var_g + BN_EPSILON)
    y_bf = (y_err.reshape(xg.shape) + (k * BF16_U)[:, None] * (
        np.abs(xg) + mean_abs[:, None] + np.abs(xg - xg.mean(1, keepdims=True)) * (ex2 / var_g)[:, None]))
    y_bf = (y_bf + BF16_U * (np.abs(y).reshape(xg.shape) + y_bf)).reshape(x.shape)
    assert (np.abs(arrays[f"{mode}/bfloat16/y"] - y) <= y_bf).all()
    mean_bf = bounds["mean"] + decay * BF16_U * mean_abs.mean(0)
    assert (np.abs(arrays[f"{mode}/bfloat16/mean"] - mean) <= mean_bf).all()


def test_modes_differ_where_the_groups_differ(on_8_devices):
    arrays, _ = on_8_devices
    # 1e-2 is far above float32 rounding of y (see the bounds above: ~1e-5): a real difference.
    assert not np.allclose(arrays["global/float32/y"], arrays["device/float32/y"], atol=1e-2)


def test_per_device_statistics_remove_the_per_layer_all_reduces(on_8_devices):
    """resnet20 has 19 batch norms: over the global batch each adds all-reduces of its statistics
    (forward) and of their gradients (backward); per device, the only collective left is the one
    that the gradients and running averages share (XLA combines them). Groups spanning 4 devices
    need all-reduces again, within the groups."""
    _, counts = on_8_devices
    assert counts["all-reduce/global"] >= 2 * 19
    assert counts["all-reduce/device"] <= 2
    assert counts["all-reduce/group:16"] >= 2 * 19


def test_bad_bn_stats_is_one_line():
    for bad in ("per_device", "group:0", "group:", 3):
        with pytest.raises(ValueError, match="bn_stats must be 'global', 'device' or 'group:N'"):
            models.build("resnet20", num_classes=10, bn_stats=bad)
