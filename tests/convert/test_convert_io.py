"""State-dict files: .safetensors (against the format's specification), .npz, .pth, and the errors;
load_weights end to end from a file."""

from __future__ import annotations

import json
import struct
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from helpers.convert import abstract, assert_trees_equal, random_variables

from cnnjax.convert import (
    io,
    load_state_dict,
    load_weights,
    save_state_dict,
    variables_to_torch,
)


def sample_state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "layer1.0.bn1.running_var": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "bn1.num_batches_tracked": np.array(12, np.int64),
        "half": rng.standard_normal((2, 5)).astype(np.float16),
        "double": rng.standard_normal(3),
        "ints": np.arange(-3, 3, dtype=np.int32).reshape(2, 3),
        "bytes": np.arange(7, dtype=np.uint8),
        "mask": np.array([True, False, True]),
        "empty": np.zeros((0, 3), np.float32),
    }


def assert_states_equal(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
        assert np.array_equal(a[key], b[key]), key


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_round_trip(tmp_path, suffix):
    state = sample_state()
    path = save_state_dict(state, tmp_path / f"weights{suffix}")
    assert path == tmp_path / f"weights{suffix}" and path.is_file()
    assert_states_equal(load_state_dict(path), state)


def test_safetensors_layout_follows_the_specification(tmp_path):
    """u64 little-endian header size, JSON header with dtype/shape/data_offsets, 8-byte aligned
    data start, offsets contiguous from 0, raw little-endian bytes."""
    state = sample_state()
    path = save_state_dict(state, tmp_path / "w.safetensors")
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8:8 + n])
    assert header.pop("__metadata__") == {"format": "pt"}
    codes = {"conv1.weight": "F32", "bn1.num_batches_tracked": "I64", "half": "F16",
             "double": "F64", "ints": "I32", "bytes": "U8", "mask": "BOOL", "empty": "F32"}
    end = 0
    for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"]):
        begin, stop = info["data_offsets"]
        assert begin == end
        end = stop
        array = state[name]
        assert info["shape"] == list(array.shape)
        assert raw[8 + n + begin:8 + n + stop] == array.astype(array.dtype.newbyteorder("<")).tobytes()
        if name in codes:
            assert info["dtype"] == codes[name]
    assert 8 + n + end == len(raw)


def test_reads_a_file_written_by_hand(tmp_path):
    """A file assembled from the specification, with BF16 (the top half of float32) and an
    unaligned, unpadded header."""
    f32 = np.array([[1.5, -2.0], [0.25, 8.0]], "<f4")
    bf16 = (np.array([1.0, -2.5, 0.15625], "<f4").view("<u4") >> 16).astype("<u2")
    header = {"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
              "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]},
              "__metadata__": {"source": "hand"}}
    text = json.dumps(header).encode()
    path = tmp_path / "hand.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + f32.tobytes() + bf16.tobytes())
    state = load_state_dict(path)
    assert sorted(state) == ["a", "b"]
    np.testing.assert_array_equal(state["a"], f32)
    assert state["b"].dtype == np.float32
    np.testing.assert_array_equal(state["b"], [1.0, -2.5, 0.15625])


def one_line(exc_type, fn, *args) -> str:
    with pytest.raises(exc_type) as info:
        fn(*args)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "w.h5"
    path.write_bytes(b"x")
    for message in (one_line(ValueError, load_state_dict, path),
                    one_line(ValueError, save_state_dict, {}, path)):
        assert "w.h5" in message and ".safetensors" in message and ".npz" in message


def test_missing_file(tmp_path):
    assert "nope.npz" in one_line(FileNotFoundError, load_state_dict, tmp_path / "nope.npz")


@pytest.mark.parametrize("content", [
    b"\x01\x02",                                                          # shorter than 8 bytes
    struct.pack("<Q", 10**6) + b"{}",                                     # header beyond the file
    struct.pack("<Q", 4) + b"{no}",                                       # not JSON
    struct.pack("<Q", 2) + b"[]",                                         # not an object
    struct.pack("<Q", 52) + b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',  # no data
    struct.pack("<Q", 44) + b'{"a":{"dtype":"Q9","shape":[],"data_offsets":[0,0]}}',  # bad dtype
])
def test_malformed_safetensors(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    assert "bad.safetensors" in one_line(ValueError, load_state_dict, path)


def test_malformed_npz(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip")
    assert "bad.npz" in one_line(ValueError, load_state_dict, path)


def test_unwritable_dtype(tmp_path):
    message = one_line(ValueError, save_state_dict, {"c": np.zeros(2, np.complex64)},
                       tmp_path / "c.safetensors")
    assert "'c'" in message and "complex64" in message


def test_pth_without_torch_says_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    path.write_bytes(b"whatever")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    for message in (one_line(ValueError, load_state_dict, path),
                    one_line(ValueError, save_state_dict, {}, path)):
        assert "torch" in message and ".safetensors" in message and ".npz" in message


@pytest.mark.torch
def test_pth_with_torch(tmp_path):
    torch = pytest.importorskip("torch")
    state = {k: v for k, v in sample_state().items() if k not in ("empty", "mask")}
    path = save_state_dict(state, tmp_path / "w.pth")
    assert_states_equal(load_state_dict(path), state)
    tensors = {k: torch.from_numpy(v) for k, v in state.items()}
    # Checkpoint dicts that wrap the state dict, and nn.DataParallel's 'module.' prefix.
    torch.save({"epoch": 3, "state_dict": tensors}, tmp_path / "wrapped.pt")
    assert_states_equal(load_state_dict(tmp_path / "wrapped.pt"), state)
    torch.save({f"module.{k}": v for k, v in tensors.items()}, tmp_path / "dp.pth")
    assert_states_equal(load_state_dict(tmp_path / "dp.pth"), state)
    torch.save({"w": torch.tensor([1.0, -2.5], dtype=torch.bfloat16)}, tmp_path / "bf16.pth")
    bf16 = load_state_dict(tmp_path / "bf16.pth")["w"]
    assert bf16.dtype == np.float32 and bf16.tolist() == [1.0, -2.5]
    torch.save([1, 2, 3], tmp_path / "list.pth")
    assert "no state dict" in one_line(ValueError, load_state_dict, tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    assert "junk.pth" in one_line(ValueError, load_state_dict, tmp_path / "junk.pth")


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_load_weights_from_a_file(tmp_path, suffix):
    """Export random lenet5 variables with 7 classes, load them back by name: the module has 7
    classes, the variables are the originals, and the module applies to 32x32x1 inputs."""
    variables = random_variables(abstract("lenet5", num_classes=7), seed=3)
    path = save_state_dict(variables_to_torch(variables, "lenet5"), tmp_path / f"lenet{suffix}")
    module, loaded = load_weights(path, "lenet5")
    assert module.num_classes == 7
    assert_trees_equal(loaded, variables)
    logits = module.apply(loaded, jnp.zeros((2, 32, 32, 1)), train=False)
    assert logits.shape == (2, 7)


def test_io_module_lists_its_suffixes():
    assert set(io.SUFFIXES) == {".pth", ".pt", ".safetensors", ".npz"}
