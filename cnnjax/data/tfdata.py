"""tf.data pipelines: example order, per-host sharding, batching, padding, corrupt-file tolerance.

Order (index-addressable sources: IDX, small TFDS, folders, synthetic). Training reads an endless
stream of example indices: epoch e is a permutation of [0, N) drawn from (seed, e), and the epochs are
concatenated. Global step s takes stream positions [s*G, (s+1)*G) and host p the slice
[s*G + p*B, s*G + (p+1)*B) of it (G the global, B the per-host batch). An example's augmentation is keyed
by (seed, e*N + index). Everything about step s is therefore a function of (seed, s, p): resuming at
step k starts the stream at position k*G without touching the examples before it. Evaluation reads
positions [0, ceil(N/G)*G) in order; positions >= N are padding with mask False.

Streamed TFDS datasets (too large for memory) are read in TFDS's record order, shuffled with a seeded
buffer, and resumed by skipping k*B encoded records (they are not decoded).
"""

from __future__ import annotations

import math
import os
import pathlib

import ml_collections
import numpy as np

from cnnjax.data import transforms as T
from cnnjax.data.config import DataError, max_image_pixels
from cnnjax.data.layout import Layout
from cnnjax.data.sources import ArraySource, FileSource, SyntheticSource
from cnnjax.data.synthetic import SYNTHETIC_SEED
from cnnjax.data.tf_cpu import tf
from cnnjax.data.tfds_source import TfdsStreamSource

STEPS_IN_FLIGHT = 2          # file sources: batches assembled at the same time


# ---------------------------------------------------------------------------------------------------
# Which examples each step reads
# ---------------------------------------------------------------------------------------------------

def train_steps(n: int, seed: int, layout: Layout, start_step: int) -> tf.data.Dataset:
    """Per training step of this host: index (B,) int64, key (B, 2) int64, valid (B,) all True."""
    seed_t = tf.constant(seed, tf.int64)
    first_epoch, offset = divmod(start_step * layout.total, n)

    def epoch(e):
        # Negative second seed words keep the permutation's random stream apart from the examples'.
        perm = tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), seed=tf.stack([seed_t, -1 - e]), alg="philox")
        perm = perm[tf.where(e == first_epoch, tf.constant(offset, tf.int64), 0):]
        return tf.data.Dataset.from_tensor_slices((perm, tf.fill(tf.shape(perm), e)))

    lo = layout.process_index * layout.local

    def host_slice(index, epochs):
        index, epochs = index[lo:lo + layout.local], epochs[lo:lo + layout.local]
        key = tf.stack([tf.fill(tf.shape(index), seed_t), epochs * n + index], axis=1)
        return {"index": index, "key": key, "valid": tf.ones_like(index, tf.bool)}

    stream = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch)
    return stream.batch(layout.total, drop_remainder=True).map(host_slice)


def eval_steps(n: int, layout: Layout) -> tf.data.Dataset:
    """Per evaluation step of this host: index (B,), key (B, 2), valid (B,) (False = padding)."""
    lo = layout.process_index * layout.local

    def positions(step):
        q = step * layout.total + lo + tf.range(layout.local, dtype=tf.int64)
        index = tf.minimum(q, n - 1)
        key = tf.stack([tf.zeros_like(index), index], axis=1)
        return {"index": index, "key": key, "valid": q < n}

    return tf.data.Dataset.range(math.ceil(n / layout.total)).map(positions)


# ---------------------------------------------------------------------------------------------------
# Steps -> batches
# ---------------------------------------------------------------------------------------------------

def host_gather(array: np.ndarray):
    """index (B,) -> array[index], read from the numpy array in place (object arrays -> tf.string).

    Capturing the array as a constant instead would serialise it into the dataset graph each time a
    pipeline starts (seconds per 100 MB) and cap it at protobuf's 2 GB; this costs one short
    Python call per batch.
    """
    dtype = tf.string if array.dtype == object else tf.as_dtype(array.dtype)

    def gather(index):
        out = tf.numpy_function(lambda i: array[i], [index], dtype, stateful=False)
        return tf.ensure_shape(out, [None, *array.shape[1:]])

    return gather


