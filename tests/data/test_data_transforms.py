"""Each transform's geometry, dtype and range, checked on images whose pixels say where they are."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.data import config, coordinate_image, encode

from cnnjax.data import transforms as T
from cnnjax.data.tf_cpu import tf

KEYS = [tf.constant([3, k], tf.int64) for k in range(40)]


def rgb_config(**fields):
    return config(**{"channels": 3, "mean": (0.5,), "std": (0.5,), **fields})


def run(transform: T.Transform, image: np.ndarray, key, encoded: bytes | None = None) -> np.ndarray:
    """The transform applied as the pipelines apply it: window (fused for bytes), then finish."""
    window_key, finish_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    if encoded is None:
        cropped = T.window_decoded(tf.constant(image), transform.window, window_key)
    else:
        cropped = T.decode_window(tf.constant(encoded), transform.window, window_key, 3)
    out = transform.finish(cropped, finish_key).numpy()
    assert out.dtype == np.uint8 and out.shape == transform.output_shape
    return out


def locate(out: np.ndarray, image: np.ndarray) -> tuple[int, int, bool]:
    """(y, x, flipped) of the window of coordinate image `image` that `out` is exactly."""
    flipped = out[0, 0, 1] > out[0, -1, 1]
    view = out[:, ::-1] if flipped else out
    y, x = int(view[0, 0, 0]), int(view[0, 0, 1])
    h, w = out.shape[:2]
    np.testing.assert_array_equal(view, image[y:y + h, x:x + w])
    return y, x, bool(flipped)


def test_mnist_pads_28_to_32_centered():
    image = np.random.default_rng(0).integers(1, 256, (28, 28, 1), dtype=np.uint8)
    t = T.make_transform(config(image_size=32, channels=1), "mnist", (28, 28, 1), train=True)
    out = run(t, image, KEYS[0])
    np.testing.assert_array_equal(out[2:30, 2:30], image)
    assert out.sum() == image.astype(int).sum()  # the border is zero


def test_cifar_is_a_flipped_or_not_window_of_the_4_padded_image():
    image = coordinate_image(32, 32) + 1  # +1 keeps image pixels apart from the zero padding
    padded = np.pad(image, [(4, 4), (4, 4), (0, 0)])
    t = T.make_transform(rgb_config(image_size=32), "cifar", (32, 32, 3), train=True)
    offsets, flips = set(), 0
    for key in KEYS:
        out = run(t, image, key)
        matches = [(y, x, f) for y in range(9) for x in range(9) for f in (False, True)
                   if np.array_equal(out, (padded[:, ::-1] if f else padded)[y:y + 32, x:x + 32])]
        assert len(matches) == 1
        offsets.add(matches[0][:2])
        flips += matches[0][2]
    assert len(offsets) > 20 and 8 <= flips <= 32
    same = T.make_transform(rgb_config(image_size=32), "cifar", (32, 32, 3), train=False)
    np.testing.assert_array_equal(run(same, image, KEYS[0]), image)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_alexnet_window_is_an_image_size_crop_of_the_resized_image(fmt):
    # Shorter side == resize_size, so the "resize" is the identity and crops are exact sub-images.
    image = coordinate_image(64, 80)
    data = rgb_config(image_size=56, resize_size=64, pca_lighting_std=0.0)
    t = T.make_transform(data, "alexnet", (None, None, 3), train=True)
    seen, flips = set(), 0
    for key in KEYS[:20]:
        if fmt == "PNG":
            y, x, flipped = locate(run(t, image, key, encode(image, "PNG")), image)
            seen.add((y, x))
            flips += flipped
            assert 0 <= y <= 8 and 0 <= x <= 24
        else:  # lossy: the fused decode-and-crop must match decoding first, then cropping
            encoded = encode(image, "JPEG", quality=95)
            decoded = tf.io.decode_jpeg(encoded).numpy()
            # libjpeg's cropped decode starts its IDCT and upsampling at the crop's MCU row, a full
            # decode at the top: the chroma upsampling and integer IDCT round differently at the
            # edges, by a few levels of 255 (a crop off by one pixel differs by far more here).
            np.testing.assert_allclose(run(t, decoded, key), run(t, decoded, key, encoded), atol=3)
    assert fmt == "JPEG" or (len(seen) >= 10 and 3 <= flips <= 17)


def test_alexnet_pca_lighting_shifts_along_imagenet_eigenvectors():
    gray = np.full((40, 40, 3), 128, np.uint8)
    data = rgb_config(image_size=40, resize_size=40, pca_lighting_std=0.1)
    t = T.make_transform(data, "alexnet", (40, 40, 3), train=True)
    alphas = []
    for k in range(200):
        out = run(t, gray, tf.constant([9, k], tf.int64)).astype(float)
        shift = out.reshape(-1, 3) - 128
        assert np.ptp(shift, axis=0).max() == 0  # one RGB offset for the whole image
        # Offset = V diag(lambda) alpha * 255 (AlexNet Sec. 4.1): solve for alpha.
        alpha = np.linalg.solve(np.array(T.PCA_EIGVEC), shift[0]) / (np.array(T.PCA_EIGVAL) * 255)
        alphas.append(alpha[0])  # the first component is large enough to survive uint8 rounding
    assert abs(np.mean(alphas)) < 0.03 and 0.08 < np.std(alphas) < 0.12
    white = np.full((40, 40, 3), 255, np.uint8)
    outs = np.stack([run(t, white, key) for key in KEYS])
    assert outs.min() > 200  # clipped at 255, never wrapped around to dark values


def test_inception_window_respects_area_and_aspect_and_can_be_the_whole_image():
    shape = tf.constant([300, 400, 3], tf.int32)
    window = T.inception_window(0.08, (3 / 4, 4 / 3))
    boxes = np.stack([window(shape, key).numpy() for key in KEYS])
    y, x, h, w = boxes.T
    whole = (h == 300) & (w == 400)
    area, aspect = h * w / (300 * 400), w / h
    assert np.all(y >= 0) and np.all(x >= 0) and np.all(y + h <= 300) and np.all(x + w <= 400)
    assert np.all(whole | ((area >= 0.08 - 0.01) & (aspect > 0.74) & (aspect < 1.35)))
    assert len({tuple(b) for b in boxes}) > 30 and area.min() < 0.5
    image = coordinate_image(48, 48)
    t = T.make_transform(rgb_config(image_size=48, min_area=1.0, aspect_range=(1.0, 1.0)),
                         "inception", (48, 48, 3), train=True)
    flips = [locate(run(t, image, key, encode(image, "PNG")), image) for key in KEYS[:10]]
    assert {f[:2] for f in flips} == {(0, 0)} and 1 <= sum(f[2] for f in flips) <= 9


def test_inception_on_real_sizes_yields_image_size_uint8():
    image = np.random.default_rng(1).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    t = T.make_transform(rgb_config(image_size=64), "inception", (None, None, 3), train=True)
    out = run(t, image, KEYS[0], encode(image, "JPEG"))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8 and out.std() > 20


def test_center_crop_is_the_central_square_of_the_resized_image():
    image = coordinate_image(64, 80)
    t = T.make_transform(rgb_config(image_size=56, resize_size=64), "center_crop", (64, 80, 3),
                         train=False)
    np.testing.assert_array_equal(run(t, image, KEYS[0], encode(image, "PNG")), image[4:60, 12:68])
    # A larger image is first scaled: 128x160 -> shorter side 64 -> center 56 of the 64x80 image.
    big = np.repeat(np.repeat(coordinate_image(64, 80), 2, axis=0), 2, axis=1)
    out = run(t, big, KEYS[0]).astype(int)
    assert abs(out[0, 0, 0] - 4) <= 1 and abs(out[0, 0, 1] - 12) <= 1
    assert abs(out[-1, -1, 0] - 59) <= 1 and abs(out[-1, -1, 1] - 67) <= 1


@pytest.mark.parametrize("crops", [5, 10])
def test_multi_crop_geometry(crops):
    image = coordinate_image(64, 90)  # shorter side == resize_size: the resize is the identity
    t = T.make_transform(rgb_config(image_size=48, resize_size=64), "center_crop", (64, 90, 3),
                         train=False, crops=crops)
    out = run(t, image, KEYS[0])
    assert out.shape == (crops, 48, 48, 3)
    corners = [(0, 0), (0, 42), (16, 0), (16, 42), (8, 21)]  # TL, TR, BL, BR, center
    for k, (y, x) in enumerate(corners):
        np.testing.assert_array_equal(out[k], image[y:y + 48, x:x + 48])
        if crops == 10:
            np.testing.assert_array_equal(out[5 + k], image[y:y + 48, x:x + 48][:, ::-1])


@pytest.mark.parametrize("name, source, size", [("pad_or_crop", (28, 28), 32),  # MNIST: padded
                                                 ("pad_or_crop", (40, 36), 32),  # cropped
                                                 ("none", (32, 32), 32)])         # CIFAR preset
@pytest.mark.parametrize("crops", [5, 10])
def test_multi_crop_of_a_fixed_size_view_is_its_padded_corners_and_center(name, source, size, crops):
    """numpy: the single-crop view, zero-padded by 4 on each side, cut at the four corners and the
    center (which is the view itself), then mirrored for 10 crops."""
    image = coordinate_image(*source) + 1  # +1 keeps image pixels apart from the zero padding
    t = T.make_transform(rgb_config(image_size=size), name, (*source, 3), train=False, crops=crops)
    out = run(t, image, KEYS[0])
    # the view: image_size x image_size, centred (resize_with_crop_or_pad), or the image itself
    canvas = np.zeros((max(source[0], size), max(source[1], size), 3), np.uint8)
    top, left = (canvas.shape[0] - source[0]) // 2, (canvas.shape[1] - source[1]) // 2
    canvas[top:top + source[0], left:left + source[1]] = image
    y0, x0 = (canvas.shape[0] - size) // 2, (canvas.shape[1] - size) // 2
    view = canvas[y0:y0 + size, x0:x0 + size] if name == "pad_or_crop" else image
    np.testing.assert_array_equal(run(T.make_transform(rgb_config(image_size=size), name,
                                                       (*source, 3), train=False), image, KEYS[0]),
                                  view)
    padded = np.pad(view, [(4, 4), (4, 4), (0, 0)])
    five = [padded[y:y + size, x:x + size] for y, x in [(0, 0), (0, 8), (8, 0), (8, 8), (4, 4)]]
    expected = np.stack(five + [c[:, ::-1] for c in five] if crops == 10 else five)
    assert out.shape == (crops, size, size, 3)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[4], view)  # the center crop is the single-crop view


def test_none_keeps_pixels_and_channel_conversion():
    rgb = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    t = T.make_transform(rgb_config(), "none", (5, 7, 3), train=True)
    np.testing.assert_array_equal(run(t, rgb, KEYS[0]), rgb)
    gray = T.to_channels(tf.constant(rgb), 1).numpy()[..., 0].astype(float)
    luma = rgb @ np.array([0.2989, 0.5870, 0.1140])  # ITU-R 601
    assert np.abs(gray - luma).max() <= 1.0
    back = T.to_channels(tf.constant(rgb[..., :1]), 3).numpy()
    np.testing.assert_array_equal(back, np.repeat(rgb[..., :1], 3, axis=-1))


def test_cmyk_and_grayscale_jpegs_decode_to_rgb():
    colour = np.zeros((16, 16, 3), np.uint8)
    colour[..., 0], colour[..., 1], colour[..., 2] = 200, 50, 30
    cmyk = encode(colour, "JPEG", mode="CMYK", quality=95)
    for decoded in (T.decode(tf.constant(cmyk), 3).numpy(),
                    T.decode_window(tf.constant(cmyk), T.center_window(8, 16), KEYS[0], 3).numpy()):
        assert decoded.shape[-1] == 3
        # JPEG at quality 95 quantises each channel by a level or two, and CMYK -> RGB rounds twice
        # more (to CMYK when encoding, back to RGB when decoding): within 4 of 255.
        np.testing.assert_allclose(decoded.reshape(-1, 3).mean(axis=0), [200, 50, 30], atol=4)
    gray = encode(np.full((16, 16), 90, np.uint8), "JPEG")
    decoded = T.decode(tf.constant(gray), 3).numpy()
    assert decoded.shape == (16, 16, 3) and np.all(np.abs(decoded.astype(int) - 90) <= 1)
