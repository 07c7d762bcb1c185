"""impl='onednn' (oneDNN through the XLA FFI) against XLA's and the explicit convolution.

Forward and both gradients for every option conv2d takes, float32 within two summation orders'
rounding bound entry by entry (helpers.ops_reference.sum_rtol); bfloat16; jit, vmap, the data-parallel
mesh (in a subprocess with 2 fake CPU devices); the platform guard and the fallback. Skipped,
with the reason, where the extension is not built.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.ops_reference import BF16_U, assert_within_sum_bound, sum_rtol

from cnnjax import ops
from cnnjax.ops import conv_onednn, onednn
from cnnjax.ops.onednn import build

pytestmark = pytest.mark.skipif(not onednn.load(), reason=f"oneDNN extension unavailable: "
                                                         f"{onednn.failure()}")

# (x shape, kernel shape, options): stride, padding (strings, ints, asymmetric pairs, wider
# than the kernel), dilation, groups (two towers, depthwise), 1x1 and one-input-channel layers.
CASES = [
    ((2, 9, 10, 6), (3, 3, 6, 8), dict()),
    ((2, 9, 10, 6), (3, 2, 6, 8), dict(stride=2, padding="SAME")),
    ((2, 11, 9, 4), (3, 3, 4, 6), dict(stride=(2, 3), padding=((1, 2), (0, 3)))),
    ((2, 12, 12, 3), (3, 3, 3, 5), dict(dilation=(2, 1), padding="FULL")),
    ((2, 13, 11, 6), (2, 3, 3, 8), dict(groups=2, stride=(1, 2), dilation=2, padding=1)),
    ((2, 8, 8, 4), (3, 3, 1, 8), dict(groups=4, padding="SAME")),        # depthwise, multiplier 2
    ((2, 7, 7, 6), (3, 3, 2, 6), dict(groups=3, padding=4, stride=2)),   # padding > kernel
    ((2, 6, 6, 5), (1, 1, 5, 7), dict()),
    ((3, 32, 32, 1), (5, 5, 1, 6), dict()),                              # LeNet C1
]


def _forward_and_grads(impl, x, w, ct, kw):
    def f(x, w):
        y, pullback = jax.vjp(lambda x, w: ops.conv2d(x, w, impl=impl, **kw), x, w)
        return (y, *pullback(ct))
    return [np.asarray(a) for a in jax.jit(f)(x, w)]


def _terms(x, w, ct, kw):
    """(k, [sum|terms| of y, dx, dw]): y, dx and dw of the conv at |x|, |w|, |ct| in float64, whose
    entries are the sums of the absolute values of the terms each float32 entry sums, and k the
    most terms an entry sums: kh kw Cin/g for y, kh kw Cout/g for dx, N * output positions for dw
    (+ 1 for the products' rounding)."""
    groups = kw.get("groups", 1)
    y_shape = jax.eval_shape(lambda x, w: ops.conv2d(x, w, **kw), x, w).shape
    k = max(np.prod(w.shape[:-1]), np.prod(w.shape[:-2]) * w.shape[-1] // groups,
            np.prod(y_shape[:-1])) + 1
    with jax.enable_x64(True):
        sums = _forward_and_grads("xla", *(np.abs(np.float64(a)) for a in (x, w, ct)), kw)
    return k, sums


def _close(got, want, abs_sum, k, what):
    """Two float32 results of the same sums in two orders (oneDNN's blocking and XLA's)."""
    assert_within_sum_bound(got, want, abs_sum, k, sides=2, err_msg=what)


@pytest.mark.parametrize(("x_shape", "w_shape", "kw"), CASES)
def test_onednn_forward_and_gradients_match_xla_and_explicit(x_shape, w_shape, kw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    y = jax.eval_shape(lambda x, w: ops.conv2d(x, w, **kw), x, w)
    ct = rng.standard_normal(y.shape).astype(np.float32)
    got = _forward_and_grads("onednn", x, w, ct, kw)
    k, sums = _terms(x, w, ct, kw)
    for ref in ("xla", "explicit"):
        for name, a, e, abs_sum in zip(("y", "dx", "dw"), got,
                                       _forward_and_grads(ref, x, w, ct, kw), sums, strict=True):
            _close(a, e, abs_sum, k, f"{name} against {ref}")


def test_onednn_really_calls_onednn():
    """The comparison above would pass vacuously if 'onednn' fell back to XLA's conv."""
    x, w = jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3, 4))
    hlo = jax.jit(jax.grad(lambda x, w: (ops.conv2d(x, w, impl="onednn") ** 2).sum(), (0, 1))) \
        .lower(x, w).compile().as_text()
    for target in onednn.TARGETS:
        assert f'custom_call_target="{target}"' in hlo
    assert "convolution(" not in hlo


