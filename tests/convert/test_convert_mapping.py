"""The name and layout mapping without torch: torchvision's keys, shapes and counts, the layout
transforms against direct numpy statements of the two conventions, exact round trips, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.convert import (
    TORCHVISION,
    abstract,
    assert_trees_equal,
    random_variables,
)

from cnnjax.convert import mapping, torch_to_variables, variables_to_torch


def torch_shapes(name: str, **kw) -> dict[str, tuple[int, ...]]:
    return {k: e.torch_shape for k, e in mapping.entries(abstract(name, **kw),
                                                         mapping.spec_for(name)).items()}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_entry_and_parameter_counts_are_torchvisions(name):
    shapes = torch_shapes(name)
    n_entries, n_params = TORCHVISION[name]
    assert len(shapes) == n_entries
    assert mapping.parameter_count({k: np.empty(s, np.uint8) for k, s in shapes.items()}) == n_params


# Entries of torchvision's own state dicts (as in its published checkpoints).
KNOWN = {
    "resnet18": {"conv1.weight": (64, 3, 7, 7), "layer1.1.conv2.weight": (64, 64, 3, 3),
                 "layer3.0.downsample.1.running_var": (256,), "fc.weight": (1000, 512)},
    "resnet50": {"layer2.0.downsample.0.weight": (512, 256, 1, 1),
                 "layer4.2.conv3.weight": (2048, 512, 1, 1), "layer4.2.bn3.weight": (2048,),
                 "bn1.num_batches_tracked": (), "fc.weight": (1000, 2048), "fc.bias": (1000,)},
    "vgg16": {"features.0.weight": (64, 3, 3, 3), "features.28.weight": (512, 512, 3, 3),
              "classifier.0.weight": (4096, 25088), "classifier.3.weight": (4096, 4096),
              "classifier.6.bias": (1000,)},
    "vgg16_bn": {"features.1.running_mean": (64,), "features.40.weight": (512, 512, 3, 3),
                 "features.41.num_batches_tracked": (), "classifier.0.weight": (4096, 25088)},
    "alexnet_torchvision": {"features.0.weight": (64, 3, 11, 11),
                            "features.10.weight": (256, 256, 3, 3),
                            "classifier.1.weight": (4096, 9216),
                            "classifier.4.weight": (4096, 4096), "classifier.6.bias": (1000,)},
    "resnet20": {"conv1.weight": (16, 3, 3, 3), "layer2.0.conv1.weight": (32, 16, 3, 3),
                 "layer3.2.bn2.running_var": (64,), "fc.weight": (10, 64)},
    "lenet5": {"c1.weight": (6, 1, 5, 5), "c5.weight": (120, 16, 5, 5), "f6.weight": (84, 120),
               "output.weight": (10, 84)},
}


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_known_entries(name):
    shapes = torch_shapes(name)
    for key, shape in KNOWN[name].items():
        assert shapes[key] == shape, key


def test_cifar_resnets_have_option_a_shortcuts_without_parameters():
    for name in ("resnet20", "resnet56"):  # all five against the torch reference elsewhere
        shapes = torch_shapes(name)
        assert not any("downsample" in k for k in shapes), name
        depth = int(name[6:])
        assert sum(len(s) == 4 for s in shapes.values()) == depth - 1  # every layer but fc


def test_conv_layout_is_oihw():
    kernel = np.random.default_rng(0).standard_normal((3, 5, 4, 6)).astype(np.float32)
    weight = mapping.conv_to_torch(kernel)
    assert weight.shape == (6, 4, 3, 5)
    for o, i, h, w in np.ndindex(weight.shape):
        assert weight[o, i, h, w] == kernel[h, w, i, o]
    assert np.array_equal(mapping.conv_from_torch(weight), kernel)


@pytest.mark.parametrize(("h", "w", "c"), [(7, 7, 5), (2, 3, 4), (1, 1, 8)])
def test_flatten_layer_matches_torchs_nchw_flatten(h, w, c):
    """NHWC: x.reshape(-1) @ kernel; torch: W @ x.transpose(C, H, W).reshape(-1)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((h, w, c))
    kernel = rng.standard_normal((h * w * c, 3))
    weight = mapping.flatten_dense_to_torch(kernel, c)
    assert weight.shape == (3, c * h * w)
    # Two float64 dot products of K = h*w*c terms in other orders: each within K * eps * sum|t|
    # (Higham eq. 3.5), so they agree to 2 K eps sum|t|; a wrong order is off by O(1) (checked below).
    bound = 2 * h * w * c * np.finfo(np.float64).eps * (np.abs(x).reshape(-1) @ np.abs(kernel))
    np.testing.assert_allclose(weight @ x.transpose(2, 0, 1).reshape(-1), x.reshape(-1) @ kernel,
                               rtol=0, atol=bound.max())
    assert np.array_equal(mapping.flatten_dense_from_torch(weight, c), kernel)
    if h * w > 1:  # a plain transpose would read the maps in the wrong order
        assert not np.allclose(kernel.T @ x.transpose(2, 0, 1).reshape(-1), x.reshape(-1) @ kernel)


