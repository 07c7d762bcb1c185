"""The jitted training and evaluation steps: pure functions of (state, batch).

Images arrive as uint8 and are normalised on the device, so the host only moves bytes. Weight decay is
the optimizer's business (optax), not part of the loss.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from cnnjax.data.device import normalize
from cnnjax.models import split_outputs
from cnnjax.train.state import TrainState


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy with optional label smoothing (Szegedy et al. 2016, Sec. 7)."""
    targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
    if label_smoothing:
        targets = optax.smooth_labels(targets, label_smoothing)
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def topk_correct(scores: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """1.0 where the label is among the k highest scores (ties broken towards the lower index)."""
    k = min(k, scores.shape[-1])
    _, top = jax.lax.top_k(scores, k)
    return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def train_step(state: TrainState, batch: dict, base_key: jax.Array, *, mean: Sequence[float],
               std: Sequence[float], compute_dtype: str = "float32", label_smoothing: float = 0.0,
               aux_weight: float = 0.3) -> tuple[TrainState, dict]:
    """One SGD step on a global batch. Returns the new state and this step's metrics (scalars).

    The dropout key is folded from the step number, so a resumed run draws the same masks.
    Auxiliary classifier losses (GoogLeNet) are added with `aux_weight` (Szegedy et al. 2015, Sec. 5).
    """
    images = normalize(batch["image"], mean, std, jnp.dtype(compute_dtype))
    labels = batch["label"]
    key = jax.random.fold_in(base_key, state.step)

    def loss_fn(params):
        out, updates = state.apply_fn(state.variables(params), images, train=True,
                                      rngs={"dropout": key}, mutable=["batch_stats"])
        logits, aux = split_outputs(out)
        loss = cross_entropy(logits, labels, label_smoothing).mean()
        for aux_logits in aux:
            loss = loss + aux_weight * cross_entropy(aux_logits, labels, label_smoothing).mean()
        return loss, (logits, updates)

    (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params,
                                               value=state.plateau_value)
    new_params = optax.apply_updates(state.params, param_updates)
    new_state = state.replace(step=state.step + 1, params=new_params,
                              opt_state=opt_state,
                              batch_stats=updates.get("batch_stats", state.batch_stats) or None)
    metrics = {"loss": loss, "top1": topk_correct(logits, labels, 1).mean(),
               "top5": topk_correct(logits, labels, 5).mean(),
               "grad_norm": optax.tree.norm(grads),
               # 1.0 while loss and parameters are finite: the loop stops before saving a diverged state
               "finite": jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(new_params))}
    return new_state, metrics


def eval_step(state: TrainState, batch: dict, *, mean: Sequence[float], std: Sequence[float],
              compute_dtype: str = "float32") -> dict:
    """Sums of loss, top-1 and top-5 hits and the example count over the real (unmasked) examples.

    A batch with a crop axis (B, crops, H, W, C) is scored by averaging the softmax over the crops, as
    AlexNet's 10-crop test procedure did (Krizhevsky et al. 2012, Sec. 4.1).
    """
    images, labels, mask = batch["image"], batch["label"], batch["mask"].astype(jnp.float32)
    crops = images.shape[1] if images.ndim == 5 else 1
    flat = images.reshape((-1, *images.shape[-3:]))
    logits, _ = split_outputs(state.apply_fn(
        state.variables(), normalize(flat, mean, std, jnp.dtype(compute_dtype)), train=False))
    probs = jax.nn.softmax(logits.astype(jnp.float32)).reshape(labels.shape[0], crops, -1).mean(1)
    nll = -jnp.log(jnp.take_along_axis(probs, labels[:, None], axis=-1)[:, 0] + 1e-12)
    return {"loss": jnp.sum(nll * mask), "top1": jnp.sum(topk_correct(probs, labels, 1) * mask),
            "top5": jnp.sum(topk_correct(probs, labels, 5) * mask), "count": jnp.sum(mask),
            "predictions": jnp.argmax(probs, -1)}


def jit_steps(mean, std, compute_dtype, label_smoothing, aux_weight, state_sharding, data_sharding):
    """The jitted train and eval steps with their shardings: parameters replicated, batch split."""
    train = jax.jit(
        functools.partial(train_step, mean=tuple(mean), std=tuple(std), compute_dtype=compute_dtype,
                          label_smoothing=label_smoothing, aux_weight=aux_weight),
        in_shardings=(state_sharding, data_sharding, None),
        out_shardings=(state_sharding, None), donate_argnums=0)
    evaluate = jax.jit(
        functools.partial(eval_step, mean=tuple(mean), std=tuple(std), compute_dtype=compute_dtype),
        in_shardings=(state_sharding, data_sharding))
    return train, evaluate
