"""Layers shared by every model family: Conv and Dense on `cnnjax.ops`, pooling, LRN, batch norm,
the conv-norm-activation block, activations, initialisers and the one-line value checks
(cnnjax.models.base applies them to the knobs).

Parameters are always float32; `dtype` is the compute dtype ('float32' or 'bfloat16'): inputs and
parameters are cast to it before each layer, and the models cast their logits back to float32.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from cnnjax import ops
from cnnjax.errors import UserError
from cnnjax.ops.materialize import materialize

Initializer = Callable[..., jax.Array]


class ModelError(UserError):
    """An unknown model, a knob a model does not take, or a knob value it does not accept."""


DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _scaled_tanh(x: jax.Array) -> jax.Array:
    """LeCun et al. 1998, Appendix A: f(a) = A tanh(S a), A = 1.7159, S = 2/3."""
    return 1.7159 * jnp.tanh(x * (2.0 / 3.0))


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": jnp.tanh,
    "scaled_tanh": _scaled_tanh,
    "sigmoid": nn.sigmoid,
    "gelu": nn.gelu,
    "elu": nn.elu,
    "leaky_relu": nn.leaky_relu,
    "softplus": nn.softplus,
    "silu": nn.silu,
    "identity": lambda x: x,
}
NORMS = ("none", "lrn", "batch")
# Over which examples batch norm takes its training statistics: 'global' (the whole global batch, one
# all-reduce per statistic on several devices), 'device' (each device's examples: no communication
# in the forward pass, as Flax's ImageNet example), 'group:N' (groups of N consecutive examples of
# the global batch, as MLPerf's BN groups; N a multiple of the per-device batch spans devices).
BN_STATS = ("global", "device", "group:N")
POOLS = ("max", "avg", "strided_conv")

# Batch norm as in the papers' Caffe/torch implementations: running averages updated with
# 0.1 of each batch's statistics (flax's momentum is the weight of the old average).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# Initialisers. He et al. 2015 ("Delving deep", Sec. 2.2) normal with fan_out, as torchvision
# initialises ResNet and VGG convolutions (kaiming_normal_, mode='fan_out', untruncated).
he_normal_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
he_normal_fan_in = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
# torch's default for nn.Linear / nn.Conv2d weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
torch_default = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# Caffe's "xavier" filler: U(-sqrt(3/fan_in), sqrt(3/fan_in)) (BVLC GoogLeNet).
caffe_xavier = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


def lecun98_uniform(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """LeCun et al. 1998, Appendix C: weights uniform in (-2.4/F, 2.4/F), F the fan-in.

    The fan-in is the product of all but the last axis (HWI of an HWIO kernel, I of a Dense)."""
    bound = 2.4 / math.prod(shape[:-1])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def check_choice(owner: str, arg: str, value: Any, choices: Sequence[Any], why: str = "") -> None:
    """Raise a one-line ModelError unless `value` is one of `choices`, of the same type (True is
    not the 1 of groups=(1, 2), nor 1 the True of a boolean knob); `why` ends the message."""
    if not any(type(c) is type(value) and c == value for c in choices):
        valid = ", ".join(repr(c) for c in choices)
        raise ModelError(f"{owner}: {arg} must be one of {valid}; got {value!r}"
                         + (f" ({why})" if why else ""))


def check_rate(owner: str, arg: str, value: Any) -> None:
    """Raise a one-line ModelError unless `value` is a probability in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise ModelError(f"{owner}: {arg} must be a number in [0, 1); got {value!r}")