@pytest.mark.parametrize(("name", "hw"), [("resnet18", None), ("resnet50", None), ("resnet20", None),
                                          ("lenet5", None),
                                          ("vgg11_bn", 64)])
def test_round_trips_are_exact(name, hw):
    """variables -> torch -> variables and torch -> variables -> torch give the inputs back bit
    for bit (VGG at 64x64: a classifier reading 2x2 maps rather than torchvision's 7x7 round-trips too)."""
    variables = random_variables(abstract(name, hw=hw), seed=2)
    state = variables_to_torch(variables, name)
    back = torch_to_variables(state, name)
    assert_trees_equal(variables, back)
    again = variables_to_torch(back, name)
    assert list(again) == list(state)
    for key in state:
        assert state[key].dtype == again[key].dtype and np.array_equal(state[key], again[key])


def test_num_batches_tracked_written_as_zero_and_ignored(resnet18_state):
    tracked = {k: v for k, v in resnet18_state.items() if k.endswith(".num_batches_tracked")}
    assert len(tracked) == 20  # one per batch norm: stem, 2 x 8 blocks, 3 projections
    assert all(v.dtype == np.int64 and v.shape == () and v == 0 for v in tracked.values())
    with_counts = torch_to_variables({**resnet18_state, "bn1.num_batches_tracked": np.array(7)},
                                     "resnet18")
    without = torch_to_variables({k: v for k, v in resnet18_state.items() if k not in tracked},
                                 "resnet18")
    assert_trees_equal(with_counts, without)


def test_num_classes_is_read_from_the_head():
    variables = random_variables(abstract("resnet20", num_classes=7))
    back = torch_to_variables(variables_to_torch(variables, "resnet20"), "resnet20")
    assert back["params"]["fc"]["kernel"].shape == (64, 7)


def test_vgg_names_map_onto_the_configurations():
    assert mapping.spec_for("vgg16").model == "vgg_d"
    assert mapping.spec_for("vgg19_bn").model == "vgg_e"
    assert mapping.spec_for("vgg19_bn").knobs == {"norm": "batch"}
    assert mapping.spec_for("vgg11").knobs == {"norm": "none"}


def test_float16_and_float64_inputs_become_float32(resnet18_state):
    state = {k: v.astype(np.float16) if v.dtype == np.float32 else v
             for k, v in resnet18_state.items()}
    variables = torch_to_variables(state, "resnet18")
    kernel = variables["params"]["conv1"]["kernel"]
    assert kernel.dtype == np.float32
    np.testing.assert_array_equal(
        kernel, mapping.conv_from_torch(resnet18_state["conv1.weight"].astype(np.float16)))


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_model():
    message = one_line_error(torch_to_variables, {}, "resnet19")
    assert "resnet19" in message and "resnet18" in message and "vgg16_bn" in message
    assert "resnet19" in one_line_error(variables_to_torch, {"params": {}}, "resnet19")


