"""Where examples come from: source strings, IDX files, image folders, synthetic images (no TensorFlow).

A source is resolved into one of three kinds of object the tf.data builders know how to read:
`ArraySource` (every image decoded in host memory: IDX files, small TFDS datasets), `FileSource`
(encoded JPEG/PNG files read by index: image folders) and `SyntheticSource` (images made from their
index). Large TFDS datasets become a `cnnjax.data.tfds_source.TfdsStreamSource`.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import functools
import gzip
import os
import pathlib
import stat
import struct

import ml_collections
import numpy as np

from cnnjax.data.arrays import ArraySource
from cnnjax.data.config import SOURCE_KINDS, DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
IDX_SPLITS = {"train": "train", "test": "t10k", "t10k": "t10k"}
LABELS_CSV = "labels.csv"


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """A parsed source string plus the split to read: what `load_source` needs, hashable."""

    kind: str           # idx | tfds | folder | synthetic
    location: str       # directory (idx, folder), dataset name (tfds), '' (synthetic)
    split: str
    data_dir: str = ""  # tfds only
    # folder only: without a <split> subfolder, read the whole folder (False: that is an error, so
    # that a missing evaluation split is never replaced by the training images unnoticed)
    whole_folder: bool = True


@dataclasses.dataclass(frozen=True)
class FileSource:
    """Encoded image files read by index: paths[i] holds an image of class labels[i]; `left_out` holds
    (path, why) for each entry named like an image that the listing found to be no readable file."""

    paths: tuple[str, ...]
    labels: np.ndarray
    num_classes: int
    class_names: list[str] | None
    name: str
    left_out: tuple[tuple[str, str], ...] = ()

    @property
    def num_examples(self) -> int:
        return len(self.paths)

    @property
    def image_shape(self) -> tuple[int | None, ...]:
        return (None, None, None)  # files differ in size


@dataclasses.dataclass(frozen=True)
class SyntheticSource:
    """Uniformly random uint8 images of `shape`; image i has label i % num_classes."""

    num_examples: int
    shape: tuple[int, int, int]
    num_classes: int
    name: str = "synthetic"
    class_names: list[str] | None = None

    @property
    def image_shape(self) -> tuple[int | None, ...]:
        return self.shape


# ---------------------------------------------------------------------------------------------------
# Source strings
# ---------------------------------------------------------------------------------------------------

def parse_source(source: str, split: str, data_dir: str = "", *, split_wins: bool = False
                 ) -> SourceSpec:
    """Parses 'idx:<dir>', 'tfds:<name>[:<split>]', 'folder:<dir>' or 'synthetic'.

    A split written into a tfds source string is used instead of `split`, unless `split_wins`
    (an explicit split argument) says otherwise.
    """
    kind, sep, rest = source.partition(":")
    if kind not in SOURCE_KINDS or (kind != "synthetic" and not rest) or (kind == "synthetic" and sep):
        raise DataError(f"data source {source!r} is not one of 'idx:<dir>', 'tfds:<name>[:<split>]', "
                        "'folder:<dir>' or 'synthetic'")
    if kind == "tfds":
        name, _, own_split = rest.partition(":")
        if own_split and not split_wins:
            split = own_split
        return SourceSpec("tfds", name, split, data_dir)
    return SourceSpec(kind, rest, split)


def train_spec(data: ml_collections.ConfigDict) -> SourceSpec:
    """The source and split that training reads: data.source with data.train_split."""
    return parse_source(data.source, data.train_split, data.data_dir)


def eval_spec(data: ml_collections.ConfigDict, split: str | None = None) -> SourceSpec:
    """The source and split that evaluation reads.

    data.eval_source if set (its own tfds split, if written, wins over data.eval_split), else the
    dataset of data.source read with data.eval_split; an explicit `split` wins over both. A folder
    of data.source must then hold a subfolder of that split, unless it is the training split: a
    missing one would otherwise mean the whole folder, the training images.
    """
    if data.eval_source:
        return parse_source(data.eval_source, split or data.eval_split, data.data_dir,
                            split_wins=split is not None)
    spec = parse_source(data.source, split or data.eval_split, data.data_dir, split_wins=True)
    return dataclasses.replace(spec, whole_folder=spec.split == data.train_split)


def load_source(spec: SourceSpec, data: ml_collections.ConfigDict):
    """Reads (or lists) the examples `spec` names; cached, so later calls cost nothing."""
    if spec.kind == "idx":
        return load_idx(_existing_dir(spec.location, "idx"), spec.split)
    if spec.kind == "folder":
        root = _existing_dir(spec.location, "folder")
        return list_folder(root, spec.split, os.stat(root).st_mtime_ns, spec.whole_folder)
    if spec.kind == "synthetic":
        if data.num_classes <= 0:
            raise DataError("the synthetic source needs data.num_classes > 0 for its labels")
        shape = tuple(int(s) for s in data.synthetic_shape)
        if len(shape) != 3 or min(shape) <= 0:
            raise DataError(f"data.synthetic_shape must be (H, W, C) > 0, got {shape}")
        return SyntheticSource(int(data.synthetic_examples), shape, int(data.num_classes))
    from cnnjax.data import tfds_source  # imports TensorFlow Datasets

    return tfds_source.load_tfds(spec.location, spec.split, spec.data_dir)


def count_examples(spec: SourceSpec, data: ml_collections.ConfigDict) -> int | None:
    """How many examples `spec` holds, read cheaply: IDX headers, a folder listing, the synthetic size.

    None for TFDS datasets (their size comes with the builder, which needs TensorFlow). Nothing is
    decoded, so a config can be checked against its dataset in milliseconds.
    """
    if spec.kind == "idx":
        root = _existing_dir(spec.location, "idx")
        if spec.split not in IDX_SPLITS:
            raise DataError(f"idx source: split must be 'train' or 'test', got {spec.split!r}")
        return read_idx_shape(_idx_file(root, IDX_SPLITS[spec.split], "labels-idx1-ubyte"))[0]
    if spec.kind == "folder":
        root = _existing_dir(spec.location, "folder")
        return list_folder(root, spec.split, os.stat(root).st_mtime_ns,
                           spec.whole_folder).num_examples
    if spec.kind == "synthetic":
        return int(data.synthetic_examples)
    return None


def check_splits(data: ml_collections.ConfigDict) -> tuple[int | None, list[str]]:
    """(the training split's size, or None where it is not cheap to read; one line per problem) for
    the training and evaluation splits, listed as `count_examples` does: run before anything is
    written, so that a missing split stops a run before its first step, not after it."""
    examples, problems = None, []
    try:
        examples = count_examples(train_spec(data), data)
    except ValueError as e:
        problems.append(f"config.data.source: {e}")
    try:
        count_examples(eval_spec(data), data)
    except ValueError as e:
        if not any(p.endswith(f": {e}") for p in problems):  # a missing source is said once
            problems.append(f"config.data.eval_split={data.eval_split!r}: {e}")
    return examples, problems


def _existing_dir(location: str, kind: str) -> str:
    path = pathlib.Path(location).expanduser()
    if not path.is_dir():
        what = _not_a_file(str(path)) if path.is_symlink() else None  # a loop, a link to nothing
        raise DataError(f"{kind} source: directory {location!r} " + (
            f"is {what}" if what and what.startswith("a symlink") else
            f"does not exist (resolved against {os.getcwd()})"))
    return str(path.resolve())


# ---------------------------------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)
# ---------------------------------------------------------------------------------------------------

def read_idx_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The dimensions an IDX file's header states, reading only the header."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[:3] != b"\0\0\x08" or head[3] == 0:
                raise DataError(f"{path} is not an IDX file of unsigned bytes (magic 0x0000 08 ndim)")
            raw = f.read(4 * head[3])
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) != 4 * head[3]:
        raise DataError(f"{path}: the IDX header is cut short")
    return struct.unpack(f">{head[3]}I", raw)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (gzip or plain) of unsigned bytes into an array of its stated shape.

    Format (LeCun et al., the MNIST page): two zero bytes, a type code (0x08 = uint8), the number of
    dimensions, then each dimension as a big-endian uint32, then the data in row-major order.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] == 0:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (magic 0x0000 08 ndim)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if len(raw) - header != int(np.prod(dims)):
        raise DataError(f"{path}: header promises {dims} = {int(np.prod(dims))} bytes, the file has "
                        f"{len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def _idx_file(root: str, prefix: str, kind: str) -> str:
    for name in (f"{prefix}-{kind}.gz", f"{prefix}-{kind}"):
        if os.path.isfile(os.path.join(root, name)):
            return os.path.join(root, name)
    raise DataError(f"idx source: {root} has no {prefix}-{kind}.gz (nor {prefix}-{kind})")


@functools.lru_cache(maxsize=8)
def load_idx(root: str, split: str) -> ArraySource:
    """The IDX pair of a split: 'train' reads train-*-ubyte(.gz), 'test' reads t10k-*-ubyte(.gz)."""
    if split not in IDX_SPLITS:
        raise DataError(f"idx source: split must be 'train' or 'test', got {split!r}")
    prefix = IDX_SPLITS[split]
    images = read_idx(_idx_file(root, prefix, "images-idx3-ubyte"))
    labels = read_idx(_idx_file(root, prefix, "labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"idx source {root} ({split}): images {images.shape} and labels "
                        f"{labels.shape} do not pair up as (N, H, W) and (N,)")
    return ArraySource(images[..., None], labels.astype(np.int32), int(labels.max()) + 1, None,
                       f"idx:{root}:{split}")


# ---------------------------------------------------------------------------------------------------
# Image folders
# ---------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def list_folder(root: str, split: str, mtime_ns: int = 0, whole_folder: bool = True) -> FileSource:
    """Lists an image folder: <root>/<split>/ if that subfolder exists, else <root>/ itself (with
    `whole_folder`; otherwise a missing subfolder is a DataError naming the ones there are).

    With a labels.csv (columns filename, class_index and optionally class_name; filenames relative
    to the folder) the CSV says everything; otherwise each subfolder is a class, in sorted order
    (the ImageNet layout), holding .jpg/.jpeg/.png files. Entries named like images that are no
    readable file (a symlink loop or to nothing, a directory, a permission error) are left out and
    listed in `left_out`. `mtime_ns` only keys the cache.
    """
    del mtime_ns
    folder = os.path.join(root, split) if split else root
    if not os.path.isdir(folder):
        if not whole_folder:
            there = ", ".join(repr(n) for n in _subfolders(root)) or "none"
            raise DataError(f"folder source {root} has no subfolder {split!r} for the evaluation "
                            f"split (its subfolders: {there}); add it, name another with "
                            f"data.eval_split, or set data.eval_split to the training split to "
                            "evaluate on the training images")
        folder = root
    if os.path.isfile(os.path.join(folder, LABELS_CSV)):
        return _list_csv(folder)
    classes = _subfolders(folder)
    if not classes:
        raise DataError(f"folder source {folder} has neither class subfolders nor a {LABELS_CSV}")
    paths, labels, left_out = [], [], []
    for label, name in enumerate(classes):
        files, bad = scan_images(os.path.join(folder, name))
        if not files:
            raise DataError(f"class folder {os.path.join(folder, name)} holds no image "
                            f"({', '.join(IMAGE_EXTENSIONS)})")
        paths += files
        labels += [label] * len(files)
        left_out += bad
    return FileSource(tuple(paths), np.asarray(labels, np.int32), len(classes), classes,
                      f"folder:{folder}", tuple(left_out))


def scan_images(folder: str, extensions: tuple[str, ...] = IMAGE_EXTENSIONS, *,
                recursive: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """(the image files of `folder`, sorted; (path, why) for each entry named like an image that is no
    readable file). `recursive` also lists subfolders, without following symlinked ones (a link back
    to a parent would never end). DataError if `folder` itself cannot be listed."""
    files, left_out, pending = [], [], [folder]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as it:
                entries = list(it)
        except OSError as e:
            if current == folder:
                raise DataError(f"cannot list the image folder {folder}: {e.strerror}") from None
            left_out.append((current, f"cannot list this folder ({e.strerror})"))
            continue
        for entry in entries:
            if recursive and entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                pending.append(entry.path)
            elif entry.name.lower().endswith(extensions):
                # A plain file is known from the directory listing itself (no system call per file,
                # which counts on a million-file folder); only the rest are looked at closely.
                plain = entry.is_file(follow_symlinks=False)
                why = None if plain else _not_a_file(entry.path)
                if why:
                    left_out.append((entry.path, why))
                else:
                    files.append(entry.path)
    return sorted(files), sorted(left_out)


def _not_a_file(path: str) -> str | None:
    """Why `path` cannot be read as a file (None if it can): its stat, following symlinks, says."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symlink loop"
        if e.errno == errno.ENOENT and os.path.islink(path):
            return "a symlink to nothing"
        return f"cannot be read ({e.strerror})"
    return None if stat.S_ISREG(mode) else "not a regular file (a directory?)"


def _subfolders(folder: str) -> list[str]:
    """The visible subfolders of `folder`, sorted; an entry whose stat fails (a symlink loop) is none."""
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError as e:
        raise DataError(f"cannot list the image folder {folder}: {e.strerror}") from None
    return sorted(e.name for e in entries if not e.name.startswith(".") and _is_dir(e))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop: no class folder
        return False


def _list_csv(folder: str) -> FileSource:
    csv_path = os.path.join(folder, LABELS_CSV)
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"filename", "class_index"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{csv_path} needs the columns filename,class_index[,class_name]; it "
                            f"has {reader.fieldnames}")
        rows = list(reader)
    if not rows:
        raise DataError(f"{csv_path} lists no images")
    paths, labels, names = [], [], {}
    for line, row in enumerate(rows, start=2):
        try:
            label = int(row["class_index"])
        except ValueError:
            label = -1
        if label < 0:
            raise DataError(f"{csv_path}:{line}: class_index must be an integer >= 0, got "
                            f"{row['class_index']!r}")
        paths.append(os.path.join(folder, row["filename"]))
        labels.append(label)
        if row.get("class_name"):
            names[label] = row["class_name"]
    absent = [p for p in paths if not os.path.isfile(p)]
    if absent:
        raise DataError(f"{csv_path} lists {len(absent)} file(s) that do not exist, the first is "
                        f"{absent[0]}")
    num_classes = max(labels) + 1
    class_names = [names[i] for i in range(num_classes)] if len(names) == num_classes else None
    return FileSource(tuple(paths), np.asarray(labels, np.int32), num_classes, class_names,
                      f"folder:{folder}")
