"""The ReLU and the residual addition fused into batch norm (layers.conv_norm_act, ResNet blocks)
against the unfused path (LayerOptions.fuse_bn_relu=False: batch norm, then the addition, then
jax.nn.relu, as separate ops): the same variables, logits, batch statistics and gradients."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnnjax.models.resnet import BasicBlock, Bottleneck, ResNet


class UnfusedResNet(ResNet):
    """The same network with batch norm, the shortcut's addition and the ReLU as separate ops."""

    @property
    def options(self):
        return dataclasses.replace(super().options, fuse_bn_relu=False)


CASES = {  # name -> ResNet fields: every shortcut kind, both blocks, an activation not fused
    "resnet20": dict(stage_sizes=(3, 3, 3), stem="cifar", width=16, shortcut="identity_pad"),
    "plain": dict(stage_sizes=(1, 1), stem="cifar", width=8, shortcut="none"),
    "projection": dict(stage_sizes=(1, 1), stem="cifar", width=8, shortcut="projection"),
    "bottleneck": dict(stage_sizes=(1, 1), stem="cifar", width=4, block_cls=Bottleneck,
                       stride_in_3x3=False),
    "elu": dict(stage_sizes=(1, 1), stem="cifar", width=8, activation="elu"),
}


def step_outputs(model, variables, images, labels):
    """Train-mode logits, updated batch statistics and the loss's gradient w.r.t. the params."""
    def loss(params):
        logits, updates = model.apply({**variables, "params": params}, images, train=True,
                                      mutable=["batch_stats"])
        xent = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return xent, (logits, updates["batch_stats"])
    (_, (logits, stats)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
        variables["params"])
    eval_logits = jax.jit(lambda v: model.apply(v, images, train=False))(variables)
    return logits, stats, grads, eval_logits


@pytest.mark.parametrize("case", CASES)
def test_fused_equals_unfused(case):
    """Bit for bit in float32: fused or not, the step runs the same float32 operations in the same
    order (bn's x * k + shift, + shortcut, max(., 0); backward, the ReLU's select, then bn's sums
    and its a * g + b * x + c), so any difference is a defect, not rounding. BasicBlock is the
    default block; zero_init_residual is off so that the last BNs' scale is not 0."""
    fields = dict(num_classes=10, block_cls=BasicBlock) | CASES[case]
    fused, unfused = ResNet(**fields), UnfusedResNet(**fields)
    images = jax.random.normal(jax.random.key(1), (8, 16, 16, 3))
    labels = jnp.arange(8) % 10
    variables = jax.jit(fused.init)(jax.random.key(0), images)
    other = jax.jit(unfused.init)(jax.random.key(0), images)
    assert jax.tree.structure(variables) == jax.tree.structure(other)
    jax.tree.map(np.testing.assert_array_equal, variables, other)
    got, want = step_outputs(fused, variables, images, labels), step_outputs(
        unfused, variables, images, labels)
    for name, a, b in zip(("logits", "batch_stats", "grads", "eval logits"), got, want,
                          strict=True):
        assert jax.tree.structure(a) == jax.tree.structure(b), name
        jax.tree.map(lambda x, y, name=name: np.testing.assert_array_equal(x, y, err_msg=name),
                     a, b)


def test_bfloat16_fused_step_keeps_float32_statistics_and_parameters():
    """dtype='bfloat16' takes the fused path (relu(bn(x) + shortcut) in float32, rounded once,
    which differs from the unfused path's two roundings, so no equality here: the op's test bounds
    its error). Statistics, parameters and their gradients stay float32, and the step is finite."""
    fields = dict(num_classes=10, block_cls=BasicBlock, dtype="bfloat16") | CASES["resnet20"]
    model = ResNet(**fields)
    images = jax.random.normal(jax.random.key(1), (8, 16, 16, 3))
    variables = jax.jit(model.init)(jax.random.key(0), images)
    logits, stats, grads, eval_logits = step_outputs(model, variables, images, jnp.arange(8) % 10)
    assert logits.dtype == eval_logits.dtype == jnp.float32
    for tree in (stats, grads):
        for leaf in jax.tree.leaves(tree):
            assert leaf.dtype == jnp.float32 and np.isfinite(leaf).all()
    assert np.isfinite(logits).all() and np.isfinite(eval_logits).all()