def check_positive_int(owner: str, arg: str, value: Any) -> None:
    """Raise a one-line ModelError unless `value` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(f"{owner}: {arg} must be a positive int; got {value!r}")


def bn_group_size(bn_stats: str, batch: int) -> int:
    """Examples per batch-norm group for `bn_stats` at global batch `batch` (batch = one group).

    'device' divides the batch among all devices of the run (jax.device_count()). Raises a one-line
    ModelError for an unknown mode or a group size that does not divide the batch.
    """
    if bn_stats == "global":
        return batch
    if bn_stats == "device":
        size, what = batch // jax.device_count(), f"the {jax.device_count()} devices"
    else:
        size, what = _group_arg(bn_stats), f"groups of bn_stats={bn_stats!r}"
    if size < 1 or batch % size:
        raise ModelError(f"batch norm: the batch of {batch} examples does not split evenly into {what}")
    return size


def _group_arg(bn_stats: str) -> int:
    kind, _, n = str(bn_stats).partition(":")
    if kind != "group" or not n.isdigit() or int(n) < 1:
        raise ModelError(f"bn_stats must be 'global', 'device' or 'group:N' with N >= 1; got "
                         f"{bn_stats!r}")
    return int(n)


def check_bn_stats(owner: str, bn_stats: Any) -> None:
    """Raise a one-line ModelError unless `bn_stats` is one of BN_STATS ('group:N' with N >= 1)."""
    if bn_stats not in ("global", "device"):
        try:
            _group_arg(bn_stats)
        except ModelError as e:
            raise ModelError(f"{owner}: {e}") from None


@dataclasses.dataclass(frozen=True)
class LayerOptions:
    """How every layer of a model computes: activation, normalisation, conv implementation, dtype.

    A model (cnnjax.models.base, which checks the values) passes one of these down to its blocks
    instead of repeating five fields.
    """

    activation: str = "relu"
    norm: str = "none"
    conv_impl: str = ops.DEFAULT_IMPL
    dtype: str = "float32"
    bn_stats: str = "global"

    @property
    def act(self) -> Callable[[jax.Array], jax.Array]:
        return ACTIVATIONS[self.activation]

    @property
    def compute_dtype(self) -> Any:
        return DTYPES[self.dtype]

    @property
    def conv_bias(self) -> bool:
        """Convolutions drop their bias before batch norm, whose shift makes it redundant."""
        return self.norm != "batch"


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class Conv(nn.Module):
    """2-D convolution layer on `ops.conv2d`: (N, H, W, Cin) -> (N, Ho, Wo, features).

    Owns 'kernel' (kh, kw, Cin/groups, features) HWIO and, with use_bias, 'bias' (features,).
    `padding` is anything `ops.resolve_padding` accepts ('VALID', 'SAME', an int as in torch, or
    explicit pairs); `impl` picks the convolution (ops.IMPLS; default ops.DEFAULT_IMPL, where
    ops.conv2d itself defaults to 'xla').
    """

    features: int
    kernel_size: int | Sequence[int]
    stride: int | Sequence[int] = 1
    padding: ops.Padding = 0
    dilation: int | Sequence[int] = 1
    groups: int = 1
    use_bias: bool = True
    impl: str = ops.DEFAULT_IMPL
    dtype: str = "float32"
    kernel_init: Initializer = he_normal_fan_out
    bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = _pair(self.kernel_size)
        cin = x.shape[-1]
        if cin % self.groups or self.features % self.groups:
            raise ModelError(f"Conv {self.name}: input channels {cin} and features "
                             f"{self.features} must both be divisible by groups={self.groups}")
        kernel = self.param("kernel", self.kernel_init,
                            (kh, kw, cin // self.groups, self.features), jnp.float32)
        bias = (self.param("bias", self.bias_init, (self.features,), jnp.float32)
                if self.use_bias else None)
        dtype = DTYPES[self.dtype]
        # The input is written to memory once rather than recomputed by each consumer on the CPU
        # (cnnjax/ops/materialize.py: 28% of a resnet20 training step).
        return ops.conv2d(materialize(x.astype(dtype)), kernel.astype(dtype),
                          None if bias is None else bias.astype(dtype),
                          stride=self.stride, padding=self.padding, dilation=self.dilation,
                          groups=self.groups, impl=self.impl)


class Dense(nn.Module):
    """Fully connected layer: (..., Din) -> (..., features); 'kernel' (Din, features), 'bias'."""

    features: int
    use_bias: bool = True
    dtype: str = "float32"
    kernel_init: Initializer = torch_default
    bias_init: Initializer = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        dtype = DTYPES[self.dtype]
        y = jnp.dot(x.astype(dtype), kernel.astype(dtype))
        if self.use_bias:
            y = ops.add_bias(y, self.param("bias", self.bias_init, (self.features,), jnp.float32))
        return y


class LRN(nn.Module):
    """Local response normalisation across channels (`ops.local_response_norm`; no parameters).

    Defaults are AlexNet's (Krizhevsky et al. 2012, Sec. 3.3): n = 5, k = 2, alpha = 1e-4,
    beta = 0.75, alpha multiplying the plain sum of squares."""

    size: int = 5
    k: float = 2.0
    alpha: float = 1e-4
    beta: float = 0.75

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.local_response_norm(x, size=self.size, k=self.k, alpha=self.alpha,
                                       beta=self.beta)


class Pool(nn.Module):
    """Downsampling layer: (N, H, W, C) -> (N, Ho, Wo, C), Ho = conv_output_size(H, window, ...).

    kind 'max' or 'avg' pools; 'strided_conv' replaces the pool by a learned convolution with the
    same window, stride and padding and C filters, followed by the activation (Springenberg et
    al. 2015, Sec. 2.1: "pooling ... replaced by a convolutional layer with increased stride").
    """

    kind: str = "max"
    window: int | Sequence[int] = 2
    stride: int | Sequence[int] | None = None
    padding: ops.Padding = 0
    options: LayerOptions = LayerOptions()
    kernel_init: Initializer = he_normal_fan_in

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        stride = self.window if self.stride is None else self.stride
        if self.kind == "max":
            return ops.max_pool(x, self.window, stride, self.padding)
        if self.kind == "avg":
            return ops.avg_pool(x, self.window, stride, self.padding)
        y = Conv(x.shape[-1], self.window, stride=stride, padding=self.padding,
                 use_bias=True, impl=self.options.conv_impl, dtype=self.options.dtype,
                 kernel_init=self.kernel_init, name="conv")(x)
        return self.options.act(y)


class GlobalAvgPool(nn.Module):
    """Mean over the spatial axes, (N, H, W, C) -> (N, C) (Lin et al. 2014, Sec. 3.2)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.global_avg_pool(x)