def test_onednn_conv1d_and_convolve2d_match_xla():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 17, 4)).astype(np.float32)
    w = rng.standard_normal((3, 2, 6)).astype(np.float32)
    kw = dict(stride=2, dilation=2, padding=(1, 3), groups=2)
    with jax.enable_x64(True):
        abs_sum = np.asarray(ops.conv1d(np.abs(np.float64(x)), np.abs(np.float64(w)), **kw))
    _close(ops.conv1d(x, w, impl="onednn", **kw), ops.conv1d(x, w, **kw), abs_sum, 3 * 2 + 1,
           "conv1d")
    x2, w2 = rng.standard_normal((2, 8, 9, 3)), rng.standard_normal((3, 4, 3, 5))
    x2, w2 = x2.astype(np.float32), w2.astype(np.float32)
    with jax.enable_x64(True):
        abs_sum = np.asarray(ops.convolve2d(np.abs(np.float64(x2)), np.abs(np.float64(w2))))
    _close(ops.convolve2d(x2, w2, impl="onednn"), ops.convolve2d(x2, w2), abs_sum, 3 * 4 * 3 + 1,
           "convolve2d")


def test_onednn_bfloat16_matches_float32_to_bfloat16_rounding():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 10, 10, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 16)).astype(np.float32)
    kw = dict(groups=2, padding="SAME")
    xb, wb = jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
    got = _forward_and_grads("onednn", xb, wb, jnp.ones((4, 10, 10, 16), jnp.bfloat16), kw)
    want = _forward_and_grads("xla", np.asarray(xb, np.float32), np.asarray(wb, np.float32),
                              np.ones((4, 10, 10, 16), np.float32), kw)
    # Same bfloat16 inputs on both sides, sums accumulated in float32 (oneDNN's bf16 kernels do),
    # then one rounding to bfloat16: u_bf16 * |e| on top of two float32 orders' bound.
    k, sums = _terms(np.asarray(xb, np.float32), np.asarray(wb, np.float32),
                     np.ones((4, 10, 10, 16), np.float32), kw)
    for name, a, e, abs_sum in zip(("y", "dx", "dw"), got, want, sums, strict=True):
        assert a.dtype == jnp.bfloat16, name
        f32_err = 2 * sum_rtol(k) * abs_sum
        error = np.abs(np.asarray(a, np.float64) - e)
        assert (error <= BF16_U * (np.abs(e) + f32_err) + f32_err).all(), name


def test_onednn_under_vmap_matches_xla():
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((3, 2, 8, 8, 4)).astype(np.float32)
    ws = rng.standard_normal((3, 3, 3, 2, 6)).astype(np.float32)
    kw = dict(groups=2, stride=2, padding="SAME")

    def loss(impl):
        return lambda x, w: (ops.conv2d(x, w, impl=impl, **kw) ** 2).sum()

    for batched_w in (False, True):
        w_axis = 0 if batched_w else None
        w = ws if batched_w else ws[0]
        got = jax.jit(jax.vmap(jax.grad(loss("onednn"), (0, 1)), (0, w_axis)))(xs, w)
        want = jax.vmap(jax.grad(loss("xla"), (0, 1)), (0, w_axis))(xs, w)
        # d/dw of sum(y^2) = 2 sum_p x_p y_p over 2*4*4 positions, y a sum of 3*3*2 products;
        # d/dx sums 3*3*3 terms w y: bounded by the same gradients at |x|, |w| in float64.
        with jax.enable_x64(True):
            sums = jax.vmap(jax.grad(loss("xla"), (0, 1)), (0, w_axis))(
                np.abs(np.float64(xs)), np.abs(np.float64(w)))
            sums = [np.asarray(a) for a in sums]
        for a, e, abs_sum in zip(got, want, sums, strict=True):
            _close(np.asarray(a), np.asarray(e), abs_sum, 2 * 4 * 4 + 3 * 3 * 2 + 2,
                   f"vmap, kernel batched: {batched_w}")


def test_onednn_is_not_lowered_for_gpu():
    """The platform guard: exported for CUDA, the training-step-like program (forward and both
    gradients) holds XLA's convolutions and no oneDNN call."""
    f = jax.jit(jax.grad(lambda x, w: (ops.conv2d(x, w, impl="auto") ** 2).sum(), (0, 1)))
    exported = jax.export.export(f, platforms=["cuda"])(
        jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32), jax.ShapeDtypeStruct((3, 3, 3, 4),
                                                                              jnp.float32))
    text = exported.mlir_module()
    assert "stablehlo.convolution" in text
    assert "cnnjax_onednn" not in text


def test_unsupported_dtype_and_missing_library_fall_back_to_xla(monkeypatch):
    x, w = np.ones((1, 5, 5, 2), np.float16), np.ones((3, 3, 2, 2), np.float16)
    hlo = jax.jit(lambda x, w: ops.conv2d(x, w, impl="onednn")).lower(x, w).as_text()
    assert "cnnjax_onednn" not in hlo and "convolution" in hlo
    monkeypatch.setattr(onednn, "load", lambda: False)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    hlo = jax.jit(lambda x, w: ops.conv2d(x, w, impl="onednn")).lower(x32, w32).as_text()
    assert "cnnjax_onednn" not in hlo and "convolution" in hlo
    assert conv_onednn.supported(np.float64) is False


