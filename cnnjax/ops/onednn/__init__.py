"""Loads the oneDNN convolution extension (`_conv.so`, built by `cnnjax.ops.onednn.build`).

`load()` registers its three XLA FFI targets with JAX for the CPU the first time it is called
and says whether they are usable. When the library is missing or cannot load (no compiler at
install time, another architecture, no oneDNN runtime), it logs ONE line, once per process,
and returns False; callers then use XLA's convolution.
"""

from __future__ import annotations

import ctypes
import functools
import logging

import jax

TARGETS = ("cnnjax_onednn_conv_fwd", "cnnjax_onednn_conv_bwd_data",
           "cnnjax_onednn_conv_bwd_weights")

_log = logging.getLogger(__name__)


@functools.cache
def failure() -> str | None:
    """None when the oneDNN targets are registered and usable; otherwise why not (logged once)."""
    reason = _load()
    if reason:
        _log.warning("cnnjax: oneDNN convolutions unavailable (%s); using XLA's convolution",
                     reason)
    return reason


def load() -> bool:
    """Register the oneDNN FFI targets (once); True when impl='onednn' can run."""
    return failure() is None


_BF16: list[bool] = []


@functools.cache
def supports_bfloat16() -> bool:
    """Whether oneDNN has bfloat16 convolution kernels for this CPU (AVX512-BF16 or AMX); where
    not, cnnjax says so once and keeps bfloat16 convolutions on XLA."""
    ok = load() and bool(_BF16 and _BF16[0])
    if load() and not ok:
        _log.warning("cnnjax: oneDNN has no bfloat16 convolutions on this CPU; bfloat16 "
                     "convolutions use XLA's")
    return ok


def _load() -> str | None:
    # Imported here so that `python -m cnnjax.ops.onednn.build` does not import itself twice.
    from cnnjax.ops.onednn.build import FAILED, LIBRARY, unavailable_reason

    if not LIBRARY.is_file():
        if FAILED.is_file():
            return f"not built: {FAILED.read_text().strip()}"
        return unavailable_reason() or ("not built; run `python -m cnnjax.ops.onednn.build`")
    try:
        lib = ctypes.cdll.LoadLibrary(str(LIBRARY))
    except OSError as e:
        return f"cannot load {LIBRARY.name}: {e}"
    message = ctypes.create_string_buffer(512)
    if lib.cnnjax_onednn_probe(message, ctypes.c_size_t(len(message))) != 0:
        return f"oneDNN has no CPU engine: {message.value.decode(errors='replace')}"
    _BF16.append(lib.cnnjax_onednn_supports_bf16() == 1)
    for name in TARGETS:
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)), platform="cpu")
    return None
