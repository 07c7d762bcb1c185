"""Compile the oneDNN convolution extension: `python -m cnnjax.ops.onednn.build [--force] [--quiet]`.

g++ compiles conv.cc against the XLA FFI headers (jax.ffi.include_dir(), found without importing
jax) and the oneDNN headers of the `onednn-devel-cpu-gomp` wheel into `_conv.so` next to it. A
stamp holding the hash of the source, the compiler command, the jaxlib version and the oneDNN
version lets a later run skip the build when nothing changed (launch.sh calls this on every start,
so it must be quick); another oneDNN under the same file names gets a new build.
Exits 0 when the library is up to date or was built; otherwise 1, with one line on stderr
(unless --quiet) saying why (no compiler, no oneDNN headers, another architecture). The reason
is also kept in `_conv.so.failed`, where cnnjax reads it to say, once, why it uses XLA's
convolution; a failed build is not retried until its inputs change.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "conv.cc"
LIBRARY = HERE / "_conv.so"
STAMP = HERE / "_conv.so.stamp"
FAILED = HERE / "_conv.so.failed"


def onednn_prefix() -> Path | None:
    """The prefix where pip put the onednn wheels' lib/ and include/ (the environment's data
    directory), or None when the headers are not there."""
    prefix = Path(sysconfig.get_paths()["data"])
    if (prefix / "include" / "oneapi" / "dnnl" / "dnnl.hpp").is_file():
        return prefix
    return None


def compile_command(prefix: Path, ffi_include: str, output: Path) -> list[str]:
    """The g++ line. RPATH (not RUNPATH) so that libdnnl, and any dependency of it that sits in the
    same directory, is found when Python dlopens the extension."""
    lib = prefix / "lib"
    return ["g++", "-O2", "-std=c++17", "-shared", "-fPIC",
            f"-I{ffi_include}", f"-I{prefix / 'include'}", str(SOURCE), "-o", str(output),
            f"-L{lib}", "-ldnnl", f"-Wl,--disable-new-dtags,-rpath,{lib}"]


def unavailable_reason() -> str | None:
    """Why the extension cannot be built here, or None."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"oneDNN convolutions are built for Linux x86-64 only, not {sys.platform} " \
               f"{platform.machine()}"
    if shutil.which("g++") is None:
        return "no C++ compiler (g++) on PATH"
    if onednn_prefix() is None:
        return "the oneDNN headers are not installed (pip install onednn-devel-cpu-gomp)"
    return None


def ffi_include_dir() -> str | None:
    """jax.ffi.include_dir() (jaxlib/include), located without importing jax."""
    spec = importlib.util.find_spec("jaxlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(next(iter(spec.submodule_search_locations))) / "include")


def inputs_digest(prefix: Path, ffi_include: str) -> str:
    """The hash of what `_conv.so` is built from: conv.cc, the g++ line, jaxlib's version and
    oneDNN's version header (a switch of oneDNN keeps the file names, not the ABI)."""
    version_header = prefix / "include" / "oneapi" / "dnnl" / "dnnl_version.h"
    return hashlib.sha256(
        SOURCE.read_bytes() + " ".join(compile_command(prefix, ffi_include, LIBRARY)).encode()
        + importlib.metadata.version("jaxlib").encode()
        + (version_header.read_bytes() if version_header.is_file() else b"")).hexdigest()


def build(force: bool = False) -> str | None:
    """Build `_conv.so` if its stamp is stale; return None on success, else the reason."""
    reason = unavailable_reason()
    include = ffi_include_dir()
    if reason is None and include is None:
        reason = "jaxlib is not installed"
    if reason:
        if not LIBRARY.is_file():  # a library built earlier (e.g. by another interpreter) is kept
            FAILED.write_text(reason)
        return reason
    prefix = onednn_prefix()
    tmp = LIBRARY.with_suffix(f".so.tmp{os.getpid()}")
    cmd = compile_command(prefix, include, tmp)
    digest = inputs_digest(prefix, include)
    if not force and STAMP.is_file() and STAMP.read_text() == digest:
        if LIBRARY.is_file():
            return None
        if FAILED.is_file():
            return FAILED.read_text()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = next((ln for ln in result.stderr.splitlines() if "error" in ln),
                     result.stderr.strip()[:200])
        reason = f"g++ failed: {first}"
        if LIBRARY.is_file():  # built from other inputs (another interpreter's jaxlib): keep it
            return reason
        STAMP.write_text(digest)
        FAILED.write_text(reason)
        return reason
    STAMP.write_text(digest)
    os.replace(tmp, LIBRARY)  # write, then rename: a running job never sees half a library
    FAILED.unlink(missing_ok=True)
    return None


def main() -> int:
    args = sys.argv[1:]
    reason = build(force="--force" in args)
    if reason:
        if "--quiet" not in args:
            print(f"cnnjax: oneDNN convolutions not built ({reason}); XLA's convolution is used",
                  file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
