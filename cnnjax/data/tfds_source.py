"""TensorFlow Datasets sources: small datasets held in memory, large ones streamed from their records.

Imported only when a 'tfds:' source is used, since it imports TensorFlow Datasets (and TensorFlow).
Downloading follows TFDS's own rules (`download_and_prepare`); a dataset that needs a manual download
raises TFDS's instructions as one DataError, and a download that fails (no network) one line.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from cnnjax.data.arrays import ArraySource
from cnnjax.data.config import DataError
from cnnjax.data.tf_cpu import tf  # noqa: F401  (keeps TensorFlow off the GPUs before TFDS loads it)

IN_MEMORY_BYTES = 1 << 30  # splits up to this size, decoded, are held in memory and indexed


@dataclasses.dataclass(frozen=True, eq=False)
class TfdsStreamSource:
    """A TFDS split too large for memory, read as a stream of encoded records."""

    builder: Any
    split: str
    num_examples: int
    num_classes: int
    class_names: list[str] | None
    image_shape: tuple[int | None, ...]
    name: str

    def host_split(self, process_index: int, process_count: int) -> tuple[Any, int, int]:
        """(this host's sub-split, its size, the largest host's size): even, disjoint parts."""
        import tensorflow_datasets as tfds

        parts = tfds.even_splits(self.split, n=process_count)
        sizes = [self.builder.info.splits[part].num_examples for part in parts]
        return parts[process_index], sizes[process_index], max(sizes)


@functools.lru_cache(maxsize=4)
def load_tfds(name: str, split: str, data_dir: str = "") -> ArraySource | TfdsStreamSource:
    """Prepares `name` (downloading where TFDS can) and opens `split`: in memory when small."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except ValueError as e:  # DatasetNotFoundError and unknown configs are ValueErrors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"tfds source {name!r}: {first} (tfds.list_builders() lists the "
                        "names)") from None
    try:
        builder.download_and_prepare()
    except AssertionError as e:  # TFDS's way of saying "download these files by hand first"
        raise DataError(f"tfds source {name!r} needs a manual download. {e}") from None
    except ImportError as e:
        raise DataError(f"tfds source {name!r}: TFDS needs the Python module {e.name!r} to prepare "
                        "it; install it into the environment") from None
    except OSError as e:  # no network (requests' ConnectionError is one), a full disk
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise DataError(f"tfds source {name!r} is not prepared in {builder.data_dir} and preparing "
                        f"it failed ({type(e).__name__}: {first}); without network, prepare it "
                        "where there is one and point data.data_dir at a copy") from None
    info = builder.info
    try:
        split_info = info.splits[split]
    except (KeyError, ValueError, AssertionError):
        raise DataError(f"tfds source {name!r} has no split {split!r}; its splits are "
                        f"{sorted(info.splits.keys())}") from None
    features = info.features
    if "image" not in features or "label" not in features:
        raise DataError(f"tfds source {name!r} has features {sorted(features.keys())}; cnnjax reads "
                        "'image' and 'label'")
    label = features["label"]
    num_classes = int(getattr(label, "num_classes", 0) or 0)
    class_names = list(label.names) if getattr(label, "names", None) else None
    image_shape = tuple(features["image"].shape)
    source_name = f"tfds:{name}:{split}"
    fixed_shape = None not in image_shape
    if fixed_shape and split_info.num_examples * int(np.prod(image_shape)) <= IN_MEMORY_BYTES:
        arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        labels = arrays["label"].astype(np.int32)
        return ArraySource(arrays["image"], labels, num_classes or int(labels.max()) + 1,
                           class_names, source_name)
    return TfdsStreamSource(builder, split, int(split_info.num_examples), num_classes, class_names,
                            image_shape, source_name)