def _split_key(key):
    window_key, finish_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    return window_key, finish_key


def _mask_like(mask, image):
    return tf.reshape(mask, [-1] + [1] * (len(image.shape) - 1))


def memory_batches(source: ArraySource | SyntheticSource, transform: T.Transform, channels: int,
                   steps: tf.data.Dataset, parallel: int) -> tf.data.Dataset:
    """Batches of an in-memory or synthetic source: one gather per batch, then per-example maps."""
    if isinstance(source, ArraySource):
        images_of, labels_of = host_gather(source.images), host_gather(source.labels)
    else:
        def images_of(index):
            def noise(i):
                return tf.random.stateless_uniform(source.shape, tf.stack([SYNTHETIC_SEED, i]),
                                                   minval=0, maxval=256, dtype=tf.int32)
            return tf.cast(tf.map_fn(noise, index, fn_output_signature=tf.int32), tf.uint8)

        def labels_of(index):
            return tf.cast(index % source.num_classes, tf.int32)

    def one(args):
        image, key = args
        window_key, finish_key = _split_key(key)
        return transform.on_decoded(T.to_channels(image, channels), window_key, finish_key)

    def batch(step):
        out = tf.map_fn(one, (images_of(step["index"]), step["key"]),
                        fn_output_signature=tf.TensorSpec(transform.output_shape, tf.uint8))
        valid = step["valid"]
        out = tf.cond(tf.reduce_all(valid), lambda: out,
                      lambda: tf.where(_mask_like(valid, out), out, tf.zeros_like(out)))
        return {"image": out, "label": tf.where(valid, labels_of(step["index"]), 0), "mask": valid}

    return steps.map(batch, num_parallel_calls=parallel, deterministic=None)


def file_batches(source: FileSource, transform: T.Transform, channels: int, steps: tf.data.Dataset,
                 parallel: int, cache: bool, train: bool, max_pixels: int) -> tf.data.Dataset:
    """Batches of image files; a file that fails to read or decode, or whose header states more than
    `max_pixels` pixels (it is then not decoded), leaves its slot empty.

    Each step is its own small dataset whose decoding errors are dropped (`ignore_errors`), so a bad
    file only affects its own batch. Empty slots are reported through '_ok': in training they are
    filled with other examples of the same batch (shapes stay static), in evaluation their mask is
    False. '_index' and '_expected' let the caller name the files.
    """
    if cache:  # encoded bytes in memory: no file reads after the first pass over the folder
        blobs_of = host_gather(np.array([pathlib.Path(p).read_bytes() for p in source.paths], object))

        def encoded(entries, slot):
            return entries[slot]
    else:
        blobs_of = host_gather(np.array([os.fsencode(p) for p in source.paths], object))

        def encoded(entries, slot):
            return tf.io.read_file(entries[slot])
    labels_of = host_gather(source.labels)
    shape = transform.output_shape
    # Each step's dataset lives for one batch, too short for AUTOTUNE to raise its parallelism.
    parallel = parallel if parallel > 0 else len(os.sched_getaffinity(0))

    def step_batch(step):
        index, keys, valid = step["index"], step["key"], step["valid"]
        b = index.shape[0]
        entries, labels = blobs_of(index), labels_of(index)  # (b,) paths or bytes, (b,) labels

        def load(slot):
            window_key, finish_key = _split_key(keys[slot])
            blob = T.within_pixel_limit(encoded(entries, slot), max_pixels)
            image = T.decode_window(blob, transform.window, window_key, channels)
            return slot, image, labels[slot], finish_key

        def finish(slot, image, label, finish_key):
            return slot, transform.finish(image, finish_key), label

        slots = tf.data.Dataset.from_tensor_slices(tf.where(valid)[:, 0])
        loaded = (slots.map(load, num_parallel_calls=parallel, deterministic=None)
                  .ignore_errors()
                  .map(finish, num_parallel_calls=parallel, deterministic=None)
                  .batch(b))
        nothing = tf.data.Dataset.from_tensors(
            (tf.zeros([0], tf.int64), tf.zeros((0, *shape), tf.uint8), tf.zeros([0], tf.int32)))
        return loaded.concatenate(nothing).take(1).map(
            lambda slot, image, label: _assemble(slot, image, label, index, valid, b, train))

    return steps.interleave(step_batch, cycle_length=STEPS_IN_FLIGHT,
                            num_parallel_calls=STEPS_IN_FLIGHT, deterministic=None)


