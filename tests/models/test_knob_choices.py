"""knob_choices(name) is exactly what model `name` accepts: every value it lists builds, a value
outside is refused in one line; models register in their own file; one conv_impl default."""

from __future__ import annotations

import inspect
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from cnnjax import models, ops
from cnnjax.models import layers, registry

# One model of each family and block kind, traced (jax.eval_shape) with every listed value; the
# deeper variants repeat their blocks and are only constructed (their checks run in __post_init__).
TRACED = ("lenet5", "mlp", "allconv", "smallcnn", "alexnet", "alexnet_torchvision", "vgg_a_lrn",
          "googlenet", "googlenet_small", "googlenet_torchvision", "resnet18", "resnet50",
          "resnet20", "plain20")
# Knobs whose values do not change which layers exist: traced on LeNet-5 and the MLP only.
COMPUTE_ONLY = ("activation", "dtype", "conv_impl")


def _one_line_error(name: str, **knobs) -> str:
    with pytest.raises(models.ModelError) as info:
        models.build(name, **knobs)
    message = str(info.value)
    assert "\n" not in message
    return message


def _outside(values: tuple):
    """A value of the knob's type that is not among `values`."""
    if isinstance(values[0], bool):
        return next((b for b in (False, True) if b not in values), "yes")
    if isinstance(values[0], int):
        return max(values) + 1
    return "no_such_value"


def _traces(name: str, **knobs) -> None:
    (h, w, c), classes = models.natural_input(name)
    model = models.build(name, num_classes=classes, **knobs)
    x = jax.ShapeDtypeStruct((1, h, w, c), jnp.float32)
    jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)  # init runs the forward pass


@pytest.mark.parametrize("name", models.list_models())
def test_every_listed_value_builds_and_one_outside_is_refused(name):
    choices = models.knob_choices(name)
    assert set(choices) <= set(models.knobs(name))
    for knob, values in choices.items():
        assert models.knobs(name)[knob] in values  # the default is accepted
        for value in values:
            models.build(name, **{knob: value})
        bad = _outside(values)
        assert knob in _one_line_error(name, **{knob: bad})


@pytest.mark.parametrize("name", TRACED)
def test_every_listed_value_traces(name):
    for knob, values in models.knob_choices(name).items():
        if knob in COMPUTE_ONLY and name not in ("lenet5", "mlp"):
            continue
        for value in values:
            _traces(name, **{knob: value})


def test_per_model_restrictions_are_listed_with_the_reason_they_are_refused():
    """The issue: `summary resnet20` listed pool 'avg' and 'strided_conv', which resnet20 refuses."""
    assert models.knob_choices("resnet20")["pool"] == ("max",)
    assert models.knob_choices("resnet50")["pool"] == layers.POOLS
    assert models.knob_choices("resnet18")["stride_in_3x3"] == (True,)
    assert models.knob_choices("resnet50")["stride_in_3x3"] == (False, True)
    assert models.knob_choices("plain20")["zero_init_residual"] == (False,)
    assert "CIFAR" in _one_line_error("resnet20", pool="avg")
    assert "bottleneck" in _one_line_error("resnet18", stride_in_3x3=False)
    # A restriction follows the knobs given, not only the defaults: a plain net with a shortcut
    # may start its blocks as identities.
    models.build("plain20", shortcut="identity_pad", zero_init_residual=True)


def test_a_choice_of_the_wrong_type_is_refused():
    """True == 1 in Python: groups=True passed as groups 1, and a 1 for a boolean knob as True."""
    assert "groups" in _one_line_error("alexnet", groups=True)
    assert "aux_heads" in _one_line_error("googlenet", aux_heads=1)
    assert "relu_logits" in _one_line_error("allconv", relu_logits=0)


def test_one_conv_impl_default():
    """layers.Conv and every model's conv_impl knob default to one value, ops.DEFAULT_IMPL ('auto':
    oneDNN on the CPU where it is built, XLA's convolution elsewhere). ops' pure functions default to
    'xla', the one implementation with every JAX transformation (jvp, linear_transpose)."""
    assert ops.DEFAULT_IMPL == "auto" and ops.DEFAULT_IMPL in ops.IMPLS
    for fn in (ops.conv1d, ops.conv2d, ops.convolve1d, ops.convolve2d, ops.conv_transpose2d):
        assert inspect.signature(fn).parameters["impl"].default == "xla", fn.__name__
    assert layers.Conv(1, 1).impl == ops.DEFAULT_IMPL
    assert layers.LayerOptions().conv_impl == ops.DEFAULT_IMPL
    with_conv = [n for n in models.list_models() if "conv_impl" in models.knobs(n)]
    assert len(with_conv) == len(models.list_models()) - 1  # all but the MLP
    assert {models.knobs(n)["conv_impl"] for n in with_conv} == {ops.DEFAULT_IMPL}


def test_a_new_architecture_is_one_registration(monkeypatch):
    """A new architecture as a contributor would add it: one class, registered where defined."""
    from cnnjax.models import base  # the shared base of the families' knobs

    class Toy(base.ConvModel):
        OWNER: ClassVar[str] = "toy"
        CHOICES: ClassVar[dict[str, tuple]] = {"norm": ("none", "batch")}
        STRUCTURE: ClassVar[tuple[str, ...]] = ("width",)

        width: int = 4
        num_classes: int = 3

        @nn.compact
        def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
            x = layers.conv_norm_act(x, self.options, self.width, 3, name="conv", train=train)
            return layers.Dense(self.num_classes, name="fc")(layers.GlobalAvgPool()(x))

    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    registry.register_model("toy8", Toy, natural_input=((8, 8, 1), 3), width=8)
    assert "toy8" in models.list_models()
    assert models.natural_input("toy8") == ((8, 8, 1), 3)
    knobs = models.knobs("toy8")
    assert "width" not in knobs and {"activation", "norm", "pool", "conv_impl"} <= set(knobs)
    assert models.knob_choices("toy8")["norm"] == ("none", "batch")
    assert "'batch'" in _one_line_error("toy8", norm="lrn")
    _traces("toy8", norm="batch")
    with pytest.raises(RuntimeError, match="twice"):
        registry.register_model("toy8", Toy)
