"""The ResNet-50 bfloat16 training step as a GPU would run it, checked on this CPU machine: JAX lowers
it for the 'cuda' platform without a GPU (no compilation). bfloat16 convolutions, float32 parameters,
statistics and loss, the non-CPU branch of ops.materialize, and no layout transposes beyond the one
of the classifier's kernel."""

import functools
import re

import jax
import jax.numpy as jnp
import optax
import pytest

from cnnjax import models
from cnnjax.train.state import TrainState
from cnnjax.train.steps import train_step

BATCH = 2
RESNET50_CONVS = 53  # 49 in the stages and stem + 4 projection shortcuts


@pytest.fixture(scope="module")
def traced():
    model = models.build("resnet50", num_classes=1000, dtype="bfloat16")

    def init():
        v = model.init({"params": jax.random.key(0)}, jnp.zeros((1, 224, 224, 3)), train=False)
        return TrainState.create(apply_fn=model.apply, params=v["params"],
                                 tx=optax.sgd(0.1, 0.9), batch_stats=v["batch_stats"])

    state = jax.eval_shape(init)
    batch = {"image": jax.ShapeDtypeStruct((BATCH, 224, 224, 3), jnp.uint8),
             "label": jax.ShapeDtypeStruct((BATCH,), jnp.int32)}
    key = jax.eval_shape(lambda: jax.random.key(0))
    step = jax.jit(functools.partial(train_step, mean=(0.5,) * 3, std=(0.25,) * 3,
                                     compute_dtype="bfloat16"))
    return step, (state, batch, key)


@pytest.fixture(scope="module")
def lowered(traced):
    step, args = traced
    trace = step.trace(*args)
    return {p: trace.lower(lowering_platforms=(p,)).as_text() for p in ("cuda", "cpu")}


def data_case_branches(text: str) -> list[int]:
    """The number of branches of every stablehlo.case op of an MLIR text module that computes data
    (the cases that only pick a branch index, i32 -> i32, are left out)."""
    lines, counts = text.splitlines(), []
    for i, line in enumerate(lines):
        if '"stablehlo.case"' not in line:
            continue
        indent = len(line) - len(line.lstrip())
        branches = 1
        for later in lines[i + 1:]:
            if len(later) - len(later.lstrip()) == indent:
                if later.strip().startswith("}, {"):
                    branches += 1
                elif later.strip().startswith("})"):
                    if not later.rstrip().endswith("(tensor<i32>) -> tensor<i32>"):
                        counts.append(branches)
                    break
    return counts


def test_every_convolution_is_bfloat16(lowered):
    convs = [line for line in lowered["cuda"].splitlines() if "stablehlo.convolution" in line]
    # forward, input gradient and kernel gradient; the stem's input needs no gradient
    assert len(convs) == 3 * RESNET50_CONVS - 1
    for line in convs:
        types = re.findall(r"tensor<[0-9x]+x(\w+)>", line.rsplit(" : ", 1)[1])
        assert types and set(types) == {"bf16"}, line[-300:]


def test_parameters_statistics_and_loss_stay_float32(traced):
    step, args = traced
    new_state, metrics = jax.eval_shape(step, *args)
    assert {x.dtype for x in jax.tree.leaves(new_state.params)} == {jnp.dtype(jnp.float32)}
    assert {x.dtype for x in jax.tree.leaves(new_state.batch_stats)} == {jnp.dtype(jnp.float32)}
    assert metrics["loss"].dtype == jnp.float32


def test_materialize_resolves_to_the_identity_on_cuda(lowered):
    # Lowered for one platform, platform_dependent keeps one branch: each conditional left is a
    # single-branch wrapper that XLA inlines; none chooses at run time.
    for text in lowered.values():
        branches = data_case_branches(text)
        assert len(branches) >= RESNET50_CONVS and set(branches) == {1}
        assert "stablehlo.if" not in text
    # The CPU branch divides each convolution input by one (ops/materialize.py); the CUDA one does not.
    extra = lowered["cpu"].count("stablehlo.divide") - lowered["cuda"].count("stablehlo.divide")
    assert extra >= RESNET50_CONVS


def test_two_platforms_at_once_would_leave_two_branch_conditionals(traced):
    """The check above can fail: lowered for cuda and cpu together, the conditionals remain."""
    step, args = traced
    text = step.trace(*args).lower(lowering_platforms=("cuda", "cpu")).as_text()
    assert max(data_case_branches(text)) == 2


def test_few_layout_transposes(lowered):
    transposes = [line for line in lowered["cuda"].splitlines() if "stablehlo.transpose" in line]
    assert len(transposes) <= 2, transposes  # today: the fc kernel's, for its gradient