def _assemble(slot, image, label, index, valid, b, train):
    """Scatters the n decoded examples back to their b slots (see `file_batches`)."""
    n = tf.shape(slot)[0]

    def complete():  # every slot decoded: slots are 0..b-1 in order, nothing to move
        return image, label, tf.ones([b], tf.bool)

    def gaps():
        pos = tf.scatter_nd(slot[:, None], tf.range(1, n + 1), [b]) - 1
        ok = pos >= 0
        # Training repeats decoded examples of the batch in the empty slots; evaluation zeroes them
        # (index n of the zero-extended batch).
        fill = tf.where(ok, pos, tf.range(b) % tf.maximum(n, 1) if train else n)
        images = tf.concat([image, tf.zeros((1, *image.shape[1:]), tf.uint8)], axis=0)
        labels = tf.concat([label, tf.zeros([1], tf.int32)], axis=0)
        return tf.gather(images, fill), tf.gather(labels, fill), ok

    images, labels, ok = tf.cond(n == b, complete, gaps)
    return {"image": tf.ensure_shape(images, (b, *image.shape[1:])), "label": labels,
            "mask": ok & valid, "_ok": ok, "_index": index, "_expected": valid}


def why_unreadable(path: str, max_pixels: int) -> str:
    """Why `file_batches` left the file at `path` out, found again on the host (only for files that
    failed, so the cost does not matter): unreadable, over the pixel limit, or refused by the decoder."""
    try:
        encoded = tf.constant(pathlib.Path(path).read_bytes())
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    return T.header_problem(encoded, max_pixels) or "corrupt or unreadable (the decoder refused it)"


# ---------------------------------------------------------------------------------------------------
# Streamed TFDS datasets
# ---------------------------------------------------------------------------------------------------

def _records(source: TfdsStreamSource, part, *, shuffle_files: bool, seed: int) -> tf.data.Dataset:
    """This host's encoded records as {'image': bytes, 'label': int32}, in TFDS's (seeded) order."""
    import tensorflow_datasets as tfds

    read_config = tfds.ReadConfig(shuffle_seed=seed, shuffle_reshuffle_each_iteration=True)
    ds = source.builder.as_dataset(split=part, shuffle_files=shuffle_files, read_config=read_config,
                                   decoders={"image": tfds.decode.SkipDecoding()})
    return ds.map(lambda ex: {"image": ex["image"], "label": tf.cast(ex["label"], tf.int32)})