def test_missing_library_is_reported_in_one_line(tmp_path):
    code = textwrap.dedent(f"""
        from pathlib import Path
        from cnnjax.ops.onednn import build
        build.LIBRARY = Path({str(tmp_path / "absent.so")!r})
        from cnnjax.ops import onednn
        import numpy as np
        from cnnjax import ops
        x, w = np.ones((1, 5, 5, 2), np.float32), np.ones((3, 3, 2, 2), np.float32)
        y = ops.conv2d(x, w, impl="onednn") + ops.conv2d(x, w, impl="onednn", stride=2).sum()
        assert not onednn.load()
        print(float(y[0, 0, 0, 0]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    lines = [ln for ln in out.stderr.splitlines() if "oneDNN" in ln]
    assert len(lines) == 1 and "not built" in lines[0], out.stderr
    assert float(out.stdout) == 18.0 + 18.0 * 2 * 2 * 2  # one 3x3x2 window of ones; 2x2x2 outputs


def test_onednn_on_a_two_device_mesh_convolves_each_shard(tmp_path):
    """Each device runs oneDNN on its half of the batch; the kernel gradient is all-reduced."""
    code = textwrap.dedent("""
        import re, sys
        import jax, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from cnnjax import ops
        assert jax.device_count() == 2
        rng = np.random.default_rng(0)
        x = rng.standard_normal((8, 9, 9, 4)).astype(np.float32)
        w = rng.standard_normal((3, 3, 2, 6)).astype(np.float32)
        kw = dict(groups=2, stride=2, padding="SAME")
        loss = lambda impl: lambda x, w: (ops.conv2d(x, w, impl=impl, **kw) ** 2).sum()
        mesh = Mesh(np.array(jax.devices()), ("data",))
        xs = jax.device_put(x, NamedSharding(mesh, P("data")))
        wr = jax.device_put(w, NamedSharding(mesh, P()))
        step = jax.jit(jax.grad(loss("onednn"), (0, 1)))
        np.savez(sys.argv[1], *(np.asarray(a) for a in step(xs, wr)))
        hlo = step.lower(xs, wr).compile().as_text()
        shapes = re.findall(r"f32\\[([0-9,]+)\\][^=]*custom-call\\(.*cnnjax_onednn_conv_fwd", hlo)
        assert shapes == ["4,5,5,6"], shapes
        assert "all-gather" not in hlo and "all-reduce" in hlo
        print("ok")
    """)
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "got.npz")],
                         capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    rng = np.random.default_rng(0)  # the subprocess's inputs
    x = rng.standard_normal((8, 9, 9, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 2, 6)).astype(np.float32)

    def loss(x, w):
        return (ops.conv2d(x, w, groups=2, stride=2, padding="SAME") ** 2).sum()

    want = jax.grad(loss, (0, 1))(x, w)
    with jax.enable_x64(True):
        sums = [np.asarray(a) for a in jax.grad(loss, (0, 1))(np.abs(np.float64(x)),
                                                              np.abs(np.float64(w)))]
    got = np.load(tmp_path / "got.npz")
    # As in the vmap test: dw sums 8*5*5 positions of x y, y a sum of 3*3*2 products; the
    # all-reduce of the two halves is one more rounding.
    for i, (name, e, abs_sum) in enumerate(zip(("dx", "dw"), want, sums, strict=True)):
        _close(got[f"arr_{i}"], np.asarray(e), abs_sum, 8 * 5 * 5 + 3 * 3 * 2 + 3, name)


def test_bfloat16_is_supported_where_the_cpu_has_bf16_instructions():
    """With AVX512-BF16 or AMX-BF16 oneDNN has bf16 convolutions (it may emulate them on other
    AVX-512 CPUs too, so only this direction is a property)."""
    with open("/proc/cpuinfo") as f:
        flags = f.read().split()
    if not ("avx512_bf16" in flags or "amx_bf16" in flags):
        pytest.skip("this CPU has no bf16 instructions")
    assert onednn.supports_bfloat16()


def test_build_skips_an_up_to_date_library_and_names_other_architectures(monkeypatch):
    before = build.LIBRARY.stat().st_mtime_ns
    assert build.build() is None
    assert build.LIBRARY.stat().st_mtime_ns == before  # the hash stamp matched: no recompile
    monkeypatch.setattr(build.platform, "machine", lambda: "aarch64")
    assert "x86-64" in build.unavailable_reason()


def test_another_onednn_under_the_same_file_names_is_a_new_build(tmp_path):
    """Switching oneDNN wheels keeps libdnnl.so.3 and the prefix; only the version header tells
    the stamp that the old library was compiled against other headers."""
    header = tmp_path / "include" / "oneapi" / "dnnl" / "dnnl_version.h"
    header.parent.mkdir(parents=True)
    header.write_text("#define DNNL_VERSION_MAJOR 3\n#define DNNL_VERSION_MINOR 13\n")
    before = build.inputs_digest(tmp_path, "/include")
    assert build.inputs_digest(tmp_path, "/include") == before
    header.write_text("#define DNNL_VERSION_MAJOR 3\n#define DNNL_VERSION_MINOR 2\n")
    assert build.inputs_digest(tmp_path, "/include") != before