def test_missing_keys_are_named(resnet18_state):
    state = dict(resnet18_state)
    del state["layer1.0.conv1.weight"], state["layer4.1.bn2.running_var"]
    message = one_line_error(torch_to_variables, state, "resnet18")
    assert "missing 2 key(s)" in message
    assert "layer1.0.conv1.weight" in message and "layer4.1.bn2.running_var" in message


def test_many_missing_keys_show_the_first_few(resnet18_state):
    state = {k: v for k, v in resnet18_state.items() if not k.startswith("layer")}
    message = one_line_error(torch_to_variables, state, "resnet18")
    assert "missing 95 key(s)" in message and "and 90 more" in message  # 114 - 19 counters


def test_unexpected_keys_are_named(resnet18_state):
    state = {**resnet18_state, "extra.weight": np.zeros(3), "layer5.0.conv1.weight": np.zeros(3)}
    message = one_line_error(torch_to_variables, state, "resnet18")
    assert "unexpected 2 key(s)" in message
    assert "extra.weight" in message and "layer5.0.conv1.weight" in message


def test_shape_mismatches_are_named(resnet18_state):
    state = {**resnet18_state, "conv1.weight": np.zeros((64, 3, 3, 3), np.float32),
             "fc.bias": np.zeros(10, np.float32)}
    message = one_line_error(torch_to_variables, state, "resnet18")
    assert "2 shape mismatch(es)" in message
    assert "conv1.weight (64, 3, 3, 3) (expected (64, 3, 7, 7))" in message
    assert "fc.bias (10,) (expected (1000,))" in message


@pytest.fixture(scope="module")
def vgg11_bn_state() -> dict:
    """vgg11_bn as trained on 32x32 inputs (a 512-input classifier), in torch format."""
    return variables_to_torch(random_variables(abstract("vgg11_bn", hw=32)), "vgg11_bn")


def test_wrong_model_for_the_weights(resnet18_state, vgg11_bn_state):
    message = one_line_error(torch_to_variables, resnet18_state, "resnet34")
    assert "missing 80 key(s)" in message and "layer1.2.bn1.bias" in message
    message = one_line_error(torch_to_variables, vgg11_bn_state, "vgg11")
    assert "unexpected" in message and "features.1.running_mean" in message


def test_cnnjax_vgg_names_take_the_norm_knob(vgg11_bn_state):
    assert_trees_equal(torch_to_variables(vgg11_bn_state, "vgg_a", norm="batch"),
                       torch_to_variables(vgg11_bn_state, "vgg11_bn"))
    assert "unexpected" in one_line_error(torch_to_variables, vgg11_bn_state, "vgg_a")


def test_flatten_layer_input_must_be_whole_maps(vgg11_bn_state):
    # 700 inputs are not 512 channels times a number of positions.
    vgg = {**vgg11_bn_state, "classifier.0.weight": np.zeros((4096, 700), np.float32)}
    assert "classifier.0.weight (4096, 700)" in one_line_error(torch_to_variables, vgg, "vgg11_bn")


def test_missing_head_says_how_classes_are_inferred(resnet18_state):
    state = {k: v for k, v in resnet18_state.items() if k != "fc.weight"}
    assert "'fc.weight'" in one_line_error(torch_to_variables, state, "resnet18")


def test_knobs(resnet18_state):
    assert "norm" in one_line_error(torch_to_variables, {}, "vgg11", norm="batch")
    assert "colour" in one_line_error(torch_to_variables, resnet18_state, "resnet18", colour=1)
    variables = torch_to_variables(resnet18_state, "resnet18", dtype="bfloat16")
    assert variables["params"]["fc"]["kernel"].dtype == np.float32  # params stay float32


def test_variables_without_torch_equivalent():
    message = one_line_error(variables_to_torch, {"params": {"x": {"embedding": np.zeros(3)}}},
                             "resnet18")
    assert "params/x/embedding" in message


def test_parameter_count_leaves_out_buffers():
    state = {"a.weight": np.zeros((2, 3)), "a.running_mean": np.zeros(9),
             "a.running_var": np.zeros(9), "a.num_batches_tracked": np.zeros(())}
    assert mapping.parameter_count(state) == math.prod((2, 3))
