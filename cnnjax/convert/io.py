"""Reading and writing state dicts (name -> numpy array) as .pth/.pt, .safetensors and .npz files.

.pth/.pt go through torch (torch.load with weights_only=True, so a file cannot run code) and need it
installed. .safetensors is read and written here with numpy alone, following the format's
specification (https://github.com/huggingface/safetensors#format): an 8-byte little-endian header
length N, N bytes of JSON mapping each tensor name to {"dtype", "shape", "data_offsets": [begin,
end]} (offsets into the data that follows; an optional "__metadata__" entry of strings), then the
raw little-endian data. .npz is numpy's own archive, one array per name.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
import struct
import zipfile
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import numpy as np

from cnnjax import atomic
from cnnjax.errors import UserError

SUFFIXES = (".pth", ".pt", ".safetensors", ".npz")

# safetensors dtype codes. BF16 has no numpy dtype: it is read as its top 16 bits of a float32.
_SAFETENSORS_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"), "BF16": np.dtype("<u2"),
}
_SAFETENSORS_CODES = {dtype.newbyteorder("<"): code for code, dtype in _SAFETENSORS_DTYPES.items()
                      if code != "BF16"}
# Bound on the JSON header (the reference implementation's limit), so a corrupt length fails fast.
_MAX_HEADER = 100_000_000
# Checkpoint dicts that wrap a state dict under one of these keys are unwrapped.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")


class ConvertError(UserError):
    """A weights file, model name or state dict the converter cannot use (one line)."""


def check_suffix(path: pathlib.Path) -> str:
    """The lower-cased suffix of a weights file name; one-line ConvertError for any but SUFFIXES."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConvertError(f"unsupported weights file {str(path)!r}: expected a name ending in "
                           f"{', '.join(SUFFIXES)}")
    return suffix


