"""Training: optimizers and schedules, the train and eval steps, the loop, checkpoints, workdirs and
metric writers. Importing the package loads neither JAX nor TensorFlow; its modules do what they need.

The config modules that lived here (config_io, defaults, validate) are in cnnjax.config; their old
paths still import (cnnjax.config.aliases)."""

from cnnjax.config import aliases

aliases.install()
