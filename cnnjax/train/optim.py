"""Optimizers and learning-rate schedules built from the config, all from Optax.

`make_optimizer(config.optimizer, config.schedule, steps_per_epoch)` returns a GradientTransformation that
accepts an extra `value=` argument on update (used only by reduce-on-plateau, which is fed the latest
evaluation error, as AlexNet divided its rate by 10 "when the validation error rate stopped improving",
Krizhevsky et al. 2012, Sec. 5).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from cnnjax.config import DECAY_MASKS, OPTIMIZERS, SCHEDULES, ConfigError


def _steps(value: float, unit: str, steps_per_epoch: int) -> int:
    """A duration given in the schedule's unit ('steps' or 'epochs'), in steps."""
    if unit == "steps":
        return int(value)
    if unit == "epochs":
        return round(value * steps_per_epoch)
    raise ConfigError(f"schedule.unit={unit!r} is not one of ('steps', 'epochs')")


def make_schedule(cfg: ml_collections.ConfigDict, steps_per_epoch: int,
                  total_steps: int) -> optax.Schedule:
    """The learning rate as a function of the step: warmup (linear from 0) followed by the named decay.

    - constant: base_lr throughout (also the base under 'plateau', which scales it on the fly).
    - piecewise: base_lr multiplied by decay_factor at each of `boundaries` (ResNet: x0.1 at 32k, 48k).
    - cosine: cosine decay from base_lr to 0 over the run.
    - exponential: base_lr * decay_factor ** (step / decay_every), staircase (GoogLeNet: x0.96 every 8
      epochs, Szegedy et al. 2015, Sec. 6).
    """
    unit = cfg.get("unit", "epochs")
    warmup = _steps(cfg.get("warmup", 0), unit, steps_per_epoch)
    name = cfg.name
    if name in ("constant", "plateau"):
        decay = optax.constant_schedule(cfg.base_lr)
    elif name == "piecewise":
        bounds = [_steps(b, unit, steps_per_epoch) - warmup for b in cfg.boundaries]
        decay = optax.piecewise_constant_schedule(
            cfg.base_lr, {b: cfg.decay_factor for b in bounds})
    elif name == "cosine":
        decay = optax.cosine_decay_schedule(cfg.base_lr, max(total_steps - warmup, 1))
    elif name == "exponential":
        decay = optax.exponential_decay(
            cfg.base_lr, transition_steps=max(_steps(cfg.decay_every, unit, steps_per_epoch), 1),
            decay_rate=cfg.decay_factor, staircase=True)
    else:
        raise ConfigError(f"schedule.name={name!r} is not one of {SCHEDULES}")
    if warmup <= 0:
        return decay
    ramp = optax.linear_schedule(0.0, cfg.base_lr, warmup)
    return optax.join_schedules([ramp, decay], [warmup])


def decay_mask(params) -> object:
    """True for the weights that take weight decay: kernels of convolutions and dense layers.

    Biases and normalisation scales/offsets are 1-D, so rank > 1 selects exactly the kernels.
    """
    return jax.tree.map(lambda p: jnp.ndim(p) > 1, params)


def make_optimizer(opt: ml_collections.ConfigDict, sched: ml_collections.ConfigDict,
                   steps_per_epoch: int, total_steps: int, eval_every_steps: int = 1,
                   ) -> tuple[optax.GradientTransformationExtraArgs, Callable]:
    """The optimizer of the config and its schedule: (transformation, schedule).

    Weight decay is added to the gradient (L2 regularisation, as in the SGD papers) for SGD and RMSProp,
    and decoupled for AdamW; `opt.decay_mask` chooses whether biases and norm parameters take it.
    """
    schedule = make_schedule(sched, steps_per_epoch, total_steps)
    if opt.decay_mask not in DECAY_MASKS:
        raise ConfigError(f"optimizer.decay_mask={opt.decay_mask!r} is not one of {DECAY_MASKS}")
    mask = decay_mask if opt.decay_mask == "no_bias_norm" else None
    wd = opt.weight_decay
    chain = []
    if opt.get("clip_grad_norm", 0.0) > 0:
        chain.append(optax.clip_by_global_norm(opt.clip_grad_norm))
    name = opt.name
    if name in ("sgd", "nesterov"):
        if wd:
            chain.append(optax.add_decayed_weights(wd, mask))
        chain.append(optax.sgd(schedule, momentum=opt.momentum or None,
                               nesterov=name == "nesterov" or opt.get("nesterov", False)))
    elif name == "rmsprop":
        if wd:
            chain.append(optax.add_decayed_weights(wd, mask))
        chain.append(optax.rmsprop(schedule, decay=opt.get("rms_decay", 0.9),
                                   eps=opt.get("eps", 1e-8), momentum=opt.momentum or None))
    elif name == "adamw":
        chain.append(optax.adamw(schedule, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.999),
                                 eps=opt.get("eps", 1e-8), weight_decay=wd, mask=mask))
    else:
        raise ConfigError(f"optimizer.name={name!r} is not one of {OPTIMIZERS}")
    if sched.name == "plateau":
        # One accumulation window per evaluation: the loop feeds the latest eval error every step.
        chain.append(optax.contrib.reduce_on_plateau(
            factor=sched.get("decay_factor", 0.1), patience=sched.get("patience", 1),
            accumulation_size=eval_every_steps, rtol=sched.get("rtol", 1e-4)))
    return optax.with_extra_args_support(optax.chain(*chain)), schedule


def plateau_scale(opt_state) -> jax.Array:
    """The current reduce-on-plateau multiplier (1.0 when the optimizer has none)."""
    for leaf in jax.tree.leaves(opt_state, is_leaf=lambda s: hasattr(s, "plateau_count")):
        if hasattr(leaf, "scale"):
            return jnp.asarray(leaf.scale)
    return jnp.asarray(1.0)
