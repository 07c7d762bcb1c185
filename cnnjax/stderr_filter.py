"""Keeps the image decoders' C-level chatter off the console of the command-line tools.

libjpeg and libpng, inside TensorFlow's decoders, write messages such as "Corrupt JPEG data: premature
end of data segment" or "Improper call to JPEG library in state 201" straight to file descriptor 2,
from tf.data's threads, once per bad file and epoch; TF_CPP_MIN_LOG_LEVEL does not reach them. The
pipelines already name each unreadable file once (cnnjax.data.SkippedImages), so these lines say
nothing more.

`install` routes descriptor 2 through a small filter process: lines that match DECODER_CHATTER are
appended to a log file (when one is given) instead of the console; every other line is passed on at
once, unchanged. The filter is a separate process so that a crash of the main process (a C++ abort's
last message) is still drained and shown; it ignores SIGINT and SIGTERM (they are the main process's
to handle) and ends when the main process has closed its end of the pipe. CNNJAX_RAW_STDERR=1 turns
the filter off.
"""

from __future__ import annotations

import os
import subprocess
import sys

# Messages of libjpeg(-turbo) (jerror.h) and libpng, and TensorFlow's C++ start-up lines, that name no
# file and need no action.
DECODER_CHATTER = (
    r"^(Corrupt JPEG data|Premature end of JPEG file|Improper call to JPEG library"
    r"|Unsupported color conversion request|Invalid SOS parameters|Not a JPEG file"
    r"|Unsupported marker type|Bogus (marker length|Huffman table|DQT index|DHT index)"
    r"|Invalid JPEG file structure|JPEG datastream contains no image|Empty JPEG image"
    r"|Huffman table 0x|Quantization table 0x|Warning: unknown JFIF revision|Unsupported JPEG process"
    r"|Suspension not allowed here|Wrong JPEG library version|Backing store not supported"
    r"|libpng (warning|error)"
    r"|WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} [\d:. ]+\d+ port\.cc:\d+\] oneDNN custom operations)")

_FILTER = r"""
import os, re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
chatter, log_path, out_fd = re.compile(sys.argv[1]), sys.argv[2], int(sys.argv[3])
log = None
while True:
    raw = sys.stdin.buffer.readline()
    if not raw:
        break
    if chatter.match(raw.decode(errors="replace")):
        if log_path and log is None:
            try:
                log = open(log_path, "ab", buffering=0)
            except OSError:
                log_path = ""
        if log is not None:
            try:
                log.write(raw)
            except OSError:
                pass
        continue
    os.write(out_fd, raw)
"""


def install(log_path: str | os.PathLike | None = None) -> subprocess.Popen | None:
    """Routes this process's descriptor 2 through the filter (see the module docstring); returns the
    filter process, or None where the filter is turned off or cannot start."""
    if os.environ.get("CNNJAX_RAW_STDERR") == "1":
        return None
    try:
        original = os.dup(2)
        read_end, write_end = os.pipe()
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", _FILTER, DECODER_CHATTER, str(log_path or ""),
             str(original)],
            stdin=read_end, pass_fds=(original,), close_fds=True)
    except OSError:
        return None
    os.close(read_end)
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    os.close(original)
    return proc
