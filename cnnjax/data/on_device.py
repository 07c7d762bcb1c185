"""Small datasets served without TensorFlow: array pools kept on the devices, augmented there in JAX.

A source held as arrays (IDX files and small TFDS datasets: ArraySource; the synthetic source) with a
transform JAX implements here ('none', 'pad_or_crop', 'pad_crop_flip'; evaluation: 'none' and
'pad_or_crop' with 1, 5 or 10 crops) is served by numpy and JAX alone, chosen by data.pipeline
('auto' | 'device' | 'tfdata', see `serves`).

Training: the uint8 pool (the source's images in data.channels, with the deterministic part of the
transform applied once on the host) is copied to every device once; each step moves only its indices,
and one jitted function gathers the examples and augments them on the device. Order follows tfdata's
contract with numpy's generator: epoch e is a permutation of [0, N) drawn from (seed, e), global step
s takes stream positions [s*G, (s+1)*G) and host p the slice [p*B, (p+1)*B) of them, so step s is a
function of (seed, s) alone and resuming at step k needs nothing before it. An example's augmentation
is keyed by fold_in(fold_in(key(seed), e), index): it does not depend on batch size or host count.
(The permutation and random streams differ from tf.data's; the distributions are the same.)

Evaluation reads positions [0, ceil(N/G)*G) in order from the host pool; positions >= N are padding
(zeros, mask False), as tfdata's evaluation batches.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator

import ml_collections
import numpy as np

from cnnjax.data.arrays import ArraySource
from cnnjax.data.config import DataError, transform_name
from cnnjax.data.layout import Layout
from cnnjax.data.sources import SyntheticSource
from cnnjax.data.transform_names import PAD

TRAIN_TRANSFORMS = ("none", "pad_or_crop", "pad_crop_flip")
EVAL_TRANSFORMS = ("none", "pad_or_crop")


def why_not(source, data: ml_collections.ConfigDict, name: str, *, train: bool) -> str | None:
    """Why `source` read with transform `name` cannot be served here; None when it can."""
    if not isinstance(source, ArraySource | SyntheticSource):
        return (f"{source.name} is not held as arrays (only IDX files, small TFDS datasets and "
                "'synthetic' are)")
    name = transform_name(name, train=train)
    if name not in (TRAIN_TRANSFORMS if train else EVAL_TRANSFORMS):
        return f"the transform {name!r} runs only in tf.data"
    have = source.image_shape[-1]
    if isinstance(source, ArraySource) and have != data.channels and (have, data.channels) not in (
            (1, 3), (4, 3)):
        return f"converting {have}-channel images to data.channels={data.channels} runs only in tf.data"
    if name == "pad_crop_flip":
        h, w = source.image_shape[:2]
        if min(h, w) + 2 * PAD < data.image_size:
            return (f"data.image_size={data.image_size} exceeds the padded {h + 2 * PAD}x"
                    f"{w + 2 * PAD} images pad_crop_flip crops from")
    return None


def serves(source, data: ml_collections.ConfigDict, name: str, *, train: bool) -> bool:
    """Whether data.pipeline serves `source` with transform `name` here ('auto': whenever possible,
    'device': always, else a DataError saying why not, 'tfdata': never). The value itself is
    checked with the other data fields (config.check_data_config), before any source is read."""
    mode = data.get("pipeline", "auto")
    if mode == "tfdata":
        return False
    why = why_not(source, data, name, train=train)
    if why is not None and mode == "device":
        raise DataError(f"data.pipeline='device' cannot serve {source.name}: {why}; "
                        "data.pipeline='auto' or 'tfdata' reads it through tf.data")
    return why is None


# ---------------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------------

def train_batches(source, data: ml_collections.ConfigDict, layout: Layout, *, seed: int,
                  start_step: int) -> Iterator[dict[str, np.ndarray]]:
    """Endless host batches {'image', 'label'} of this host's part of each step, from `start_step`
    (the same function as on the devices, run on JAX's default device)."""
    import jax

    images, labels = jax.device_put(pool(source, data, train=True))  # once, not at every step
    batch = jitted_batch(*_augmentation(data), seed, None)
    lo = layout.process_index * layout.local
    step = start_step
    while True:
        index = step_indices(source.num_examples, seed, step, layout.total)[:, lo:lo + layout.local]
        yield jax.tree.map(np.asarray, batch(images, labels, index))
        step += 1


def device_train_batches(source, data: ml_collections.ConfigDict, *, global_batch_size: int,
                         seed: int, start_step: int, sharding) -> Iterator[dict]:
    """The batches of `train_batches` (all hosts together) as global arrays split by `sharding`.

    The pool is copied to every device once; each step then moves only its (2, G) int32 indices
    and epochs, so the host does no per-step image work and no image bytes cross the host-device
    link. Every process passes the whole index array; the output sharding hands each process the
    rows of its own devices, the concatenation in process order of prefetch_to_device.
    """
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    replicated = NamedSharding(sharding.mesh, PartitionSpec())

    def put(x):  # every process holds the whole value
        return jax.make_array_from_process_local_data(replicated, x)

    images, labels = (put(x) for x in pool(source, data, train=True))
    batch = jitted_batch(*_augmentation(data), seed, sharding)
    step = start_step
    while True:
        yield batch(images, labels, put(step_indices(source.num_examples, seed, step,
                                                     global_batch_size)))
        step += 1


def eval_batches(source, data: ml_collections.ConfigDict, layout: Layout, crops: int = 1
                 ) -> Iterator[dict[str, np.ndarray]]:
    """One pass in order, this host's slice of each step, padding zeroed and masked out; images
    (B, H, W, C), or (B, crops, H, W, C) for 5 and 10 crops (`padded_crops`)."""
    images, labels = pool(source, data, train=False)
    n = source.num_examples
    lo = layout.process_index * layout.local
    for step in range(math.ceil(n / layout.total)):
        q = step * layout.total + lo + np.arange(layout.local)
        valid = q < n
        index = np.minimum(q, n - 1)
        image = images[index]
        image[~valid] = 0
        yield {"image": padded_crops(image, crops), "label": np.where(valid, labels[index], 0),
               "mask": valid}


def pool(source, data: ml_collections.ConfigDict, *, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W, data.channels) uint8 with the deterministic part of the split's transform
    done (pad_or_crop; nothing for 'none' and for pad_crop_flip, whose work is random), labels (N,)."""
    if isinstance(source, SyntheticSource):
        from cnnjax.data import synthetic

        images, labels = synthetic.source_pool(source, data)
    else:
        images, labels = to_channels(source.images, data.channels), source.labels.astype(np.int32)
    name = transform_name(data.train_transform if train else data.eval_transform, train=train)
    if name == "pad_or_crop":
        images = pad_or_crop(images, int(data.image_size))
    return images, labels


# ---------------------------------------------------------------------------------------------------
# Pure functions: order, the transforms in numpy (deterministic) and JAX (random)
# ---------------------------------------------------------------------------------------------------

def step_indices(n: int, seed: int, step: int, global_batch: int) -> np.ndarray:
    """(2, G) int32: the example indices and their epochs of global training step `step` (see the
    module docstring)."""
    start = step * global_batch
    out, filled = np.empty((2, global_batch), np.int32), 0
    while filled < global_batch:
        epoch, offset = divmod(start + filled, n)
        take = min(n - offset, global_batch - filled)
        perm = _permutation(n, seed, epoch)
        out[0, filled:filled + take] = perm[offset:offset + take]
        out[1, filled:filled + take] = epoch
        filled += take
    return out


@functools.lru_cache(maxsize=2)  # a step reads one epoch, or two at a boundary
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def _augmentation(data: ml_collections.ConfigDict) -> tuple[str, int]:
    return transform_name(data.train_transform, train=True), int(data.image_size)


@functools.lru_cache(maxsize=8)
def jitted_batch(name: str, size: int, seed: int, sharding=None) -> Callable:
    """Jitted (images (N, ...) uint8, labels (N,), index_epoch (2, B) int32) -> {'image', 'label'}
    (out_shardings `sharding`): the gather, then for pad_crop_flip each example's augmentation keyed
    by (seed, epoch, index). Cached: a resumed or repeated pipeline does not compile again."""
    import jax

    def batch(images, labels, index_epoch):
        index, epoch = index_epoch[0], index_epoch[1]
        image = images[index]
        if name == "pad_crop_flip":
            base = jax.random.key(seed)
            keys = jax.vmap(lambda e, i: jax.random.fold_in(jax.random.fold_in(base, e), i))(
                epoch, index)
            image = jax.vmap(lambda x, k: pad_crop_flip(x, k, size))(image, keys)
        return {"image": image, "label": labels[index]}

    return jax.jit(batch, out_shardings=sharding)


def pad_crop_flip(image, key, size: int):
    """He et al. 2016 Sec. 4.2, as transforms.pad_crop_flip: (H, W, C) padded by PAD zeros, a size x
    size crop at an offset uniform over every position, mirrored left-right with probability 1/2."""
    import jax
    import jax.numpy as jnp

    padded = jnp.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)))
    k_crop, k_flip = jax.random.split(key)
    limit = jnp.array([padded.shape[0] - size + 1, padded.shape[1] - size + 1])
    y, x = jax.random.randint(k_crop, (2,), 0, limit)
    out = jax.lax.dynamic_slice(padded, (y, x, 0), (size, size, image.shape[-1]))
    return jnp.where(jax.random.bernoulli(k_flip), out[:, ::-1], out)


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """(N, H, W, C) -> (N, H, W, channels) where that is exact: gray -> RGB by repetition, RGBA -> RGB
    by dropping alpha (transforms.to_channels; luma stays in tf.data, see `why_not`)."""
    have = images.shape[-1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return np.repeat(images, 3, axis=-1)
    if have == 4 and channels == 3:
        return np.ascontiguousarray(images[..., :3])
    raise DataError(f"cannot convert images with {have} channels to data.channels={channels} here")


def pad_or_crop(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, C) zero-padded or center-cropped to (N, size, size, C), offsets rounded down as in
    tf.image.resize_with_crop_or_pad."""
    n, h, w, c = images.shape
    out = np.zeros((n, size, size, c), images.dtype)
    hh, ww = min(h, size), min(w, size)
    cy, cx = max((h - size) // 2, 0), max((w - size) // 2, 0)
    py, px = max((size - h) // 2, 0), max((size - w) // 2, 0)
    out[:, py:py + hh, px:px + ww] = images[:, cy:cy + hh, cx:cx + ww]
    return out


def padded_crops(images: np.ndarray, crops: int) -> np.ndarray:
    """(B, H, W, C) unchanged for crops=1; else (B, crops, H, W, C): each view padded by PAD zeros,
    its four corner crops and its centre (the view), then for crops=10 their mirror images
    (transforms.padded_crops)."""
    if crops == 1:
        return images
    _, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (PAD, PAD), (PAD, PAD), (0, 0)))
    corners = ((0, 0), (0, 2 * PAD), (2 * PAD, 0), (2 * PAD, 2 * PAD), (PAD, PAD))
    five = np.stack([padded[:, y:y + h, x:x + w] for y, x in corners], axis=1)
    return five if crops == 5 else np.concatenate([five, five[:, :, :, ::-1]], axis=1)
