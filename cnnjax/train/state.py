"""The training state: parameters, batch-norm statistics, optimizer state and step, as one pytree."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from flax.training import train_state


class TrainState(train_state.TrainState):
    """Flax's TrainState plus batch-norm statistics and the value reduce-on-plateau is fed.

    `plateau_value` holds the latest evaluation error; optimizers without reduce-on-plateau ignore it.
    """

    batch_stats: Any = None
    plateau_value: jax.Array = struct.field(default_factory=lambda: jnp.asarray(1e9, jnp.float32))

    def variables(self, params=None) -> dict:
        """The Flax variable dict for apply, with `params` standing in for the state's own if given."""
        variables = {"params": self.params if params is None else params}
        if self.batch_stats:
            variables["batch_stats"] = self.batch_stats
        return variables


def checkpoint_items(state: TrainState) -> dict:
    """The arrays a checkpoint stores (the optimizer's functions and the apply_fn are code, not data)."""
    return {"step": state.step, "params": state.params, "batch_stats": state.batch_stats or {},
            "opt_state": state.opt_state, "plateau_value": state.plateau_value}


def from_checkpoint_items(state: TrainState, items: dict) -> TrainState:
    """`state` with the arrays restored from a checkpoint."""
    return state.replace(step=items["step"], params=items["params"],
                         batch_stats=items["batch_stats"] or None, opt_state=items["opt_state"],
                         plateau_value=items["plateau_value"])
