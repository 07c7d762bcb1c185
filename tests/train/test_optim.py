"""Schedules and optimizers against hand-computed values from the papers' recipes."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cnnjax.config import default_config
from cnnjax.train.optim import decay_mask, make_optimizer, make_schedule, plateau_scale


def _sched(**kw) -> ml_collections.ConfigDict:
    c = default_config().schedule
    c.update(kw)
    return c


# Tolerances: a schedule value is a float32 product of a few constants (the base rate, a power of
# the decay factor, a cosine), relative error at most about 9 u for values <= 1 (0.96's own
# rounding counts 5 times in 0.96**5; pow and cos a few ulp): 9 * 2**-24 = 5.4e-7, under the
# rtol/atol 1e-6 below, while a boundary one step off changes the value 10x and a wrong decay
# exponent by 4%.


def test_piecewise_resnet_cifar_divides_by_10_at_32k_and_48k():
    s = make_schedule(_sched(name="piecewise", unit="steps", base_lr=0.1,
                             boundaries=(32000.0, 48000.0)), steps_per_epoch=390, total_steps=64000)
    np.testing.assert_allclose([s(0), s(31999), s(32000), s(47999), s(48000), s(63999)],
                               [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6)


def test_exponential_googlenet_4_percent_every_8_epochs():
    s = make_schedule(_sched(name="exponential", base_lr=0.08, decay_factor=0.96, decay_every=8.0),
                      steps_per_epoch=100, total_steps=10_000)
    # staircase: constant within each 8-epoch block, x0.96 per block
    np.testing.assert_allclose([s(0), s(799), s(800), s(1600), s(4000)],
                               [0.08, 0.08, 0.08 * 0.96, 0.08 * 0.96**2, 0.08 * 0.96**5], rtol=1e-6)


def test_warmup_then_cosine():
    s = make_schedule(_sched(name="cosine", base_lr=1.0, warmup=1.0), steps_per_epoch=10,
                      total_steps=110)
    np.testing.assert_allclose([s(0), s(5), s(10), s(60), s(110)], [0.0, 0.5, 1.0, 0.5, 0.0],
                               atol=1e-6)


def test_piecewise_in_epochs_counts_warmup_in_the_boundaries():
    s = make_schedule(_sched(name="piecewise", base_lr=1.0, warmup=1.0, boundaries=(3.0,)),
                      steps_per_epoch=10, total_steps=100)
    assert float(s(29)) == pytest.approx(1.0) and float(s(30)) == pytest.approx(0.1)  # rel 1e-6


@pytest.mark.parametrize("field,value", [("name", "linear-ish"), ("unit", "fortnights")])
def test_bad_schedule_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        make_schedule(_sched(**{field: value}), 10, 100)


def test_decay_mask_selects_kernels_only():
    params = {"conv": {"kernel": jnp.ones((3, 3, 1, 4)), "bias": jnp.ones(4)},
              "bn": {"scale": jnp.ones(4), "bias": jnp.ones(4)}, "fc": {"kernel": jnp.ones((4, 2))}}
    mask = decay_mask(params)
    assert mask["conv"]["kernel"] and mask["fc"]["kernel"]
    assert not (mask["conv"]["bias"] or mask["bn"]["scale"] or mask["bn"]["bias"])


def _one_step(opt_name, weight_decay, decay_mask_name="no_bias_norm"):
    c = default_config()
    c.optimizer.name, c.optimizer.weight_decay, c.optimizer.momentum = opt_name, weight_decay, 0.0
    c.optimizer.decay_mask = decay_mask_name
    c.schedule.base_lr = 0.1
    tx, _ = make_optimizer(c.optimizer, c.schedule, 10, 100)
    params = {"w": jnp.full((2, 2), 2.0), "b": jnp.full((2,), 2.0)}
    grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(grads, tx.init(params), params, value=jnp.asarray(0.0))
    return updates


def test_sgd_weight_decay_is_l2_on_kernels_and_spares_biases():
    u = _one_step("sgd", 0.5)
    # Exact in float32 (0.5 * 2 = 1, times the learning rate) but for 0.1's own rounding, 1.5e-8
    # relative: under assert_allclose's default rtol 1e-7.
    np.testing.assert_allclose(u["w"], -0.1 * 0.5 * 2.0)  # -lr * wd * w
    np.testing.assert_allclose(u["b"], 0.0)
    u = _one_step("sgd", 0.5, "all")
    np.testing.assert_allclose(u["b"], -0.1 * 0.5 * 2.0)


def test_adamw_decay_is_decoupled():
    u = _one_step("adamw", 0.5)
    # Zero gradient: Adam's term is exactly 0 and the decay exact as above, but for 0.1's rounding.
    np.testing.assert_allclose(u["w"], -0.1 * 0.5 * 2.0, rtol=1e-6)  # zero grad: only the decay
    np.testing.assert_allclose(u["b"], 0.0)


def test_unknown_optimizer_lists_the_choices():
    with pytest.raises(ValueError, match="sgd"):
        _one_step("adagrad-ish", 0.0)


def test_plateau_divides_by_10_after_patience_evaluations_without_improvement():
    c = default_config()
    c.optimizer.momentum = 0.0
    c.schedule.update(name="plateau", base_lr=1.0, patience=2, decay_factor=0.1)
    tx, _ = make_optimizer(c.optimizer, c.schedule, 10, 100, eval_every_steps=3)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    grads = {"w": jnp.ones(3)}
    errors = [0.5, 0.4, 0.4, 0.4, 0.4]  # improves once, then flat for more than `patience` evals
    scales = []
    for err in errors:
        for _ in range(3):
            _, state = tx.update(grads, state, params, value=jnp.asarray(err))
        scales.append(float(plateau_scale(state)))
    assert scales[:3] == [1.0, 1.0, 1.0] and scales[-1] == pytest.approx(0.1)
