"""cnnjax.models googlenet_torchvision: torchvision's GoogLeNet beside the paper-true googlenet
(parameter names, the 3x3 "5x5" branch, batch norm eps 0.001, ceil-mode pooling, adaptive pooling
in the auxiliary heads, transform_input). Counts are in test_param_counts.py; logits against
PyTorch in tests/convert/test_convert_torch.py."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.ops_reference import assert_within_sum_bound

from cnnjax import models
from cnnjax.models import googlenet


def test_adaptive_avg_pool_is_torchs_bins():
    """Against a loop over torch's documented bins: start floor(i*n/k), end ceil((i+1)*n/k)."""
    x = np.random.default_rng(0).standard_normal((2, 14, 9, 3)).astype(np.float32)
    expected, abs_mean = np.zeros((2, 4, 4, 3)), np.zeros((2, 4, 4, 3))
    for i in range(4):
        for j in range(4):
            rows = slice(math.floor(i * 14 / 4), math.ceil((i + 1) * 14 / 4))
            cols = slice(math.floor(j * 9 / 4), math.ceil((j + 1) * 9 / 4))
            expected[:, i, j] = np.float64(x[:, rows, cols]).mean(axis=(1, 2))
            abs_mean[:, i, j] = np.abs(np.float64(x[:, rows, cols])).mean(axis=(1, 2))
    # float32 means of at most 4 x 3 values (and the division): bounded by the mean of |x|. A bin
    # one row or column off moves a mean by about |x| / 12, ~0.07.
    assert_within_sum_bound(googlenet.adaptive_avg_pool(jnp.asarray(x), 4), expected, abs_mean,
                            4 * 3 + 2)


@pytest.mark.parametrize("size, window, out", [(112, 3, 56), (9, 3, 4), (14, 2, 7), (7, 2, 4),
                                               (4, 3, 2)])
def test_ceil_mode_padding_gives_torchs_output_size(size, window, out):
    """torch: out = ceil((size - window) / 2) + 1 with ceil_mode=True and no padding."""
    before, after = googlenet.ceil_mode_padding(size, window, 2)
    assert before == 0 and (size + after - window) // 2 + 1 == out


def test_transform_input_undoes_imagenet_normalisation_into_minus_one_to_one():
    rgb = jnp.asarray([[0.0, 0.5, 1.0]])  # pixel values in [0, 1], one per channel
    mean, std = np.array(googlenet.IMAGENET_MEAN), np.array(googlenet.IMAGENET_STD)
    normalised = (rgb - mean) / std
    # float32: normalising and undoing it round about 6 times values of at most 2.5 in size:
    # 6 * 2.5 * 2**-24 = 9e-7, under 1e-6; ImageNet's mean and std left in would be off by ~0.1.
    np.testing.assert_allclose(googlenet.transform_input(normalised), rgb * 2 - 1, atol=1e-6)


def _variables(name: str, **knobs):
    model = models.build(name, num_classes=1000, **knobs)
    x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)


def test_torchvisions_layout_beside_the_paper_model():
    tv = _variables("googlenet_torchvision")
    paper = _variables("googlenet")
    branch3 = tv["params"]["inception4a"]["branch3_1"]
    assert branch3["conv"]["kernel"].shape == (3, 3, 16, 48)  # torchvision's 3x3 "5x5"
    assert set(branch3) == {"conv", "bn"} and "bias" not in branch3["conv"]
    assert set(tv["batch_stats"]["conv1"]["bn"]) == {"mean", "var"}
    assert tv["params"]["aux1"]["fc1"]["kernel"].shape == (2048, 1024)
    # the paper model keeps its names and its 5x5 (parameter names unchanged)
    assert paper["params"]["inception4a"]["branch3_1"]["conv"]["kernel"].shape == (5, 5, 16, 48)
    assert "batch_stats" not in paper
    assert jax.tree.structure(paper["params"]["inception4a"]).num_leaves == 12


def test_knobs_and_batch_norm_epsilon():
    knobs = models.knobs("googlenet_torchvision")
    assert knobs["transform_input"] is True and knobs["dropout_rate"] == 0.2
    assert not {"norm", "pool", "naive_inception"} & set(knobs)  # fixed by torchvision
    with pytest.raises(ValueError, match="googlenet_torchvision: transform_input"):
        models.build("googlenet_torchvision", transform_input="yes")
    # eps 0.001: a channel with variance 0.001 is scaled by 1/sqrt(0.002), not 1/sqrt(0.001 + 1e-5)
    block = googlenet.basic_conv2d(1, 1)
    x = jnp.ones((1, 1, 1, 1))
    v = block.init(jax.random.key(0), x)
    v = {"params": {"conv": {"kernel": jnp.ones((1, 1, 1, 1))}, "bn": {"scale": jnp.ones(1),
                                                                       "bias": jnp.zeros(1)}},
         "batch_stats": {"bn": {"mean": jnp.zeros(1), "var": jnp.full(1, 0.001)}}}
    # float32: var + eps, the rsqrt (2 ulp) and BN's products round about 5 times: 3e-7 relative,
    # under 1e-6, while eps = 1e-5 would be off by a factor of about 1.4.
    np.testing.assert_allclose(block.apply(v, x), 1 / np.sqrt(0.002), rtol=1e-6)


def test_aux_logits_only_in_training_and_output_shapes():
    model = models.build("googlenet_torchvision", num_classes=7)
    x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    v = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    assert jax.eval_shape(lambda v, x: model.apply(v, x), v, x).shape == (2, 7)
    (logits, (aux1, aux2)), _ = jax.eval_shape(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"],
                                 rngs={"dropout": jax.random.key(1)}), v, x)
    assert logits.shape == aux1.shape == aux2.shape == (2, 7)
