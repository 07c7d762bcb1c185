"""cnnjax.models.smallcnn: shapes, parameter counts by hand, what each knob changes, one-line
errors, and a forward pass against a numpy loop reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.ops_reference import sum_rtol

from cnnjax import models


def conv_params(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def hand_count(channels: int, classes: int = 10) -> int:
    """conv1-conv4 3x3 with biases (32, 32, 64, 64), fc from 8x8x64."""
    return (conv_params(3, channels, 32) + conv_params(3, 32, 32) + conv_params(3, 32, 64)
            + conv_params(3, 64, 64) + 8 * 8 * 64 * classes + classes)


@pytest.mark.parametrize("channels", [1, 3])
def test_forward_shape_and_float32_logits(variables_of, channels):
    model = models.build("smallcnn", num_classes=7, dtype="bfloat16")
    variables = variables_of(model, (2, 32, 32, channels))
    out = jax.eval_shape(lambda v, x: model.apply(v, x), variables,
                         jax.ShapeDtypeStruct((2, 32, 32, channels), jnp.float32))
    assert out.shape == (2, 7) and out.dtype == jnp.float32


@pytest.mark.parametrize("channels", [1, 3])
def test_parameter_count_by_hand(param_count, channels):
    assert param_count(models.build("smallcnn", num_classes=10), (1, 32, 32, channels)) == \
        hand_count(channels)
    assert hand_count(1) == 105_962


def test_strided_conv_adds_exactly_the_stride_convolutions(param_count, variables_of):
    model = models.build("smallcnn", num_classes=10, pool="strided_conv")
    extra = conv_params(3, 32, 32) + conv_params(3, 64, 64)
    assert param_count(model, (1, 32, 32, 1)) == hand_count(1) + extra
    params = variables_of(model, (1, 32, 32, 1))["params"]
    assert params["pool1"]["conv"]["kernel"].shape == (3, 3, 32, 32)
    assert params["pool2"]["conv"]["kernel"].shape == (3, 3, 64, 64)
    assert params["fc"]["kernel"].shape == (8 * 8 * 64, 10)  # still two halvings


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_pooling_has_no_parameters(param_count, pool):
    assert param_count(models.build("smallcnn", pool=pool, num_classes=10),
                       (1, 32, 32, 1)) == hand_count(1)


def test_lrn_adds_no_parameters_and_batch_norm_replaces_biases(param_count, variables_of):
    assert param_count(models.build("smallcnn", norm="lrn", num_classes=10),
                       (1, 32, 32, 1)) == hand_count(1)
    model = models.build("smallcnn", norm="batch", num_classes=10)
    biases = 32 + 32 + 64 + 64
    bn = 2 * (32 + 32 + 64 + 64)
    assert param_count(model, (1, 32, 32, 1)) == hand_count(1) - biases + bn
    assert set(variables_of(model, (1, 32, 32, 1))["batch_stats"]) == {
        "conv1_bn", "conv2_bn", "conv3_bn", "conv4_bn"}


def test_widths_set_depth_and_classifier(param_count):
    model = models.build("smallcnn", num_classes=5, widths=[8, 8, 16, 16, 16, 16])
    expected = (conv_params(3, 3, 8) + conv_params(3, 8, 8) + conv_params(3, 8, 16)
                + 3 * conv_params(3, 16, 16) + 4 * 4 * 16 * 5 + 5)
    assert param_count(model, (1, 32, 32, 3)) == expected


def test_knobs_are_the_fields():
    assert models.knobs("smallcnn") == {
        "widths": (32, 32, 64, 64), "activation": "relu", "norm": "none", "pool": "max",
        "weight_init": "he_normal", "conv_impl": "auto", "bn_stats": "global", "dtype": "float32",
        "dropout_rate": 0.0}
    assert models.natural_input("smallcnn") == ((32, 32, 1), 10)


@pytest.mark.parametrize(("knobs", "fragment"), [
    ({"activation": "swish2"}, "activation"), ({"norm": "group"}, "'lrn'"),
    ({"pool": "l2"}, "'strided_conv'"), ({"conv_impl": "fft"}, "conv_impl"),
    ({"dtype": "float16"}, "'bfloat16'"), ({"dropout_rate": 1.0}, "dropout_rate"),
    ({"widths": (32, 32, 64)}, "even number"), ({"widths": ()}, "even number"),
    ({"widths": (32, 0)}, "widths entries"), ({"num_classes": 0}, "num_classes"),
    ({"weight_init": "xavier"}, "'normal_0.01'"),
])
def test_bad_knobs_raise_one_line(knobs, fragment):
    num_classes = knobs.pop("num_classes", 10)
    with pytest.raises(ValueError) as info:
        models.build("smallcnn", num_classes=num_classes, **knobs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("pool", ["max", "strided_conv"])
def test_weight_init_sets_every_weights_scale(pool):
    """Each kernel's sample s.d. against the initialiser's: He's sqrt(2 / fan_in) for the convolutions
    and torch's 1 / sqrt(3 fan_in) for the FC layer, or 0.01 for all. The sample s.d. of n normal
    (or uniform) draws has a relative standard error of about 1 / sqrt(2n) (normal; smaller for
    the uniform), so 5 / sqrt(2n) bounds a correct draw except with negligible probability and
    catches a factor-of-two error at the sizes here (n >= 2,304)."""
    import jax

    for init in ("he_normal", "normal_0.01", "alexnet"):
        model = models.build("smallcnn", num_classes=10, widths=(16, 16, 32, 32), pool=pool,
                             weight_init=init)
        params = model.init(jax.random.PRNGKey(0), np.zeros((1, 32, 32, 1), np.float32))["params"]
        kernels = {"/".join(path): np.asarray(leaf) for path, leaf in _flat(params)
                   if path[-1] == "kernel" and np.asarray(leaf).size >= 2304}
        assert len(kernels) >= 4
        for name, kernel in kernels.items():
            fan_in = int(np.prod(kernel.shape[:-1]))
            if init in ("normal_0.01", "alexnet"):
                expected = 0.01
            elif name.startswith("fc"):
                expected = 1.0 / np.sqrt(3.0 * fan_in)
            else:
                expected = np.sqrt(2.0 / fan_in)
            assert abs(kernel.std() / expected - 1.0) < 5.0 / np.sqrt(2.0 * kernel.size), name
        # AlexNet's biases of 1 in the last convolution of each stage (conv2, conv4); 0 elsewhere
        ones = {"conv2", "conv4"} if init == "alexnet" else set()
        biases = {path[0]: np.asarray(leaf) for path, leaf in _flat(params) if path[-1] == "bias"}
        assert {"conv1", "conv2", "conv3", "conv4", "fc"} <= set(biases)
        for name, bias in biases.items():
            assert (bias == (1.0 if name in ones else 0.0)).all(), (init, name)


def _flat(tree, prefix=()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flat(value, (*prefix, key))
        else:
            yield (*prefix, key), value


# ---- numerics against numpy, on widths (2, 2) and 4x4 inputs: conv-conv-downsample-fc ----------

def np_conv_same(x: np.ndarray, k: np.ndarray, b: np.ndarray, stride: int = 1) -> np.ndarray:
    """Cross-correlation with zero padding 1 for a 3x3 kernel, by loops: (H, W, Ci) -> (Ho, Wo, Co)."""
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    h = (x.shape[0] - 1) // stride + 1
    out = np.zeros((h, h, k.shape[-1]))
    for i in range(h):
        for j in range(h):
            patch = xp[i * stride:i * stride + 3, j * stride:j * stride + 3, :]
            out[i, j] = np.einsum("hwc,hwco->o", patch, k) + b
    return out


def np_lrn(x: np.ndarray) -> np.ndarray:
    c = x.shape[-1]
    out = np.empty_like(x)
    for i in range(c):
        s = (x[..., max(0, i - 2):min(c, i + 3)] ** 2).sum(-1)
        out[..., i] = x[..., i] / (2.0 + 1e-4 * s) ** 0.75
    return out


def np_forward(p: dict, x: np.ndarray, act, pool: str, lrn: bool) -> np.ndarray:
    h = act(np_conv_same(x, p["conv1"]["kernel"], p["conv1"]["bias"]))
    h = act(np_conv_same(h, p["conv2"]["kernel"], p["conv2"]["bias"]))
    if lrn:
        h = np_lrn(h)
    if pool == "max":
        h = h.reshape(2, 2, 2, 2, -1).max(axis=(1, 3))
    elif pool == "avg":
        h = h.reshape(2, 2, 2, 2, -1).mean(axis=(1, 3))
    else:
        h = act(np_conv_same(h, p["pool1"]["conv"]["kernel"], p["pool1"]["conv"]["bias"], 2))
    return h.reshape(-1) @ p["fc"]["kernel"] + p["fc"]["bias"]


@pytest.mark.parametrize(("activation", "pool", "norm"), [
    ("relu", "max", "none"), ("tanh", "avg", "none"), ("relu", "strided_conv", "none"),
    ("tanh", "max", "lrn"),
])
def test_forward_matches_numpy(numpy_init, activation, pool, norm):
    model = models.build("smallcnn", num_classes=3, widths=(2, 2), activation=activation,
                         pool=pool, norm=norm)
    variables = numpy_init(model, (1, 4, 4, 2), seed=1)
    x = np.random.default_rng(2).normal(size=(1, 4, 4, 2)).astype(np.float32)
    # Scale up so that LRN's denominator differs from its constant k**beta.
    x = x * (30.0 if norm == "lrn" else 1.0)
    got = np.asarray(model.apply(variables, jnp.asarray(x)))
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
    act = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh}[activation]
    want = np_forward(params, x[0].astype(np.float64), act, pool, norm == "lrn")
    # A running error bound: the same network on |x| and |parameters| with the activation and LRN
    # left out (relu and tanh are 1-Lipschitz with |f(v)| <= |v|; LRN with k = 2 shrinks both by
    # 2**-0.75) bounds every entry's sum|terms| along its path; a path rounds at most 3 sums of 19
    # terms, the pool's 5, 9 of the classifier, plus about 12 for tanh and LRN's power: 80.
    magnitudes = np_forward(jax.tree.map(np.abs, params), np.abs(x[0].astype(np.float64)),
                            lambda v: v, pool, False)
    assert (np.abs(got[0] - want) <= sum_rtol(80) * magnitudes).all()


def test_dropout_acts_only_in_training(numpy_init):
    model = models.build("smallcnn", num_classes=3, widths=(2, 2), dropout_rate=0.5)
    variables = numpy_init(model, (1, 4, 4, 1))
    x = jnp.ones((1, 4, 4, 1))
    evals = model.apply(variables, x)
    np.testing.assert_array_equal(evals, model.apply(variables, x, train=False))
    trained = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)})
    assert not np.allclose(evals, trained)
