"""TensorFlow for tf.data only: imported here, kept off every GPU so it never takes accelerator memory.

`from cnnjax.data.tf_cpu import tf` is the one way cnnjax modules get TensorFlow; only the pipeline
builders import this module, and only when a pipeline is built.
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter; launch.sh sets it too


def _import_tensorflow():
    """(tensorflow, what its C++ start-up wrote to stderr).

    Some of TensorFlow's start-up lines (absl's 'All log messages before absl::InitializeLog()', the
    oneDNN notice) are written by C++ straight to file descriptor 2 and ignore TF_CPP_MIN_LOG_LEVEL;
    they are captured here and shown only if the import fails.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        return tensorflow, capture.read().decode(errors="replace")


tf, STARTUP_LOG = _import_tensorflow()

try:
    tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # devices were initialised by an earlier import; TF then keeps its choice
    pass

__all__ = ["STARTUP_LOG", "tf"]
