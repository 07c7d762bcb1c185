"""TensorFlow for tf.data only: imported here, kept off every GPU so it never takes accelerator memory.

`from cnnjax.data.tf_cpu import tf` is the one way cnnjax modules get TensorFlow; only the pipeline
builders import this module, and only when a pipeline is built.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter; launch.sh sets it too

import tensorflow as tf

try:
    tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # devices were initialised by an earlier import; TF then keeps its choice
    pass

__all__ = ["tf"]
