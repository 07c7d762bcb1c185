"""The registry's names, knob validation and one-line errors; output shapes and parameter names
of every family (jax.eval_shape only: nothing allocated)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from cnnjax import models

ISSUE_NAMES = [
    "lenet5", "alexnet", "alexnet_torchvision", "vgg_a", "vgg_a_lrn", "vgg_b", "vgg_c", "vgg_d",
    "vgg_e", "vgg11", "vgg13", "vgg16", "vgg19", "googlenet", "resnet18", "resnet34", "resnet50",
    "resnet101", "resnet152", "plain18", "plain34", "resnet20", "resnet32", "resnet44",
    "resnet56", "resnet110", "plain20", "plain32", "plain44", "plain56", "plain110", "mlp",
    "allconv",
    "smallcnn",  # not in the issue: the plain four-conv network the ablation experiments use
    "googlenet_small",  # not in the issue: GoogLeNet / 8 for 32x32 inputs (googlenet_aux ablation)
    "googlenet_torchvision",  # issue 12: torchvision's variant, whose weights import
]


def test_every_model_of_the_issue_is_registered():
    assert sorted(ISSUE_NAMES) == models.list_models()


def _one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_name_lists_the_valid_names():
    message = _one_line_error(models.build, "resnet19")
    assert "'resnet19'" in message
    for name in ("resnet18", "vgg16", "googlenet", "lenet5"):
        assert name in message


def test_unknown_knob_lists_the_valid_knobs():
    message = _one_line_error(models.build, "resnet18", shortcuts="none")
    assert "shortcuts" in message
    for knob in ("shortcut", "zero_init_residual", "conv_impl", "dtype", "activation"):
        assert knob in message
    # Knobs that make no sense for a model are not among its knobs.
    assert "conv_impl" in _one_line_error(models.build, "mlp", conv_impl="xla")
    assert "aux_heads" in _one_line_error(models.build, "resnet50", aux_heads=False)
    assert "shortcut" in _one_line_error(models.build, "vgg16", shortcut="none")
    # Fields that define a variant are not knobs either.
    assert "stage_sizes" in _one_line_error(models.build, "resnet18", stage_sizes=(1, 1, 1, 1))


@pytest.mark.parametrize(("name", "knobs", "mentions"), [
    ("resnet18", {"norm": "lrn"}, "'batch'"),
    ("vgg16", {"norm": "lrn"}, "'none'"),
    ("lenet5", {"activation": "swish2"}, "'tanh'"),
    ("lenet5", {"dtype": "float16"}, "'bfloat16'"),
    ("resnet20", {"conv_impl": "fft"}, "'explicit'"),
    ("resnet20", {"pool": "avg"}, "CIFAR"),
    ("resnet20", {"shortcut": "option_b"}, "'identity_pad'"),
    ("plain20", {"zero_init_residual": True}, "shortcut"),
    ("resnet18", {"stride_in_3x3": False}, "bottleneck"),
    ("alexnet", {"groups": 4}, "groups"),
    ("alexnet", {"dropout_rate": 1.5}, "[0, 1)"),
    ("googlenet", {"pool": "lp"}, "'strided_conv'"),
    ("googlenet", {"aux_heads": "yes"}, "aux_heads"),
    ("mlp", {"hidden": ()}, "hidden"),
])
def test_bad_knob_values(name, knobs, mentions):
    assert mentions in _one_line_error(models.build, name, **knobs)


def test_bad_num_classes():
    assert "num_classes" in _one_line_error(models.build, "vgg16", num_classes=0)


def test_knobs_report_the_variant_defaults():
    assert models.knobs("plain18")["shortcut"] == "none"
    assert models.knobs("resnet20")["shortcut"] == "identity_pad"
    assert models.knobs("alexnet_torchvision")["norm"] == "none"
    assert models.knobs("lenet5")["activation"] == "tanh"
    assert models.natural_input("lenet5") == ((32, 32, 1), 10)
    assert models.natural_input("resnet50") == ((224, 224, 3), 1000)


def test_split_outputs():
    logits = jnp.zeros((2, 5))
    assert models.split_outputs(logits) == (logits, ())
    a1, a2 = jnp.ones((2, 5)), jnp.ones((2, 5)) * 2
    out, aux = models.split_outputs((logits, (a1, a2)))
    assert out is logits and aux == (a1, a2)


def _output(model, shape, train=False):
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    rngs = {"params": jax.random.key(0), "dropout": jax.random.key(1)}

    def run(x):
        variables = model.init(rngs, x)
        return model.apply(variables, x, train=train, rngs={"dropout": rngs["dropout"]},
                           mutable=["batch_stats"] if train else False)

    out = jax.eval_shape(run, x)
    return out[0] if train else out


@pytest.mark.parametrize(("name", "shape", "classes"), [
    ("alexnet", (2, 224, 224, 3), 1000),
    ("alexnet_torchvision", (2, 224, 224, 3), 1000),
    ("vgg_c", (2, 224, 224, 3), 1000),
    ("googlenet", (2, 224, 224, 3), 1000),
    ("resnet50", (2, 224, 224, 3), 1000),
    ("plain34", (2, 224, 224, 3), 100),
    ("resnet110", (2, 32, 32, 3), 10),
])
def test_output_shapes(name, shape, classes):
    out = _output(models.build(name, num_classes=classes), shape)
    assert (out.shape, out.dtype) == ((shape[0], classes), jnp.float32)


def test_googlenet_aux_outputs_only_in_training():
    model = models.build("googlenet", num_classes=7)
    eval_out = _output(model, (2, 224, 224, 3), train=False)
    assert eval_out.shape == (2, 7)
    logits, aux = models.split_outputs(_output(model, (2, 224, 224, 3), train=True))
    assert logits.shape == (2, 7) and [a.shape for a in aux] == [(2, 7), (2, 7)]
    assert all(a.dtype == jnp.float32 for a in (logits, *aux))
    no_aux = _output(models.build("googlenet", num_classes=7, aux_heads=False),
                     (2, 224, 224, 3), train=True)
    assert no_aux.shape == (2, 7)


def _params(name, **knobs):
    model = models.build(name, **knobs)
    x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)["params"]


def test_resnet_names_mirror_torchvision():
    p = _params("resnet18")
    assert p["conv1"]["kernel"].shape == (7, 7, 3, 64)
    assert set(p["bn1"]) == {"scale", "bias"}
    assert set(p["layer1_0"]) == {"conv1", "bn1", "conv2", "bn2"}
    assert p["layer2_0"]["downsample_0"]["kernel"].shape == (1, 1, 64, 128)
    assert set(p["layer2_0"]["downsample_1"]) == {"scale", "bias"}
    assert p["fc"]["kernel"].shape == (512, 1000)
    p50 = _params("resnet50")
    assert p50["layer4_2"]["conv3"]["kernel"].shape == (1, 1, 512, 2048)
    assert p50["layer1_0"]["downsample_0"]["kernel"].shape == (1, 1, 64, 256)


def _indices(p, prefix):
    return sorted(int(k.split("_")[1]) for k in p if k.startswith(prefix))


def test_vgg_and_alexnet_names_are_torchvision_sequential_indices():
    """The indices of torchvision's vgg16, vgg16_bn and alexnet state dicts."""
    vgg16 = _params("vgg16")
    assert _indices(vgg16, "features") == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert _indices(vgg16, "classifier") == [0, 3, 6]
    assert vgg16["classifier_0"]["kernel"].shape == (7 * 7 * 512, 4096)
    bn = _params("vgg16", norm="batch")
    convs = [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]
    assert _indices(bn, "features") == sorted(convs + [i + 1 for i in convs])
    assert set(bn["features_41"]) == {"scale", "bias"}
    alex = _params("alexnet_torchvision")
    assert _indices(alex, "features") == [0, 3, 6, 8, 10]
    assert _indices(alex, "classifier") == [1, 4, 6]
    assert alex["features_0"]["kernel"].shape == (11, 11, 3, 64)


def test_alexnet_two_towers_halve_the_grouped_kernels():
    p = _params("alexnet")
    assert p["features_0"]["kernel"].shape == (11, 11, 3, 96)  # conv1 sees all channels
    convs = [f"features_{i}" for i in _indices(p, "features")]
    assert [p[k]["kernel"].shape[2] for k in convs] == [3, 48, 256, 192, 192]


def test_bf16_models_keep_float32_parameters():
    p = _params("resnet18", dtype="bfloat16")
    assert {a.dtype for a in jax.tree.leaves(p)} == {jnp.dtype(jnp.float32)}


def test_models_are_hashable_with_list_knobs():
    """jax.jit hashes the module behind model.apply (e.g. in flax's TrainState)."""
    model = models.build("mlp", num_classes=10, hidden=[64, 32])
    assert model.hidden == (64, 32)
    assert hash(model) == hash(models.build("mlp", num_classes=10, hidden=(64, 32)))
    for name in models.list_models():
        hash(models.build(name))
