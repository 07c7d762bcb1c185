"""bfloat16 training on the CPU as benchmarks/train_step.py --dtype bfloat16 runs it (conv_impl
'auto'): every oneDNN convolution (forward and both gradients) takes and gives bfloat16, while the
parameters, the optimizer state, the batch-norm statistics and the loss stay float32. Lowered for the
CPU only, not compiled."""

import functools
import re

import jax
import jax.numpy as jnp
import optax
import pytest

from cnnjax import models
from cnnjax.ops import onednn
from cnnjax.train.state import TrainState
from cnnjax.train.steps import train_step

RESNET20_CONVS = 19  # 1 stem + 9 blocks x 2; option-A shortcuts have no convolution


@pytest.fixture(scope="module")
def traced():
    model = models.build("resnet20", num_classes=10, dtype="bfloat16", conv_impl="auto")

    def init():
        v = model.init({"params": jax.random.key(0)}, jnp.zeros((1, 32, 32, 3)), train=False)
        return TrainState.create(apply_fn=model.apply, params=v["params"],
                                 tx=optax.sgd(0.1, 0.9), batch_stats=v["batch_stats"])

    state = jax.eval_shape(init)
    batch = {"image": jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.uint8),
             "label": jax.ShapeDtypeStruct((2,), jnp.int32)}
    key = jax.eval_shape(lambda: jax.random.key(0))
    step = jax.jit(functools.partial(train_step, mean=(0.5,) * 3, std=(0.25,) * 3,
                                     compute_dtype="bfloat16"))
    return step, (state, batch, key)


def test_state_and_loss_stay_float32(traced):
    step, args = traced
    new_state, metrics = jax.eval_shape(step, *args)
    for part in (new_state.params, new_state.opt_state, new_state.batch_stats):
        assert {x.dtype for x in jax.tree.leaves(part)} == {jnp.dtype(jnp.float32)}
    assert metrics["loss"].dtype == jnp.float32


def test_every_onednn_convolution_is_bfloat16(traced):
    if not onednn.supports_bfloat16():
        pytest.skip("oneDNN has no bfloat16 convolutions here (not built, or no AVX512-BF16/AMX)")
    step, args = traced
    text = step.trace(*args).lower(lowering_platforms=("cpu",)).as_text()
    calls = [ln for ln in text.splitlines() if "custom_call @cnnjax_onednn_conv" in ln]
    # forward, input gradient and kernel gradient; the stem's input needs no gradient
    assert len(calls) == 3 * RESNET20_CONVS - 1
    assert "stablehlo.convolution" not in text
    for line in calls:
        types = re.findall(r"tensor<[0-9x]+x(\w+)>", line.rsplit(" : ", 1)[1])
        assert types and set(types) == {"bf16"}, line[-300:]
