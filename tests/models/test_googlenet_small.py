"""cnnjax.models googlenet_small (GoogLeNet's topology / 8 for 32x32 inputs, the googlenet_aux
ablation): shapes, parameters counted by hand from the block widths, auxiliary outputs only in
training, identical main-network initialisation with and without the heads, and the 0.3-weighted
auxiliary losses that cnnjax.train.steps adds."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers.ops_reference import network_rtol

from cnnjax import models
from cnnjax.train import steps
from cnnjax.train.state import TrainState

# Table 1 of Szegedy et al. 2015 with every width divided by 8, written out here rather than
# derived from cnnjax.models.googlenet: (name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, proj).
STAGES = (
    (("3a", 8, 12, 16, 2, 4, 4), ("3b", 16, 16, 24, 4, 12, 8)),
    (("4a", 24, 12, 26, 2, 6, 8), ("4b", 20, 14, 28, 3, 8, 8), ("4c", 16, 16, 32, 3, 8, 8),
     ("4d", 14, 18, 36, 4, 8, 8), ("4e", 32, 20, 40, 4, 16, 16)),
    (("5a", 32, 20, 40, 4, 16, 16), ("5b", 48, 24, 48, 6, 16, 16)),
)
STEM = (8, 8, 24)          # 3x3 conv 64/8, 1x1 conv 64/8, 3x3 conv 192/8
AUX_CONV, AUX_FC = 16, 128  # 128/8 and 1024/8


def conv(k: int, cin: int, cout: int) -> int:
    return k * k * cin * cout + cout


def inception(cin: int, n1: int, r3: int, n3: int, r5: int, n5: int, proj: int) -> int:
    return (conv(1, cin, n1) + conv(1, cin, r3) + conv(3, r3, n3) + conv(1, cin, r5)
            + conv(5, r5, n5) + conv(1, cin, proj))


def hand_count(channels: int, classes: int, aux: bool) -> tuple[int, int]:
    """(parameters of the whole network, of which in the two auxiliary heads)."""
    total = conv(3, channels, STEM[0]) + conv(1, STEM[0], STEM[1]) + conv(3, STEM[1], STEM[2])
    cin, aux_params = STEM[2], 0
    for stage in STAGES:
        for name, *w in stage:
            total += inception(cin, *w)
            cin = w[0] + w[2] + w[4] + w[5]
            if name in ("4a", "4d"):
                # 5x5/3 average pool of an 8x8 map -> 2x2; 1x1 conv; FC; FC to the classes
                aux_params += (conv(1, cin, AUX_CONV) + (2 * 2 * AUX_CONV + 1) * AUX_FC
                               + (AUX_FC + 1) * classes)
    total += (cin + 1) * classes
    return total + (aux_params if aux else 0), aux_params


def _out(model, shape, train):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)

    def run(x):
        variables = model.init({"params": jax.random.key(0)}, x)
        return model.apply(variables, x, train=train, rngs={"dropout": jax.random.key(1)})

    return jax.eval_shape(run, x)


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_and_aux_outputs_only_in_training(channels):
    model = models.build("googlenet_small", num_classes=10)
    shape = (2, 32, 32, channels)
    assert _out(model, shape, train=False).shape == (2, 10)
    logits, aux = _out(model, shape, train=True)
    assert logits.shape == (2, 10) and [a.shape for a in aux] == [(2, 10), (2, 10)]
    assert all(a.dtype == jnp.float32 for a in (logits, *aux))
    no_aux = models.build("googlenet_small", num_classes=10, aux_heads=False)
    bare = _out(no_aux, shape, train=True)
    assert bare.shape == (2, 10)  # a bare array: split_outputs gives no auxiliary logits


@pytest.mark.parametrize(("channels", "classes"), [(1, 10), (3, 100)])
def test_parameter_count_by_hand(param_count, channels, classes):
    with_aux, aux = hand_count(channels, classes, aux=True)
    shape = (1, 32, 32, channels)
    assert param_count(models.build("googlenet_small", num_classes=classes), shape) == with_aux
    without = param_count(models.build("googlenet_small", num_classes=classes, aux_heads=False),
                          shape)
    assert without == with_aux - aux and aux > 0
    if (channels, classes) == (1, 10):
        assert (with_aux, without) == (116_680, 95_348)  # the numbers the experiment quotes


def test_width_divisor_is_structure_not_a_knob():
    assert "width_divisor" not in models.knobs("googlenet_small")
    assert models.knobs("googlenet_small")["aux_heads"] is True
    assert models.knobs("googlenet_small")["norm"] == "none"
    with pytest.raises(ValueError, match="googlenet_small: aux_heads"):
        models.build("googlenet_small", aux_heads="no")


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_main_network_starts_identical_with_and_without_heads():
    """Flax derives each layer's key from its path, so the two sweep points of a seed begin from
    the same main network: they differ only by the heads' gradients. (An 'rbg' key: the same
    derivation, several times faster to compile than threefry's initialisers.)"""
    with_model = models.build("googlenet_small", num_classes=10)
    without_model = models.build("googlenet_small", num_classes=10, aux_heads=False)
    x = jnp.zeros((1, 32, 32, 1))

    @jax.jit
    def both(key):
        rngs = {"params": key, "dropout": key}
        return with_model.init(rngs, x)["params"], without_model.init(rngs, x)["params"]

    with_aux, without = both(jax.random.key(0, impl="rbg"))
    assert set(with_aux) - set(without) == {"aux1", "aux2"}
    for name in without:
        jax.tree.map(np.testing.assert_array_equal, with_aux[name], without[name])


