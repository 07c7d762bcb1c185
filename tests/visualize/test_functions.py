"""The visualisations' numbers against independent references: box-filter closed forms, ops.conv2d,
jax.grad and finite differences, explicit loops, Grad-CAM by hand, recomputed top patches."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from visual_nets import LinearBoxNet, TwoLayerNet, ValidNet

from cnnjax import ops
from cnnjax.visualize import attribution, erf, features, filters, patches

F32 = float(np.finfo(np.float32).eps)


def _init(model, shape, seed=0):
    return model.init(jax.random.key(seed), jnp.zeros((1, *shape)))


def _layer_fn(model, variables, name):
    return lambda x: features.feature_maps(model, variables, x, [name])[name]


# ------------------------------------------------------------------ effective receptive field ---

def _box_profile(top_unit: int, sizes: list[int]) -> np.ndarray:
    """1-D gradient of LinearBoxNet's c3 unit `top_unit` along one axis, written independently of
    JAX: each all-ones convolution spreads the gradient by a box (np.convolve), each average pool
    of 2 repeats it twice at half weight, padding 1 drops the first entry. sizes: the lengths of
    the input of c1, p1, c2, p2 and c3 (48, 48, 24, 22, 11)."""
    g = np.zeros(sizes[4] - 4)
    g[top_unit] = 1.0
    g = np.convolve(g, np.ones(5))                      # c3 (5, VALID): length 11
    g = np.repeat(g, 2) / 2                             # p2: length 22
    g = np.convolve(g, np.ones(3))                      # c2 (3, VALID): length 24
    g = np.repeat(g, 2) / 2                             # p1: length 48
    return np.convolve(g, np.ones(3))[1:1 + sizes[0]]   # c1 (3, padding 1): length 48


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_erf_of_a_linear_box_network_is_the_repeated_box_convolution_and_fills_the_theoretical_field():
    model = LinearBoxNet()
    variables = _init(model, (48, 48, 1))
    table = features.layers(model, (48, 48, 1))
    assert [t.name for t in table] == ["c1", "p1", "c2", "p2", "c3"]
    images = jax.random.normal(jax.random.key(1), (3, 48, 48, 1))
    for layer in table:
        m = erf.erf_map(_layer_fn(model, variables, layer.name), images)
        assert erf.support(m) == layer.field, layer.name  # all weights positive: nothing cancels
    c3 = table[-1]
    assert c3.field == (26, 26) and c3.jump == (4, 4)
    m = erf.erf_map(_layer_fn(model, variables, "c3"), images)
    profile = _box_profile(3, [48, 48, 24, 22, 11])
    # c3 has 2 input channels and c2 too: every path is counted 2 x 2 times along the 2-D product
    expected = np.outer(profile, profile) * 4
    # each entry sums at most 5*3*3*2*2 products of ones and quarters: exact in float32 up to a few
    # roundings of values below 1e3
    np.testing.assert_allclose(m, expected, rtol=0, atol=1e3 * 8 * F32)
    # the closed form's support and centre agree with the theoretical field's box
    rows = np.nonzero(profile)[0]
    top, left, h, w = patches.field_box(c3, 3, 3)
    assert (rows[0], rows[-1] - rows[0] + 1) == (top, h) == (left, w)


def test_mass_diameter_of_a_point_and_of_a_box():
    point = np.zeros((9, 9))
    point[4, 4] = 1
    assert erf.mass_diameter(point, (4, 4)) == 1
    box = np.zeros((9, 9))
    box[2:7, 2:7] = 1  # 25 pixels: the 3x3 centre holds 36%, 95% needs all of the 5x5
    assert erf.mass_diameter(box, (4, 4)) == 5
    assert erf.mass_diameter(box, (4, 4), 0.3) == 3
    even = np.zeros((8, 8))
    even[3:5, 3:5] = 1  # a 2x2 block centred between pixels
    assert erf.mass_diameter(even, (3.5, 3.5)) == 2
    assert erf.support(box) == (5, 5)


# --------------------------------------------------------------------------- one convolution ---

def test_feature_map_of_one_convolution_equals_ops_conv2d():
    model = TwoLayerNet()
    variables = _init(model, (8, 8, 3))
    x = jax.random.normal(jax.random.key(2), (2, 8, 8, 3))
    got = features.feature_maps(model, variables, x, ["conv"])["conv"]
    p = variables["params"]["conv"]
    want = ops.conv2d(x, p["kernel"], p["bias"], padding=1)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def _two_layer_logits(params, x):
    """TwoLayerNet written out with ops.conv2d, independently of flax."""
    a = jnp.tanh(ops.conv2d(x, params["conv"]["kernel"], params["conv"]["bias"], padding=1))
    return jnp.mean(a, axis=(1, 2)) @ params["fc"]["kernel"] + params["fc"]["bias"]


def test_saliency_equals_jax_grad_and_finite_differences():
    model = TwoLayerNet()
    variables = _init(model, (8, 8, 3))
    x = jax.random.normal(jax.random.key(3), (8, 8, 3))
    grad, heat = attribution.saliency(lambda b: model.apply(variables, b), x, cls=1)
    independent = jax.grad(lambda v: _two_layer_logits(variables["params"], v[None])[0, 1])(x)
    # the same operations in the same order: equal up to float32 rounding of 27-tap sums
    np.testing.assert_allclose(grad, independent, rtol=0, atol=27 * F32)
    np.testing.assert_array_equal(heat, np.max(np.abs(grad), axis=-1))
    h = 1e-2
    for (i, j, c) in [(0, 0, 0), (3, 4, 1), (7, 2, 2), (5, 5, 0)]:
        e = np.zeros(x.shape, np.float32)
        e[i, j, c] = h
        f = lambda v: float(_two_layer_logits(variables["params"], v[None])[0, 1])  # noqa: E731
        fd = (f(x + e) - f(x - e)) / (2 * h)
        # central difference: rounding of logits of size ~1 (about 100 float32 operations, 1e-5)
        # divided by 2h, plus truncation h^2/6 |f'''| with |f'''| <= 2 |w|^3 sums well below 1
        assert abs(fd - grad[i, j, c]) < 100 * F32 / (2 * h) + h * h, (i, j, c)


def test_occlusion_equals_an_explicit_loop():
    model = TwoLayerNet()
    variables = _init(model, (10, 10, 3))
    image = np.asarray(jax.random.normal(jax.random.key(4), (10, 10, 3)))

    def probs(b):
        return jax.nn.softmax(model.apply(variables, jnp.asarray(b)))

    got = attribution.occlusion(probs, image, cls=2, patch=3, stride=2, fill=0.5, batch=5)
    base = float(probs(image[None])[0, 2])
    want = []
    for y in (0, 2, 4, 6):
        row = []
        for x in (0, 2, 4, 6):
            occluded = image.copy()
            occluded[y:y + 3, x:x + 3] = 0.5
            row.append(base - float(probs(occluded[None])[0, 2]))
        want.append(row)
    np.testing.assert_allclose(got, np.array(want), rtol=0, atol=4 * F32)  # probabilities <= 1


def test_grad_cam_on_a_two_layer_net_equals_the_hand_computation():
    model = TwoLayerNet()
    variables = _init(model, (8, 8, 3))
    x = jax.random.normal(jax.random.key(5), (8, 8, 3))

    def logits_and_activation(b, delta):
        logits, acts = features.apply_capturing(model, variables, b, ["conv"], {"conv": delta})
        return logits, acts["conv"]

    cam = attribution.grad_cam(logits_and_activation, x, 0, (8, 8, 4))
    p = variables["params"]
    a = np.asarray(ops.conv2d(x[None], p["conv"]["kernel"], p["conv"]["bias"], padding=1))[0]
    # logit_0 = sum_k w_k0 mean_ij tanh(A_ijk) + b: d logit / d A_ijk = w_k0 (1 - tanh^2 A_ijk) / 64
    grads = np.asarray(p["fc"]["kernel"])[:, 0] * (1 - np.tanh(a) ** 2) / 64
    alpha = grads.mean(axis=(0, 1))
    want = np.maximum((a * alpha).sum(-1), 0)
    np.testing.assert_allclose(cam, want, rtol=1e-5, atol=1e-6)  # 4-term sums of float32 products


# ------------------------------------------------------------------------------ top patches ---

@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_top_patches_recorded_activation_equals_the_unit_on_its_cropped_field():
    model = ValidNet()
    variables = _init(model, (20, 20, 2), seed=6)
    layer = next(t for t in features.layers(model, (20, 20, 2)) if t.name == "c2")
    assert layer.field == (8, 8) and layer.jump == (2, 2)
    images = np.asarray(jax.random.uniform(jax.random.key(7), (24, 20, 20, 2)))
    units, k = [0, 3], 4
    top = {}
    for lo in range(0, 24, 10):  # batches of 10, 10, 4: the ranking spans batches
        acts = np.asarray(features.feature_maps(model, variables, images[lo:lo + 10], ["c2"])["c2"])
        top = patches.merge_top(top, patches.best_per_image(acts, units, lo), k)
    every = np.asarray(features.feature_maps(model, variables, images, ["c2"])["c2"])
    for unit in units:
        brute = np.sort(every[..., unit].reshape(24, -1).max(axis=1))[::-1][:k]
        np.testing.assert_array_equal([h.value for h in top[unit]], brute)
        for hit in top[unit]:
            box = patches.field_box(layer, hit.y, hit.x)
            assert 0 <= box[0] and box[0] + box[2] <= 20 and 0 <= box[1] and box[1] + box[3] <= 20
            piece = patches.crop(images[hit.image], box)
            again = features.feature_maps(model, variables, piece[None], ["c2"])["c2"]
            assert again.shape == (1, 1, 1, 5)  # the field is exactly what the unit sees
            # the same sums (18 + 36 taps) in another batch: float32 rounding of O(1) values
            np.testing.assert_allclose(float(again[0, 0, 0, unit]), hit.value, rtol=0,
                                       atol=64 * F32)


def test_crop_fills_outside_the_image():
    image = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    piece = patches.crop(image, (-1, 2, 3, 3), fill=-1)
    np.testing.assert_array_equal(piece[..., 0], [[-1, -1, -1], [2, 3, -1], [6, 7, -1]])


# ---------------------------------------------------------------------------------- filters ---

def test_first_layer_tiles_rgb_per_filter_and_grouped():
    kernel = np.random.default_rng(0).normal(size=(5, 5, 3, 8)).astype(np.float32)
    (tiles,) = filters.first_layer_tiles(kernel)
    assert tiles.shape == (8, 5, 5, 3)
    for f in range(8):  # each filter stretched to [0, 1] on its own, colours kept together
        k = kernel[..., f]
        np.testing.assert_allclose(tiles[f], (k - k.min()) / (k.max() - k.min()), atol=4 * F32)
    groups = filters.first_layer_tiles(kernel, groups=2)
    assert [g.shape for g in groups] == [(4, 5, 5, 3)] * 2
    np.testing.assert_array_equal(groups[1], tiles[4:])
    gray = filters.first_layer_tiles(kernel[:, :, :2, :])[0]
    assert gray.shape == (16, 5, 5, 1)  # filter-major, one tile per input channel
    np.testing.assert_array_equal(gray[3, ..., 0],
                                  filters.normalise(kernel[:, :, :2, 1])[..., 1])
    g = filters.grid(tiles, columns=3)
    assert g.shape == (3 * 6 - 1, 3 * 6 - 1, 3)


# ------------------------------------------------------------------------------ big models ---

@pytest.mark.parametrize("name", ["vgg16", "resnet50", "googlenet"])
def test_large_models_at_224_have_layers_and_shapes_without_compiling(name):
    from cnnjax.models import build

    model = build(name, num_classes=1000)
    table = features.layers(model, (224, 224, 3))
    assert table and all(t.field[0] >= 3 for t in table)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
    last = table[-1]
    x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    out = jax.eval_shape(lambda v, x: features.feature_maps(model, v, x, [last.name]), variables, x)
    assert out[last.name].shape == (2, *last.output_shape)
    cam = jax.eval_shape(lambda v, x: attribution.grad_cam(
        lambda b, d: (lambda lg, a: (lg, a[last.name]))(
            *features.apply_capturing(model, v, b, [last.name], {last.name: d})),
        x[0], 0, last.output_shape), variables, x)
    assert cam.shape == last.output_shape[:2]


def test_take_stops_at_the_limit_skips_padding_and_leaves_read_only_batches_alone():
    from cnnjax.visualize.run import take

    def batch(start, mask):
        b = {"image": np.arange(start, start + 4)[:, None, None, None], "label": np.arange(4),
             "mask": np.array(mask)}
        for a in b.values():
            a.flags.writeable = False  # as tf.data's arrays are
        return b

    batches = [batch(0, [1, 1, 1, 1]), batch(4, [1, 1, 0, 0]), batch(8, [1, 1, 1, 1])]
    got = [images[:, 0, 0, 0].tolist() for images, _ in take(iter(batches), 5)]
    assert got == [[0, 1, 2, 3], [4]]
    assert sum(len(i) for i, _ in take(iter(batches), 0)) == 10  # padding rows never count


def test_upsample_puts_each_unit_at_its_field_centre():
    heat = np.array([[0.0, 4.0], [8.0, 12.0]])
    # units at input rows / columns 1.5 and 3.5 (start 1.5, jump 2), image 6x6
    up = attribution.upsample(heat, (6, 6), (1.5, 1.5), (2, 2))
    assert up.shape == (6, 6)
    # pixel 2 lies a quarter of the way from unit 0 (1.5) to unit 1 (3.5); pixel 0 and 5 take
    # the edge units' values
    np.testing.assert_allclose(up[0], [0, 0, 1, 3, 4, 4])
    np.testing.assert_allclose(up[:, 0], [0, 0, 2, 6, 8, 8])
    np.testing.assert_allclose(up[2, 2], 0.75 * 0.75 * 0 + 0.25 * 0.75 * 4 + 0.75 * 0.25 * 8
                               + 0.25 * 0.25 * 12)
