"""Every bad input raises a one-line ValueError that names the argument (and works under jit)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from cnnjax import ops

X = jnp.zeros((2, 8, 8, 4))
W = jnp.zeros((3, 3, 4, 6))


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(x=jnp.zeros((8, 8, 4))), r"x must have rank 4 .*\(8, 8, 4\)"),
    (dict(kernel=jnp.zeros((3, 4, 6))), r"kernel must have rank 4 .*\(3, 4, 6\)"),
    (dict(kernel=jnp.zeros((3, 3, 3, 6))), r"x has 4 channels but kernel\.shape\[-2\] \* groups"),
    (dict(kernel=jnp.zeros((3, 3, 2, 6)), groups=3), r"x has 4 channels"),
    (dict(kernel=jnp.zeros((3, 3, 1, 6)), groups=4), r"groups=4 must divide the kernel's output"),
    (dict(x=jnp.zeros((2, 8, 8, 6)), kernel=jnp.zeros((3, 3, 2, 6)), groups=3), None),
    (dict(groups=0), r"groups must be a positive int"),
    (dict(stride=0), r"stride must be >= 1"),
    (dict(stride=(1, -2)), r"stride must be >= 1"),
    (dict(stride=(1, 2, 3)), r"stride must be an int or a sequence of 2"),
    (dict(dilation=0), r"dilation must be >= 1"),
    (dict(padding="REFLECT"), r"padding must be one of \('VALID', 'SAME', 'FULL'\)"),
    (dict(padding=-1), r"padding must be non-negative"),
    (dict(padding=((1, 1),)), r"padding must hold 2 \(lo, hi\) pairs"),
    (dict(kernel=jnp.zeros((9, 3, 4, 6))), r"kernel extent 9 .* exceeds the padded input 8\+0\+0"),
    (dict(dilation=4), r"kernel extent 9 \(size 3, dilation 4\) exceeds"),
    (dict(impl="cudnn"), r"impl must be one of \('xla', 'explicit', 'onednn', 'auto'\)"),
    (dict(bias=jnp.zeros((4,))), r"bias must have shape \(6,\).*got \(4,\)"),
    (dict(bias=jnp.zeros((1, 6))), r"bias must have shape \(6,\)"),
])
@pytest.mark.parametrize("op", [ops.conv2d, ops.convolve2d])
def test_conv2d_rejects(op, kwargs, match):
    args = dict(x=X, kernel=W, bias=None) | kwargs
    if match is None:  # a valid grouped call: the positive control for the cases around it
        assert op(**args).shape == (2, 6, 6, 6)
        return
    with pytest.raises(ValueError, match=match) as info:
        op(**args)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(op.__name__ + ":")


def test_validation_runs_on_static_shapes_under_jit():
    with pytest.raises(ValueError, match="x has 3 channels"):
        jax.jit(lambda x: ops.conv2d(x, W, impl="explicit"))(jnp.zeros((1, 5, 5, 3)))


def test_conv1d_rejects_2d_layouts():
    with pytest.raises(ValueError, match=r"conv1d: x must have rank 3 \(N, L, Cin\)"):
        ops.conv1d(X, jnp.zeros((3, 4, 2)))
    with pytest.raises(ValueError, match=r"conv1d: kernel must have rank 3"):
        ops.conv1d(jnp.zeros((2, 8, 4)), W)
    with pytest.raises(ValueError, match=r"convolve1d: padding"):
        ops.convolve1d(jnp.zeros((2, 8, 4)), jnp.zeros((3, 4, 2)), padding="CIRCULAR")


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(y=jnp.zeros((2, 6, 6, 4))), r"y has 4 channels but kernel\.shape\[-1\] = 6"),
    (dict(y=jnp.zeros((6, 6, 6))), r"y must have rank 4"),
    (dict(output_padding=1), r"output_padding must be < stride"),
    (dict(output_padding=-1), r"output_padding must be >= 0"),
    (dict(stride=2, output_padding=(1, 2)), r"output_padding must be < stride"),
    (dict(padding=5), r"conv input size -2 < 1 .*raise output_padding"),
    (dict(impl="fft"), r"impl must be one of"),
    (dict(groups=4), r"groups=4 must divide"),
])
def test_conv_transpose2d_rejects(kwargs, match):
    args = dict(y=jnp.zeros((2, 6, 6, 6)), kernel=W) | kwargs
    with pytest.raises(ValueError, match=match):
        ops.conv_transpose2d(**args)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(x=jnp.zeros((8, 8, 3))), r"max_pool: x must have rank 4"),
    (dict(window=0), r"window must be >= 1"),
    (dict(window=(2, 2, 2)), r"window must be an int or a sequence of 2"),
    (dict(stride=0), r"stride must be >= 1"),
    (dict(padding="FULL", window=1), r"padding \(0, 0\)"),
    (dict(padding=2), r"padding \(2, 2\) must be smaller than the window 2"),
    (dict(window=9), r"window 9 exceeds the padded input 8\+0\+0"),
    (dict(padding="circular"), r"padding must be one of"),
])
def test_pooling_rejects(kwargs, match):
    args = dict(x=jnp.zeros((1, 8, 8, 3)), window=2) | kwargs
    if match == r"padding \(0, 0\)":  # FULL with a 1-wide window pads nothing: valid
        assert ops.max_pool(**args).shape == (1, 8, 8, 3)
        return
    with pytest.raises(ValueError, match=match):
        ops.max_pool(**args)
    with pytest.raises(ValueError, match=match.replace("max_pool", "avg_pool")):
        ops.avg_pool(**args)


def test_global_pool_and_lrn_reject():
    with pytest.raises(ValueError, match=r"global_avg_pool: x must have rank 4"):
        ops.global_avg_pool(jnp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"local_response_norm: x must have rank 4"):
        ops.local_response_norm(jnp.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"size must be a positive int"):
        ops.local_response_norm(jnp.zeros((1, 2, 2, 3)), size=0)