def load_state_dict(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """The state dict stored in `path` (.pth/.pt, .safetensors or .npz) as name -> numpy array.

    Raises ConvertError for an unsupported suffix or a malformed file, FileNotFoundError for a
    missing one, and ConvertError for a .pth file when torch is not installed."""
    path = pathlib.Path(path)
    suffix = check_suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if suffix == ".safetensors":
        return read_safetensors(path)
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        # BadZipFile: a truncated file, whose zip directory (at the end) is gone
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise ConvertError(f"{path} is not a readable .npz archive ({e})") from None
    return _read_torch(path)


def save_state_dict(state: Mapping[str, Any], path: str | pathlib.Path) -> pathlib.Path:
    """Writes `state` (name -> array) to `path` in the format its suffix names, whole or not at
    all (write, then rename); returns the path."""
    path = pathlib.Path(path)
    suffix = check_suffix(path)
    arrays = {str(name): np.asarray(value) for name, value in state.items()}
    if suffix == ".safetensors":
        write = functools.partial(write_safetensors, arrays)
    elif suffix == ".npz":
        def write(f: BinaryIO) -> None:  # a file object, so numpy does not append '.npz' to the name
            np.savez(f, **arrays)
    else:
        torch = _import_torch(path)

        def write(f: BinaryIO) -> None:
            # np.array copies into a contiguous array and, unlike ascontiguousarray, keeps 0-d
            # arrays 0-d.
            torch.save({name: torch.from_numpy(np.array(a)) for name, a in arrays.items()}, f)
    return write_then_rename(path, write)


def write_then_rename(path: pathlib.Path, write: Callable[[BinaryIO], None]) -> pathlib.Path:
    """Calls write(f) on a temporary file beside `path` (its folder made if missing), then renames it
    over `path` (cnnjax.atomic): a reader, or a run killed half-way, never sees part of a weights
    file. On any error `path` is untouched."""
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_then_rename(path, write)


def _import_torch(path: pathlib.Path) -> Any:
    try:
        import torch
    except ImportError:
        raise ConvertError(f"{path}: .pth/.pt files need PyTorch (pip install torch); without it, "
                           f"convert the file to .safetensors or .npz") from None
    return torch


def _read_torch(path: pathlib.Path) -> dict[str, np.ndarray]:
    torch = _import_torch(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types (UnpicklingError, RuntimeError, EOFError)
        raise ConvertError(f"{path} could not be read by torch.load(weights_only=True): "
                           f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None

    def is_state(x: Any) -> bool:
        return isinstance(x, Mapping) and bool(x) and all(
            isinstance(v, torch.Tensor) for v in x.values())

    if not is_state(obj):
        inner = [obj[k] for k in _WRAPPER_KEYS if isinstance(obj, Mapping) and is_state(obj.get(k))]
        if not inner:
            raise ConvertError(f"{path} holds no state dict: expected a mapping of names to tensors, "
                               f"or one under {', '.join(repr(k) for k in _WRAPPER_KEYS)}")
        obj = inner[0]
    state = tensors_to_numpy(obj)
    # nn.DataParallel saves every name under 'module.'.
    if all(name.startswith("module.") for name in state):
        state = {name[len("module."):]: value for name, value in state.items()}
    return state


def tensors_to_numpy(tensors: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """torch tensors (a state dict) as numpy arrays on the host; bfloat16, which numpy lacks, is
    widened to float32 (exactly)."""
    import torch

    state = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()
        state[str(name)] = tensor.numpy()
    return state


def read_safetensors(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """The tensors of a .safetensors file as native-endian numpy arrays (BF16 widened to float32)."""
    path = pathlib.Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw_length = f.read(8)
        if len(raw_length) != 8:
            raise ConvertError(f"{path} is not a safetensors file: shorter than its 8-byte header length")
        (length,) = struct.unpack("<Q", raw_length)
        if length > min(_MAX_HEADER, size - 8):
            raise ConvertError(f"{path} is not a safetensors file: header length {length} exceeds "
                               f"the file ({size} bytes)")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConvertError(f"{path} is not a safetensors file: bad JSON header ({e})") from None
        if not isinstance(header, dict):
            raise ConvertError(f"{path} is not a safetensors file: the header is not a JSON object")
        header.pop("__metadata__", None)
        data_start = 8 + length
        state = {}
        for name, info in header.items():
            try:
                code, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
                dtype = _SAFETENSORS_DTYPES[code]
            except (KeyError, TypeError, ValueError):
                raise ConvertError(f"{path}: bad header entry for {name!r}: {info!r}") from None
            nbytes = math.prod(shape) * dtype.itemsize
            if end - begin != nbytes or begin < 0 or data_start + end > size:
                raise ConvertError(f"{path}: tensor {name!r} ({code} {list(shape)}) has data offsets "
                                   f"[{begin}, {end}] that do not fit its size or the file")
            f.seek(data_start + begin)
            buffer = bytearray(nbytes)
            f.readinto(buffer)
            array = np.frombuffer(buffer, dtype).reshape(shape)
            if code == "BF16":
                array = (array.astype(np.uint32) << 16).view(np.float32)
            state[name] = array.astype(array.dtype.newbyteorder("="), copy=False)
    return state


def write_safetensors(state: Mapping[str, np.ndarray], f: BinaryIO) -> None:
    """Writes name -> array in the .safetensors format to the binary file `f` (metadata
    {'format': 'pt'}, as torch's writer)."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    chunks, offset = [], 0
    for name, value in state.items():
        array = np.asarray(value)
        little = array.dtype.newbyteorder("<")
        if little not in _SAFETENSORS_CODES:
            raise ConvertError(f"cannot write {name!r} to safetensors: dtype {array.dtype} is not one "
                               f"of float16/32/64, (u)int8-64 or bool")
        data = np.ascontiguousarray(array, dtype=little).tobytes()
        header[name] = {"dtype": _SAFETENSORS_CODES[little], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the reference writer does
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    for data in chunks:
        f.write(data)