def stream_train(source: TfdsStreamSource, transform: T.Transform, data: ml_collections.ConfigDict,
                 layout: Layout, seed: int, start_step: int, parallel: int) -> tf.data.Dataset:
    """Endless training batches of a streamed TFDS split: seeded file order and shuffle buffer,
    reshuffled each epoch; resuming skips the first start_step * B records undecoded."""
    part, _, _ = source.host_split(layout.process_index, layout.process_count)
    ds = _records(source, part, shuffle_files=True, seed=seed)
    if data.cache:
        ds = ds.cache()
    ds = ds.shuffle(int(data.shuffle_buffer), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.enumerate().skip(start_step * layout.local)
    seed_t = tf.constant(seed, tf.int64)

    def load(q, record):
        key = tf.stack([seed_t, q * layout.process_count + layout.process_index])
        window_key, finish_key = _split_key(key)
        image = T.decode_window(record["image"], transform.window, window_key, data.channels)
        return {"image": transform.finish(image, finish_key), "label": record["label"]}

    return ds.map(load, num_parallel_calls=parallel, deterministic=None).batch(
        layout.local, drop_remainder=True)


def stream_eval(source: TfdsStreamSource, transform: T.Transform, data: ml_collections.ConfigDict,
                layout: Layout, parallel: int) -> tf.data.Dataset:
    """One pass over this host's even part of the split, padded (mask False) to as many batches as
    the largest host's part needs."""
    part, size, largest = source.host_split(layout.process_index, layout.process_count)
    key = tf.zeros([2], tf.int64)

    def load(record):
        image = T.decode_window(record["image"], transform.window, key, data.channels)
        return {"image": transform.finish(image, key), "label": record["label"],
                "mask": tf.constant(True)}

    ds = _records(source, part, shuffle_files=False, seed=0).map(
        load, num_parallel_calls=parallel, deterministic=None)
    padding = tf.data.Dataset.from_tensors(
        {"image": tf.zeros(transform.output_shape, tf.uint8), "label": tf.constant(0, tf.int32),
         "mask": tf.constant(False)})
    pad = math.ceil(largest / layout.local) * layout.local - size
    return ds.concatenate(padding.repeat(pad)).batch(layout.local)


# ---------------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------------

def _transform(source, data, name: str, *, train: bool, crops: int = 1) -> T.Transform:
    transform = T.make_transform(data, name, source.image_shape, train=train, crops=crops)
    if None in transform.output_shape:
        field = "train_transform" if train else "eval_transform"
        raise DataError(f"data.{field}='none' keeps each image's own size, but {source.name} has "
                        "images of different sizes: choose a transform that yields data.image_size")
    return transform


def _finalize(ds: tf.data.Dataset, deterministic: bool = True) -> tf.data.Dataset:
    # Every parallel stage above follows this option (deterministic=None). Off, a slow JPEG no longer
    # holds back the examples and batches behind it; the batches may then come out of order, so
    # a run is no longer repeatable and resuming no longer gives the uninterrupted run's batches.
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    # Parallelism comes from processing many examples at once; one thread per op wastes less.
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def train_dataset(source, data: ml_collections.ConfigDict, layout: Layout, *, seed: int,
                  start_step: int) -> tf.data.Dataset:
    """Endless per-host training batches from step `start_step` on (see the module docstring)."""
    transform = _transform(source, data, data.train_transform, train=True)
    parallel = int(data.num_parallel_calls)
    if isinstance(source, TfdsStreamSource):
        return _finalize(stream_train(source, transform, data, layout, seed, start_step, parallel),
                         data.get("deterministic", True))
    steps = train_steps(source.num_examples, seed, layout, start_step)
    if isinstance(source, FileSource):
        ds = file_batches(source, transform, data.channels, steps, parallel, data.cache, train=True,
                          max_pixels=max_image_pixels(data))
    else:
        ds = memory_batches(source, transform, data.channels, steps, parallel)
    return _finalize(ds, data.get("deterministic", True))


def eval_dataset(source, data: ml_collections.ConfigDict, layout: Layout, *,
                 crops: int) -> tf.data.Dataset:
    """One padded, masked pass over the evaluation split for this host."""
    transform = _transform(source, data, data.eval_transform, train=False, crops=crops)
    parallel = int(data.num_parallel_calls)
    if isinstance(source, TfdsStreamSource):
        return _finalize(stream_eval(source, transform, data, layout, parallel))
    steps = eval_steps(source.num_examples, layout)
    if isinstance(source, FileSource):
        ds = file_batches(source, transform, data.channels, steps, parallel, data.cache, train=False,
                          max_pixels=max_image_pixels(data))
    else:
        ds = memory_batches(source, transform, data.channels, steps, parallel)
    return _finalize(ds)
