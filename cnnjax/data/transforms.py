"""Per-example preprocessing in TensorFlow: decoding, crops, flips, lighting; uint8 in, uint8 out.

Every transform is split into a `window` (the crop rectangle, chosen from the image's shape alone, so
JPEG files can be decoded only inside it with `tf.io.decode_and_crop_jpeg`) and a `finish` (what is done
to the cropped pixels). Randomness comes from stateless ops keyed by a per-example key (cnnjax.data.tfdata
derives it from (seed, epoch, index)), so an example's augmentation is the same every run and does not
depend on batch size, host count or where a run resumed. Images are HWC; normalisation is left to the device
(`cnnjax.data.device.normalize`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import ml_collections

from cnnjax.data.config import DataError, check_transform, output_shape
from cnnjax.data.tf_cpu import tf
from cnnjax.data.transform_names import PAD, TRANSFORMS

# ImageNet RGB principal components in [0, 1] units (AlexNet Sec. 4.1; the values of fb.resnet.torch).
# Column j of PCA_EIGVEC is the eigenvector of eigenvalue PCA_EIGVAL[j].
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
              (-0.5808, -0.0045, -0.8140),
              (-0.5836, -0.6948, 0.4203))

Window = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]   # (shape (3,), key (2,)) -> [y, x, h, w]
Finish = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]   # (image HWC, key (2,)) -> uint8 output


@dataclasses.dataclass(frozen=True)
class Transform:
    """A named preprocessing: optional crop window chosen before decoding, then `finish`."""

    name: str
    window: Window | None
    finish: Finish
    output_shape: tuple[int | None, ...]

    def on_decoded(self, image: tf.Tensor, window_key: tf.Tensor, finish_key: tf.Tensor) -> tf.Tensor:
        """The transform of an already decoded image: its window, then `finish`."""
        return self.finish(window_decoded(image, self.window, window_key), finish_key)


# ---------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------

def to_uint8(image: tf.Tensor, offset: tf.Tensor | float = 0.0) -> tf.Tensor:
    """Float pixels in [0, 255] units (plus `offset`) rounded half up and clipped to uint8."""
    if image.dtype == tf.uint8:
        return image
    # One add and one saturating cast: the cast truncates, so +0.5 rounds (values are >= 0 after
    # the clip that saturate_cast applies).
    return tf.saturate_cast(image + (tf.cast(offset, tf.float32) + 0.5), tf.uint8)


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """Grayscale -> RGB by repetition, RGB -> grayscale by ITU-R 601 luma, RGBA -> RGB by dropping alpha."""
    have = image.shape[-1]
    if have == channels:
        return image
    if have == 1 and channels == 3:
        return tf.image.grayscale_to_rgb(image)
    if have in (3, 4) and channels == 1:
        return tf.image.rgb_to_grayscale(image[..., :3])
    if have == 4 and channels == 3:
        return image[..., :3]
    raise DataError(f"cannot convert images with {have} channels to data.channels={channels}")


def _is_cmyk_jpeg(encoded: tf.Tensor) -> tf.Tensor:
    """True for a JPEG of 4 components (CMYK/YCCK), which libjpeg cannot turn into grayscale."""
    return tf.cond(tf.io.is_jpeg(encoded),
                   lambda: tf.image.extract_jpeg_shape(encoded)[2] == 4, lambda: tf.constant(False))


def _is_png(encoded: tf.Tensor) -> tf.Tensor:
    return tf.strings.substr(encoded, 0, 8) == b"\x89PNG\r\n\x1a\n"


def _luma(rgb: tf.Tensor) -> tf.Tensor:
    """RGB uint8 -> grayscale uint8 by ITU-R 601 luma (tf.image.rgb_to_grayscale, rounded)."""
    return tf.image.rgb_to_grayscale(rgb)


def header_size(encoded: tf.Tensor) -> tf.Tensor:
    """(height, width) int64 as the file's header states them, nothing decoded: JPEG (its frame
    header, tf.image.extract_jpeg_shape), PNG (IHDR), GIF (logical screen), BMP (info header);
    (0, 0) for any other bytes, which the decoders refuse anyway."""
    head = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, 0, 26) + b"\0" * 26, tf.uint8)[:26],
                   tf.int64)

    def number(offset, size, big_endian):  # unsigned integer of `size` bytes at `offset`
        shifts = [8 * (size - 1 - k if big_endian else k) for k in range(size)]
        return tf.reduce_sum(tf.bitwise.left_shift(head[offset:offset + size], shifts))

    def other():  # fixed offsets: plain arithmetic, picked by the signature (one cond in all)
        bmp_height = number(22, 4, False)  # negative (top-down rows): two's complement
        sizes = tf.stack([
            tf.stack([number(20, 4, True), number(16, 4, True)]),           # PNG
            tf.stack([number(8, 2, False), number(6, 2, False)]),           # GIF
            tf.stack([tf.where(bmp_height >= 2**31, 2**32 - bmp_height, bmp_height),
                      number(18, 4, False)]),                               # BMP
            tf.zeros([2], tf.int64)])
        kind = tf.where(_is_png(encoded), 0, tf.where(
            tf.strings.substr(encoded, 0, 4) == b"GIF8", 1,
            tf.where(tf.strings.substr(encoded, 0, 2) == b"BM", 2, 3)))
        return sizes[kind]

    return tf.cond(tf.io.is_jpeg(encoded),
                   lambda: tf.cast(tf.image.extract_jpeg_shape(encoded)[:2], tf.int64), other)


def header_problem(encoded: tf.Tensor, max_pixels: int) -> str | None:
    """Why the encoded image must not be decoded, read from its header alone (host side): no JPEG,
    PNG, GIF or BMP header, or more pixels than `max_pixels`; None when the header is fine."""
    try:
        height, width = (int(v) for v in header_size(encoded).numpy())
    except tf.errors.OpError:  # a JPEG cut short before its frame header
        height = width = 0
    if height * width == 0:
        return "not a JPEG, PNG, GIF or BMP file (no image header)"
    if height * width > max_pixels:
        return (f"{width}x{height} = {width * height:,} pixels, more than data.max_image_pixels="
                f"{max_pixels:,} (not decoded)")
    return None


def within_pixel_limit(encoded: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """`encoded` itself, or InvalidArgumentError when its header states more than `max_pixels`
    pixels: a few hundred KB of PNG can expand to gigabytes (a decompression bomb), so the size is
    read before the decoder runs."""
    size = header_size(encoded)
    # tf.debugging.Assert with string data only: no cond around it (assert_less_equal adds one,
    # which costs more per image than the header read itself).
    check = tf.debugging.Assert(size[0] * size[1] <= max_pixels,
                                [f"the image has more pixels than data.max_image_pixels={max_pixels}"])
    with tf.control_dependencies([check]):
        return tf.identity(encoded)


def decode(encoded: tf.Tensor, channels: int) -> tf.Tensor:
    """JPEG, PNG, GIF or BMP bytes -> (H, W, channels) uint8, whatever the file's own color mode.

    channels=3: grayscale, palette and CMYK images become RGB, alpha is dropped (TensorFlow's
    decoders do all of this). channels=1: JPEG (gray or YCbCr: libjpeg's luma) and PNG (libpng's
    luma, palette and alpha handled) decode straight to gray; CMYK JPEGs, GIFs and BMPs, which the
    decoders cannot turn into gray, decode to RGB and take ITU-R 601 luma.
    """
    if channels == 3:
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return tf.ensure_shape(image, [None, None, 3])

    def direct():
        return tf.io.decode_image(encoded, channels=1, expand_animations=False)

    def via_rgb():
        return _luma(tf.io.decode_image(encoded, channels=3, expand_animations=False))

    native_gray = tf.logical_and(tf.logical_or(tf.io.is_jpeg(encoded), _is_png(encoded)),
                                 tf.logical_not(_is_cmyk_jpeg(encoded)))
    image = tf.cond(native_gray, direct, via_rgb)
    return tf.ensure_shape(image, [None, None, channels])


def crop(image: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    """image[y:y+h, x:x+w] for window = [y, x, h, w]."""
    return tf.slice(image, tf.stack([window[0], window[1], 0]), tf.stack([window[2], window[3], -1]))


def decode_window(encoded: tf.Tensor, window: Window | None, key: tf.Tensor,
                  channels: int) -> tf.Tensor:
    """Decodes only the window of a JPEG (fused decode-and-crop); other formats decode, then crop."""
    if window is None:
        return decode(encoded, channels)

    def jpeg():
        box = window(tf.image.extract_jpeg_shape(encoded), key)
        if channels == 1:  # CMYK: decode to RGB, then luma (libjpeg refuses CMYK -> gray)
            return tf.cond(_is_cmyk_jpeg(encoded),
                           lambda: _luma(tf.io.decode_and_crop_jpeg(encoded, box, channels=3)),
                           lambda: tf.io.decode_and_crop_jpeg(encoded, box, channels=1))
        return tf.io.decode_and_crop_jpeg(encoded, box, channels=channels)

    def other():
        image = decode(encoded, channels)
        return crop(image, window(tf.shape(image), key))

    return tf.ensure_shape(tf.cond(tf.io.is_jpeg(encoded), jpeg, other), [None, None, channels])


def window_decoded(image: tf.Tensor, window: Window | None, key: tf.Tensor) -> tf.Tensor:
    """The same window applied to an already decoded image (in-memory sources)."""
    return image if window is None else crop(image, window(tf.shape(image), key))


def random_flip(image: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
    """Mirrors the image left-right with probability 1/2."""
    return tf.image.stateless_random_flip_left_right(image, seed=key)


def pca_lighting(std: float, key: tf.Tensor) -> tf.Tensor:
    """AlexNet Sec. 4.1: the RGB offset sum_j p_j alpha_j lambda_j, alpha_j ~ N(0, std^2), that is
    added to every pixel; p_j, lambda_j are ImageNet's RGB eigenvectors and eigenvalues. (3,) float32
    in [0, 255] units."""
    alpha = tf.random.stateless_normal([3], seed=key) * std
    return tf.linalg.matvec(tf.constant(PCA_EIGVEC), alpha * tf.constant(PCA_EIGVAL)) * 255.0


def resize(image: tf.Tensor, size: int) -> tf.Tensor:
    """Bilinear resize to size x size (float32). Exact when the image already has that size."""
    return tf.image.resize(image, [size, size], method="bilinear")


def resize_shorter(image: tf.Tensor, size: int) -> tf.Tensor:
    """Bilinear resize so that the shorter side is `size`, keeping the aspect ratio (float32)."""
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = size / tf.reduce_min(hw)
    new_hw = tf.maximum(tf.cast(tf.round(hw * scale), tf.int32), size)
    return tf.image.resize(image, new_hw, method="bilinear")


def scaled_side(shape: tf.Tensor, image_size: int, resize_size: int) -> tf.Tensor:
    """Side of the square that becomes image_size pixels once the shorter side is resize_size."""
    shorter = tf.cast(tf.minimum(shape[0], shape[1]), tf.float32)
    side = tf.cast(tf.round(shorter * (image_size / resize_size)), tf.int32)
    return tf.clip_by_value(side, 1, tf.minimum(shape[0], shape[1]))


def uniform_int(key: tf.Tensor, high: tf.Tensor) -> tf.Tensor:
    """An integer uniform in [0, high] (inclusive)."""
    return tf.random.stateless_uniform([], seed=key, minval=0, maxval=high + 1, dtype=tf.int32)


def five_crops(image: tf.Tensor, size: int | tf.Tensor, width: int | tf.Tensor | None = None
               ) -> tf.Tensor:
    """(5, size, width, C): top-left, top-right, bottom-left, bottom-right, center (AlexNet Sec. 4.1);
    width defaults to size (square crops)."""
    width = size if width is None else width
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    corners = [(0, 0), (0, w - width), (h - size, 0), (h - size, w - width),
               ((h - size) // 2, (w - width) // 2)]
    return tf.stack([image[y:y + size, x:x + width] for y, x in corners])


def with_mirrors(five: tf.Tensor, crops: int) -> tf.Tensor:
    """The 5 crops (crops=5) or the 5 crops followed by their left-right mirror images (crops=10)."""
    return five if crops == 5 else tf.concat([five, tf.reverse(five, axis=[2])], axis=0)


def padded_crops(view: tf.Tensor, crops: int) -> tf.Tensor:
    """(crops, h, w, C) for the single-crop view (h, w, C): the view padded with PAD zeros on every
    side, its four h x w corner crops and its centre crop (the view itself), then for crops=10 their
    mirror images. The corners are the extreme shifts of pad_crop_flip's random crop, so this is the
    usual CIFAR test-time augmentation; crops=1 is the view unchanged."""
    if crops == 1:
        return view
    h, w = tf.shape(view)[0], tf.shape(view)[1]
    padded = tf.pad(view, [[PAD, PAD], [PAD, PAD], [0, 0]])
    return with_mirrors(five_crops(padded, h, w), crops)


# ---------------------------------------------------------------------------------------------------
# Named transforms
# ---------------------------------------------------------------------------------------------------

def alexnet_window(image_size: int, resize_size: int) -> Window:
    """A random square that is an image_size crop of the image resized to shorter side resize_size.

    Cropping first and resizing only the crop picks the same windows as resize-then-crop, but decodes
    and resamples fewer pixels.
    """
    def window(shape, key):
        side = scaled_side(shape, image_size, resize_size)
        ky, kx = tf.unstack(tf.random.experimental.stateless_split(key, 2))
        return tf.stack([uniform_int(ky, shape[0] - side), uniform_int(kx, shape[1] - side),
                         side, side])
    return window


def center_window(image_size: int, resize_size: int) -> Window:
    """The central square that is the center image_size crop after resizing to resize_size."""
    def window(shape, key):
        del key
        side = scaled_side(shape, image_size, resize_size)
        return tf.stack([(shape[0] - side) // 2, (shape[1] - side) // 2, side, side])
    return window


def inception_window(min_area: float, aspect_range: tuple[float, float]) -> Window:
    """Random-resized crop (Szegedy et al. 2015, Sec. 6): area in [min_area, 1] of the image, aspect
    (w/h) in aspect_range; 10 attempts, then the whole image."""
    def window(shape, key):
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.cast(shape, tf.int32), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=key,
            min_object_covered=0.0, aspect_ratio_range=tuple(aspect_range),
            area_range=(min_area, 1.0), max_attempts=10, use_image_if_no_bounding_boxes=True)
        return tf.stack([begin[0], begin[1], size[0], size[1]])
    return window


# Builders by name (the names, what they do and today's aliases: cnnjax.data.transform_names).
# A builder takes (data fields, train, crops) and returns (window, finish) for make_transform.
Builder = Callable[[ml_collections.ConfigDict, bool, int], tuple[Window | None, Finish]]
BUILDERS: dict[str, Builder] = {}


def transform(name: str) -> Callable[[Builder], Builder]:
    """Registers the decorated builder under `name`, which must be in transform_names.TRANSFORMS."""
    if name not in TRANSFORMS:
        raise KeyError(f"transform {name!r} is not in cnnjax.data.transform_names.TRANSFORMS")

    def register(builder: Builder) -> Builder:
        BUILDERS[name] = builder
        return builder
    return register


@transform("none")
def _none(data, train, crops):  # 5 and 10 crops: padded_crops of the image itself
    return None, lambda image, key: padded_crops(image, crops)


@transform("pad_or_crop")
def _pad_or_crop(data, train, crops):
    size = int(data.image_size)

    def finish(image, key):  # pads (MNIST 28 -> 32: LeCun et al. 1998, Sec. II-B) or crops;
        # 5 and 10 crops: padded_crops of that image_size view
        return padded_crops(tf.image.resize_with_crop_or_pad(image, size, size), crops)
    return None, finish


@transform("pad_crop_flip")
def _pad_crop_flip(data, train, crops):
    size, channels = int(data.image_size), int(data.channels)

    def finish(image, key):  # He et al. 2016 Sec. 4.2: pad 4, random crop, random flip
        kc, kf = tf.unstack(tf.random.experimental.stateless_split(key, 2))
        padded = tf.pad(image, [[PAD, PAD], [PAD, PAD], [0, 0]])
        return random_flip(tf.image.stateless_random_crop(padded, [size, size, channels], kc), kf)
    return None, finish


@transform("crop_flip_pca")
def _crop_flip_pca(data, train, crops):
    size, std = int(data.image_size), float(data.pca_lighting_std)

    def finish(image, key):
        kf, kl = tf.unstack(tf.random.experimental.stateless_split(key, 2))
        offset = pca_lighting(std, kl) if std > 0 else 0.0
        return random_flip(to_uint8(resize(image, size), offset), kf)
    return alexnet_window(size, int(data.resize_size)), finish


@transform("random_resized_crop")
def _random_resized_crop(data, train, crops):
    size = int(data.image_size)

    def finish(image, key):
        return random_flip(to_uint8(resize(image, size)), key)
    return inception_window(float(data.min_area), tuple(data.aspect_range)), finish


@transform("center_crop")
def _center_crop(data, train, crops):
    size, resize_size = int(data.image_size), int(data.resize_size)
    if crops == 1:
        return center_window(size, resize_size), lambda image, key: to_uint8(resize(image, size))

    def finish(image, key):  # 5 or 10 crops of the image with shorter side resize_size
        return with_mirrors(five_crops(to_uint8(resize_shorter(image, resize_size)), size), crops)
    return None, finish


def make_transform(data: ml_collections.ConfigDict, name: str, source_shape: tuple, *,
                   train: bool, crops: int = 1) -> Transform:
    """Transform `name` (a registered name or an older alias) for these data fields, in the training
    or evaluation role; source_shape is the source's (H, W, C).

    crops 5 and 10 (evaluation) yield (crops, H, W, C): for 'center_crop' the four corner and the
    centre image_size crops of the image resized to shorter side resize_size (AlexNet Sec. 4.1), for
    'pad_or_crop' and 'none' `padded_crops` of the single-crop view (the view padded by PAD, its
    corners and centre); crops 10 adds each crop's mirror image.
    """
    canonical = check_transform(data, name, train=train, crops=crops)
    shape = output_shape(data, canonical, source_shape, crops)
    window, finish = BUILDERS[canonical](data, train, crops)

    def checked(image, key):
        return tf.ensure_shape(finish(image, key), shape)

    return Transform(canonical, window, checked, shape)