@pytest.mark.slow  # > 5 s on the 2-core CPU
def test_train_step_adds_the_aux_losses_weighted(numpy_init):
    """steps.train_step's loss is CE(main) + w * (CE(aux1) + CE(aux2)) with the same dropout key,
    recomputed here with a numpy log-softmax; its top-1 is the main head's."""
    model = models.build("googlenet_small", num_classes=10)
    params = numpy_init(model, (1, 32, 32, 1))["params"]
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (4, 32, 32, 1), dtype=np.uint8),
             "label": np.array([0, 3, 7, 9], np.int32)}
    tx = optax.with_extra_args_support(optax.sgd(0.0))
    state = TrainState.create(apply_fn=model.apply, params=params, tx=tx)
    base_key = jax.random.key(5)
    mean, std = (0.5,), (0.25,)
    # aux_weight traced, so both weights share one compilation
    step = jax.jit(lambda b, w: steps.train_step(state, b, base_key, mean=mean, std=std,
                                                 aux_weight=w)[1])

    images = (batch["image"].astype(np.float32) / 255.0 - 0.5) / 0.25
    logits, (a1, a2) = jax.jit(lambda p, x: model.apply(
        {"params": p}, x, train=True, rngs={"dropout": jax.random.fold_in(base_key, 0)}))(
        params, images)

    def ce(z):
        z = np.asarray(z, np.float64)
        logp = z - z.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        return -logp[np.arange(4), batch["label"]].mean()

    main = ce(logits)
    # The step's forward is another compilation of the same float32 network, free to sum in
    # another order: logits within twice network_rtol (22 layers, sums of at most 216 terms:
    # 2 * 3.4e-3 / 2 each) of their scale; cross-entropy moves by at most twice the largest logit
    # change (its gradient, softmax - one-hot, has an L1 norm of at most 2).
    net = 2 * network_rtol(216, 22)
    scale = [float(np.abs(z).max()) for z in (logits, a1, a2)]
    for w in (0.3, 0.0):
        tol = 2 * net * (scale[0] + w * (scale[1] + scale[2]))
        assert abs(float(step(batch, w)["loss"]) - (main + w * (ce(a1) + ce(a2)))) <= tol, w
    m0 = step(batch, 0.0)
    top1 = (np.argmax(np.asarray(logits), 1) == batch["label"]).mean()
    assert float(m0["top1"]) == pytest.approx(top1)
    assert ce(a1) != pytest.approx(main)  # the heads are separate classifiers
