"""cnnjax.models: the architectures as flax.linen modules on `cnnjax.ops`, and their registry.

    model = build("resnet50", num_classes=1000, dtype="bfloat16")
    logits = model.apply(variables, x, train=False)             # x: (N, H, W, C), NHWC
    logits, aux = split_outputs(model.apply(..., train=True))   # aux: GoogLeNet's side heads

Collections: 'params', 'batch_stats' (batch norm); rng stream 'dropout'.
"""

from __future__ import annotations

from typing import Any

import jax

# Importing a family registers its models (registry.register_model in each file): a new family
# is its own file plus its name here.
from cnnjax.models import alexnet, allconv, googlenet, lenet, mlp, resnet, smallcnn, vgg  # noqa: F401
from cnnjax.models.layers import ModelError
from cnnjax.models.registry import build, knob_choices, knobs, list_models, natural_input


def split_outputs(out: Any) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    """(logits, auxiliary logits) from a model's output: a bare logits array gives no auxiliary
    outputs; GoogLeNet's training output (logits, (aux1, aux2)) gives both heads."""
    if isinstance(out, tuple):
        logits, aux = out
        return logits, tuple(aux)
    return out, ()


__all__ = [
    "ModelError",
    "build",
    "knob_choices",
    "knobs",
    "list_models",
    "natural_input",
    "split_outputs",
]