def batch_norm(options: LayerOptions, name: str, *, zero_scale: bool = False,
               epsilon: float = BN_EPSILON) -> nn.Module:
    """Batch norm over the channel axis (Ioffe & Szegedy 2015) with torch's momentum and epsilon.

    Called as bn(x, use_running_average=not train). zero_scale starts the scale gamma at 0
    (Goyal et al. 2017: the last BN of each residual block, so blocks start as identities)."""
    return BatchNorm(bn_stats=options.bn_stats, dtype=options.dtype, epsilon=epsilon,
                     scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones,
                     name=name)


class BatchNorm(nn.Module):
    """Batch norm (N, ..., C) -> (N, ..., C) on `ops.batch_norm`, with flax's variables.

    Training normalises by the batch's mean and biased variance (float32) over all axes but the
    channels; bn_stats picks which examples (BN_STATS, bn_group_size): the whole global batch, each
    device's, or groups of N consecutive examples, each group by its own statistics. The running
    averages ('mean' and 'var' in 'batch_stats', as nn.BatchNorm's, so checkpoints and imported
    weights fit every mode) move by 1 - BN_MOMENTUM towards the mean of the groups' statistics,
    which no output of the step depends on. Evaluation uses the running averages. The output has
    the compute dtype."""

    bn_stats: str = "global"
    dtype: str = "float32"
    epsilon: float = BN_EPSILON
    scale_init: Initializer = nn.initializers.ones

    @nn.compact
    def __call__(self, x: jax.Array, use_running_average: bool = False) -> jax.Array:
        features = x.shape[-1]
        scale = self.param("scale", self.scale_init, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        x = x.astype(DTYPES[self.dtype])
        if use_running_average:
            k = lax.rsqrt(ra_var.value + self.epsilon) * scale
            return ((x.astype(jnp.float32) - ra_mean.value) * k + bias).astype(x.dtype)
        groups = x.shape[0] // bn_group_size(self.bn_stats, x.shape[0])
        y, mean, var = ops.batch_norm(x, scale, bias, epsilon=self.epsilon, groups=groups)
        if not self.is_initializing():
            ra_mean.value = BN_MOMENTUM * ra_mean.value + (1 - BN_MOMENTUM) * mean.mean(0)
            ra_var.value = BN_MOMENTUM * ra_var.value + (1 - BN_MOMENTUM) * var.mean(0)
        return y


def conv_norm_act(x: jax.Array, options: LayerOptions, features: int,
                  kernel_size: int | Sequence[int], *, name: str, train: bool,
                  bn_name: str | None = None, act: bool = True, zero_scale: bool = False,
                  bn_epsilon: float = BN_EPSILON, **conv_kwargs: Any) -> jax.Array:
    """The conv-norm-activation block of every family: (N, H, W, Cin) -> (N, Ho, Wo, features).

    Conv `name` [-> batch norm `bn_name` (default `name`_bn) when options.norm == 'batch']
    [-> the activation, unless act=False: a residual block's last conv before the addition].
    The conv drops its bias under batch norm unless conv_kwargs say use_bias=True (torchvision's
    vgg*_bn keeps it); conv_kwargs (stride, padding, groups, kernel_init, ...) go to Conv;
    zero_scale and bn_epsilon to `batch_norm`. Called inside a model's compact method, the layers
    become that model's submodules under the names given (torchvision's flat names such as
    'features_3' / 'features_4' or 'conv1' / 'bn1'); ConvNormAct nests them as 'conv' and 'bn'."""
    conv_kwargs.setdefault("use_bias", options.conv_bias)
    x = Conv(features, kernel_size, impl=options.conv_impl, dtype=options.dtype, name=name,
             **conv_kwargs)(x)
    if options.norm == "batch":
        bn = batch_norm(options, bn_name or f"{name}_bn", zero_scale=zero_scale, epsilon=bn_epsilon)
        x = bn(x, use_running_average=not train)
    return options.act(x) if act else x


def dropout(x: jax.Array, rate: float, train: bool) -> jax.Array:
    """Inverted dropout (Srivastava et al. 2014) in training mode only; uses the 'dropout' rng."""
    if rate == 0:
        return x
    return nn.Dropout(rate=rate)(x, deterministic=not train)


class ConvNormAct(nn.Module):
    """`conv_norm_act` as a module of its own: submodules 'conv' and 'bn', as torchvision's
    BasicConv2d (GoogLeNet's building block). (N, H, W, Cin) -> (N, Ho, Wo, features)."""

    features: int
    kernel_size: int | Sequence[int]
    stride: int | Sequence[int] = 1
    padding: ops.Padding = 0
    options: LayerOptions = LayerOptions()
    kernel_init: Initializer = he_normal_fan_out
    bias_init: Initializer = nn.initializers.zeros
    bn_epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return conv_norm_act(x, self.options, self.features, self.kernel_size, name="conv",
                             bn_name="bn", train=train, bn_epsilon=self.bn_epsilon,
                             stride=self.stride, padding=self.padding,
                             kernel_init=self.kernel_init, bias_init=self.bias_init)


class SequentialNames:
    """Names layers as torchvision's nn.Sequential indexes them: f'{prefix}_{i}', one index per
    layer including the parameter-free ones (ReLU, pooling, dropout), so that a weight importer
    can map torchvision's 'features.3.weight' onto 'features_3/kernel'."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.index = -1

    def __call__(self) -> str:
        """The next layer's name."""
        self.index += 1
        return f"{self.prefix}_{self.index}"


def to_logits(x: jax.Array) -> jax.Array:
    """Logits are float32 whatever the compute dtype."""
    return x.astype(jnp.float32)
