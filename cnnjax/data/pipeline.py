"""The training loop's view of the data: batches of host numpy arrays, and what a split holds.

Importing this module does not import TensorFlow; building a pipeline does (cnnjax.data.tfdata), except
for a source held as arrays with a transform JAX implements, which numpy and JAX serve from the
devices' memory (cnnjax.data.on_device; data.pipeline chooses).
Configuration errors (unknown source, missing path, empty class folder, bad transform) raise a one-line
DataError when the pipeline is built, before the first batch.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator

import ml_collections
import numpy as np

from cnnjax.data import on_device
from cnnjax.data.config import DataError, check_data_config, check_transform, max_image_pixels, output_shape
from cnnjax.data.layout import make_layout
from cnnjax.data.sources import eval_spec, load_source, train_spec


class CorruptImageWarning(UserWarning):
    """An image file could not be read or decoded and was left out."""


class SkippedImages:
    """The image files a run left out as unreadable: each is named once, the first time (a
    CorruptImageWarning), and counted every time; `summary` is the line for the end of the run.

    Pass one object to every pipeline of a run (training and each evaluation) so that a bad file is
    named once per run, not once per epoch or evaluation.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, path: str, why: str = "corrupt or unreadable") -> None:
        first = path not in self.counts
        self.counts[path] = self.counts.get(path, 0) + 1
        if first:
            warnings.warn(f"skipped image {path}: {why} ({len(self.counts)} so far; each is named "
                          "once and counted at the end)", CorruptImageWarning, stacklevel=4)

    def summary(self) -> str | None:
        """'skipped 2 unreadable image files (7 times in all): a.jpg, b.jpg', None if none."""
        if not self.counts:
            return None
        names = sorted(self.counts)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return (f"skipped {len(names)} unreadable image file(s) ({sum(self.counts.values())} "
                f"time(s) in all): {shown}")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What one split holds: its size, its classes, and the shape of the images the pipeline yields.

    image_shape is one example's (H, W, C) after the split's transform (the train transform for
    data.train_split, the eval transform otherwise), without the crop axis of 5/10-crop evaluation.
    """

    num_examples: int
    num_classes: int
    class_names: list[str] | None
    image_shape: tuple[int | None, ...]
    source: str = ""  # what is read: for a folder, 'folder:<the folder itself>' (<root>/<split> or <root>)


def dataset_info(data: ml_collections.ConfigDict, split: str) -> DatasetInfo:
    """Size, classes and yielded image shape of `split` (read as training does for data.train_split,
    as evaluation does for any other split)."""
    check_data_config(data)
    train = split == data.train_split
    source = _source(data, train_spec(data) if train else eval_spec(data, split))
    name = data.train_transform if train else data.eval_transform
    on_device.serves(source, data, name, train=train)  # data.pipeline='device' it cannot serve: now
    return DatasetInfo(source.num_examples, _num_classes(data, source), source.class_names,
                       output_shape(data, name, source.image_shape), source.name)


def train_batches(data: ml_collections.ConfigDict, *, global_batch_size: int, seed: int,
                  start_step: int = 0, process_index: int | None = None,
                  process_count: int | None = None, skipped: SkippedImages | None = None,
                  ) -> Iterator[dict[str, np.ndarray]]:
    """Endless training batches for this host, from step `start_step` on.

    Each item is {'image': uint8 (B, H, W, C), 'label': int32 (B,)} with B = global_batch_size //
    process_count: this host's part of global step s. Epochs are reshuffled from (seed, epoch);
    augmentation is keyed by (seed, epoch, example). start_step=k yields exactly what an uninterrupted
    run yields from step k on, without reading the first k batches (streamed TFDS datasets skip
    their first k * B records undecoded; see cnnjax.data.tfdata).
    """
    check_data_config(data)
    if start_step < 0:
        raise DataError(f"start_step must be >= 0, got {start_step}")
    layout = make_layout(global_batch_size, process_index, process_count)
    source = _source(data, train_spec(data))
    if on_device.serves(source, data, data.train_transform, train=True):
        return on_device.train_batches(source, data, layout, seed=int(seed), start_step=int(start_step))
    from cnnjax.data import tfdata

    skipped = _left_out(source, data, skipped)
    ds = tfdata.train_dataset(source, data, layout, seed=int(seed), start_step=int(start_step))
    return _iterate(ds, source, data, ("image", "label"), skipped)


def eval_batches(data: ml_collections.ConfigDict, *, global_batch_size: int,
                 split: str | None = None, crops: int = 1, process_index: int | None = None,
                 process_count: int | None = None, skipped: SkippedImages | None = None,
                 ) -> Iterator[dict[str, np.ndarray]]:
    """One pass over an evaluation split (default data.eval_split) for this host.

    Each item is {'image': uint8 (B, H, W, C), or (B, crops, H, W, C) for crops 5 and 10 (four corners
    and center, then their mirror images), 'label': int32 (B,), 'mask': bool (B,)}. The last batches
    are padded with mask False, so that summing over mask counts every example exactly once on all
    hosts together, whatever the batch size and host count; every host yields the same number of
    batches.
    """
    check_data_config(data)
    layout = make_layout(global_batch_size, process_index, process_count)
    source = _source(data, eval_spec(data, split))
    check_transform(data, data.eval_transform, train=False, crops=crops)
    if on_device.serves(source, data, data.eval_transform, train=False):
        return on_device.eval_batches(source, data, layout, crops)
    from cnnjax.data import tfdata

    skipped = _left_out(source, data, skipped)
    ds = tfdata.eval_dataset(source, data, layout, crops=crops)
    return _iterate(ds, source, data, ("image", "label", "mask"), skipped)


# ---------------------------------------------------------------------------------------------------

def device_train_batches(data: ml_collections.ConfigDict, *, global_batch_size: int, seed: int,
                         start_step: int, sharding, skipped: SkippedImages | None = None,
                         ) -> Iterator[dict]:
    """`train_batches` as global arrays on the devices of `sharding` (split along the batch axis).

    A source served without TensorFlow (cnnjax.data.on_device) stays on the devices and is gathered
    and augmented there each step; every other source is read on the host and copied ahead
    (cnnjax.data.device.prefetch_to_device).
    """
    check_data_config(data)
    source = _source(data, train_spec(data))
    if on_device.serves(source, data, data.train_transform, train=True):
        make_layout(global_batch_size)  # the same checks as the host path
        return on_device.device_train_batches(source, data, global_batch_size=global_batch_size,
                                              seed=int(seed), start_step=int(start_step),
                                              sharding=sharding)
    from cnnjax.data.device import prefetch_to_device

    return prefetch_to_device(train_batches(data, global_batch_size=global_batch_size, seed=seed,
                                            start_step=start_step, skipped=skipped), sharding)


# ---------------------------------------------------------------------------------------------------

def _source(data, spec):
    source = load_source(spec, data)
    _num_classes(data, source)
    return source


def _num_classes(data, source) -> int:
    if data.num_classes and source.num_classes > data.num_classes:
        raise DataError(f"{source.name} has labels up to {source.num_classes - 1}, more than "
                        f"data.num_classes={data.num_classes} allows")
    return int(data.num_classes or source.num_classes)


def _left_out(source, data, skipped: SkippedImages | None) -> SkippedImages:
    """`skipped` (a new one if None) with the entries the folder listing left out; DataError at the
    first with data.on_corrupt='error'."""
    skipped = SkippedImages() if skipped is None else skipped
    for path, why in getattr(source, "left_out", ()):
        if data.on_corrupt == "error":
            raise DataError(f"unreadable image {path}: {why} (data.on_corrupt='skip' would leave "
                            "it out)")
        skipped.add(path, why)
    return skipped


def _iterate(ds, source, data, keys: tuple[str, ...],
             skipped: SkippedImages) -> Iterator[dict[str, np.ndarray]]:
    """Host numpy batches with the pipeline's private fields checked for unreadable files (named
    once each in `skipped`, with why the decoder refused them)."""
    for batch in ds.as_numpy_iterator():
        if "_ok" in batch:
            for i in batch["_index"][batch["_expected"] & ~batch["_ok"]]:
                path = source.paths[int(i)]
                if path in skipped.counts:  # named already: only counted
                    skipped.add(path)
                    continue
                from cnnjax.data.tfdata import why_unreadable  # TensorFlow is loaded by now

                why = why_unreadable(path, max_image_pixels(data))
                if data.on_corrupt == "error":
                    raise DataError(f"corrupt or unreadable image {path}: {why} "
                                    "(data.on_corrupt='skip' would leave it out)")
                skipped.add(path, why)
            if "mask" not in keys and not batch["_ok"].any():
                raise DataError(f"every image of a training batch was unreadable, e.g. "
                                f"{source.paths[int(batch['_index'][0])]}")
        yield {k: batch[k] for k in keys}
