"""Against PyTorch: the reference models' state dicts are exactly the mapping's, and converted
weights give the same logits (within 1e-4, float32) in both directions.

Sizes: ResNets pool globally, so resnet18/50 run at 64x64. cnnjax's VGG and AlexNet have no
adaptive pooling (torchvision's AdaptiveAvgPool2d((7, 7)) / ((6, 6))), so torchvision's classifier
weights fit only inputs whose last maps are 7x7 / 6x6: VGG runs at 224x224 and AlexNet at 223x223,
the smallest input that gives 6x6 (both batch 1). One VGG, vgg11_bn, keeps the time down; it
covers the convolutions, batch norms, the flattening layer and torchvision's Sequential indices
(vgg11 without batch norm differs only in those indices, checked against the reference's keys).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.convert import (
    TORCHVISION,
    abstract,
    assert_trees_equal,
    build,
    default_classes,
    random_variables,
)

from cnnjax import models
from cnnjax.convert import (
    load_weights,
    mapping,
    save_state_dict,
    torch_to_variables,
    variables_to_torch,
)
from cnnjax.convert.cli import main

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
torch_models = pytest.importorskip("cnnjax.convert.torch_models")

# cnnjax and PyTorch compute the same float32 network in other summation orders. Blocked and pairwise
# summation (the GEMMs and convolutions of oneDNN, Eigen and MKL) leave a relative error of about
# eps * log2(K) per layer (eps = 2^-23), independent from layer to layer and between the two sides.
# The models here have at most L = 50 layers on their deepest path (resnet50) and K <= 25088 terms
# (vgg11_bn's first fully connected layer): sqrt(2 L) * log2(K) * eps = 1.7e-5 of the logits' std,
# and four times that (a 3.5-sigma draw over a few thousand logits, with margin) is 7e-5 <= ATOL for
# logits of unit order (asserted: std > 0.5). A wrong weight layout is off by more than 0.1.
ATOL = 1e-4
assert ATOL >= 4 * math.sqrt(2 * 50) * math.log2(25088) * float(np.finfo(np.float32).eps)


@pytest.fixture(autouse=True)
def _two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def meta_state(name: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: nothing allocated
        model = torch_models.build_torch_model(name, num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", torch_models.torch_model_names())
def test_reference_state_dicts_are_the_mapping(name):
    classes = default_classes(name)
    mine = {k: e.torch_shape for k, e in mapping.entries(abstract(name),
                                                         mapping.spec_for(name)).items()}
    assert meta_state(name, classes) == mine


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_reference_models_have_torchvisions_counts(name):
    with torch.device("meta"):
        model = torch_models.build_torch_model(name, 1000)
    n_entries, n_params = TORCHVISION[name]
    assert len(model.state_dict()) == n_entries
    assert sum(p.numel() for p in model.parameters()) == n_params


def test_every_supported_torchvision_name_has_a_reference():
    names = set(torch_models.torch_model_names())
    assert {n for n in mapping.supported_models() if not n.startswith("vgg_")} == names
    with pytest.raises(ValueError, match="vgg11_bn"):
        torch_models.build_torch_model("vgg12", 10)


def randomised(name: str, num_classes: int, x: torch.Tensor, seed: int = 0,
               preserve_signal: bool = False, **kwargs) -> tuple[torch.nn.Module, np.ndarray]:
    """(model, its logits for x): the reference model (built with kwargs) in eval mode with random
    biases and BN statistics and scales (the weights keep torchvision's initialisation), its head
    rescaled so that the logits have std 1.

    preserve_signal: convolutions drawn N(0, 2 / fan_in) instead (He et al. 2015), which keeps the
    activations' variance through ReLUs. PyTorch's default initialisation, which GoogLeNet's
    reference keeps, shrinks it layer by layer, so that its logits hardly depend on x (by 1e-5,
    the rest is bias) and a test would not see an error in how the input is read."""
    g = torch.Generator().manual_seed(seed)
    model = torch_models.build_torch_model(name, num_classes, **kwargs)
    with torch.no_grad():
        for key, t in model.state_dict().items():
            if key.endswith("running_var") or (t.ndim == 1 and key.endswith("weight")):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif key.endswith(("bias", "running_mean")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif preserve_signal and t.ndim == 4:
                t.copy_(torch.randn(t.shape, generator=g) * math.sqrt(2 / t[0].numel()))
        logits = model.eval()(x)
        scale = logits.std()
        head = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        head.weight /= scale
        head.bias /= scale
    return model, (logits / scale).numpy()


def apply(name: str, variables: dict, x: torch.Tensor, **knobs) -> np.ndarray:
    """cnnjax logits for the NCHW batch x of model `name` built with knobs (jitted: compiling once
    beats op-by-op dispatch; the jitted function is cached per model and knobs, so a second call
    with other variables reuses it)."""
    with jax.default_matmul_precision("highest"):  # no TF32 where a GPU runs the suite
        return np.asarray(_jitted_apply(name, tuple(sorted(knobs.items())))(variables, nhwc(x)))


@functools.cache
def _jitted_apply(name: str, knobs: tuple = ()):
    return jax.jit(build(name).clone(**dict(knobs)).apply)


def nhwc(x: torch.Tensor) -> jnp.ndarray:
    return jnp.asarray(x.numpy().transpose(0, 2, 3, 1))


@pytest.mark.parametrize(("name", "shape"), [
    ("resnet18", (2, 3, 64, 64)),
    ("resnet50", (2, 3, 64, 64)),
    ("vgg11_bn", (1, 3, 224, 224)),
    ("alexnet_torchvision", (1, 3, 223, 223)),
    ("lenet5", (2, 1, 32, 32)),
])
def test_imported_weights_give_torchs_logits(name, shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    model, expected = randomised(name, default_classes(name), x)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    variables = torch_to_variables(state, name)
    logits = apply(name, variables, x)
    assert expected.std() > 0.5  # logits of order one, so ATOL is a real bound
    np.testing.assert_allclose(logits, expected, rtol=0, atol=ATOL)
    if name == "alexnet_torchvision":
        # Reading fc6's weight as a plain transpose (NHWC order) gives other logits.
        wrong = {"params": {**variables["params"], "classifier_1": {
            "kernel": state["classifier.1.weight"].T, "bias": state["classifier.1.bias"]}}}
        assert np.abs(apply(name, wrong, x) - expected).max() > 0.1


def test_a_pth_file_of_a_torch_model_loads_with_torchs_logits(tmp_path):
    """The user's path: torch.save(model.state_dict()), then load_weights (CIFAR resnet20, whose
    option-A shortcuts have no parameters, with 10 classes)."""
    x = torch.randn((2, 3, 32, 32), generator=torch.Generator().manual_seed(2))
    model, expected = randomised("resnet20", 10, x, seed=2)
    torch.save(model.state_dict(), tmp_path / "resnet20.pth")
    module, variables = load_weights(tmp_path / "resnet20.pth", "resnet20")
    with jax.default_matmul_precision("highest"):
        logits = np.asarray(jax.jit(module.apply)(variables, nhwc(x)))
    np.testing.assert_allclose(logits, expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize(("name", "shape"), [("resnet20", (2, 3, 32, 32)),
                                             ("lenet5", (2, 1, 32, 32))])
def test_exported_weights_give_cnnjaxs_logits_in_torch(name, shape):
    variables = random_variables(abstract(name), seed=4)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    expected = apply(name, variables, x)
    model = torch_models.build_torch_model(name, default_classes(name))
    model.load_state_dict({k: torch.from_numpy(np.array(v))
                           for k, v in variables_to_torch(variables, name).items()}, strict=True)
    with torch.no_grad():
        logits = model.eval()(x).numpy()
    assert expected.std() > 0.5
    np.testing.assert_allclose(logits, expected, rtol=0, atol=ATOL)


# ---------------------------------------------------------------------------------------------------
# torchvision's GoogLeNet (googlenet_torchvision): import and export to 1e-5, aux heads included
# ---------------------------------------------------------------------------------------------------

# Both sides compute the same float32 function in other summation orders. Blocked and pairwise
# summation leave a relative error of about eps * log2(K) per layer (eps = 2^-23, K <= 1728 terms:
# the 3x3x192 convolutions), independent from layer to layer along the 22 layers of the deepest path
# and between the two implementations: sqrt(2 * 22) * log2(1728) * eps = 9e-6 of the logits' unit
# std, and four times that for the largest of the 2 x 1000 logits (a 3.5-sigma draw, with margin).
GOOGLENET_ATOL = 4 * math.sqrt(2 * 22) * math.log2(1728) * float(np.finfo(np.float32).eps)


@pytest.mark.parametrize("transform_input", [False, True])
def test_googlenet_imports_and_exports_with_torchs_logits(tmp_path, transform_input):
    """72x72 inputs: the 9x9 maps before maxpool3 are odd, so torch's ceil-mode pooling (4x4, not
    'SAME''s 5x5) is exercised. transform_input off (torchvision's GoogLeNet class, and
    googlenet(weights=None)) and on (its pretrained builder) is read from the torch module, and
    recorded by `convert import` (given as a knob: a state dict does not show it), so the weights
    load into the model they fit with no knob."""
    name = "googlenet_torchvision"
    x = torch.randn((2, 3, 72, 72), generator=torch.Generator().manual_seed(5))
    model, expected = randomised(name, 1000, x, seed=5, preserve_signal=True,
                                 transform_input=transform_input)
    variables = torch_to_variables(model, name)
    # Logits of order one whose input-dependent part is far above GOOGLENET_ATOL, so that it is a
    # real bound on how the input is read:
    assert expected.std() > 0.5 and (expected[0] - expected[1]).std() > 100 * GOOGLENET_ATOL
    np.testing.assert_allclose(apply(name, variables, x, transform_input=transform_input),
                               expected, rtol=0, atol=GOOGLENET_ATOL)
    # and the model built with the other setting (the defect: a silent default) is far off.
    wrong = apply(name, variables, x, transform_input=not transform_input)
    assert np.abs(wrong - expected).max() > 0.1

    torch.save(model.state_dict(), tmp_path / "googlenet.pth")
    assert main(["import", str(tmp_path / "googlenet.pth"), "--model", name, "--knob",
                 f"transform_input={transform_input}", "--out", str(tmp_path / "g.npz")]) == 0
    module, loaded = load_weights(tmp_path / "g.npz")  # the model the logits above came from
    assert module == build(name).clone(transform_input=transform_input)
    assert_trees_equal(loaded, variables)

    mine = random_variables(abstract(name), seed=6)
    # the head rescaled for logits of std 1, as `randomised` does
    scale = apply(name, mine, x, transform_input=transform_input).std()
    mine["params"]["fc"] = {k: v / scale for k, v in mine["params"]["fc"].items()}
    reference = torch_models.build_torch_model(name, 1000, transform_input=transform_input)
    reference.load_state_dict({k: torch.from_numpy(np.array(v))
                               for k, v in variables_to_torch(mine, name).items()}, strict=True)
    with torch.no_grad():
        theirs = reference.eval()(x).numpy()
    np.testing.assert_allclose(theirs, apply(name, mine, x, transform_input=transform_input),
                               rtol=0, atol=GOOGLENET_ATOL)


def test_googlenet_aux_heads_give_torchs_aux_logits_in_training():
    """In training, with dropout off and batch statistics on both sides, the auxiliary logits agree:
    at 224x224 the heads pool 14x14 maps adaptively to 4x4 and flatten them in torch's (C, H, W)
    order, which the import permutes; reading fc1 as a plain transpose gives other logits."""
    name = "googlenet_torchvision"
    x = torch.randn((2, 3, 224, 224), generator=torch.Generator().manual_seed(7))
    model, _ = randomised(name, 10, x, seed=7, transform_input=True)
    for dropout in (model.dropout, model.aux1.dropout, model.aux2.dropout):
        dropout.p = 0.0
    with torch.no_grad():
        logits, aux2, aux1 = (t.numpy() for t in model.train()(x))
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    module = models.build(name, num_classes=10, dropout_rate=0.0, aux_dropout_rate=0.0)
    variables = torch_to_variables(state, name, transform_input=True)

    def train_logits(variables):
        with jax.default_matmul_precision("highest"):
            (out, heads), _ = jax.jit(lambda v, x: module.apply(v, x, train=True,
                                                                mutable=["batch_stats"]))(
                variables, nhwc(x))
        return np.asarray(out), [np.asarray(h) for h in heads]

    out, (mine1, mine2) = train_logits(variables)
    # Training mode adds to each of the 22 layers two sums over the batch (mean and E[x^2]) of
    # n <= 2 * 32 * 32 = 2048 values, each eps * log2(n) <= 11 eps, to the convolution's
    # eps * log2(1728) = 11 eps: about 3x the evaluation-mode error per layer, so 3 * GOOGLENET_ATOL
    # (1.0e-4) of the output's std.
    for got, want in ((out, logits), (mine1, aux1), (mine2, aux2)):
        assert want.std() > 0.1
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * want.std())
    wrong = jax.tree.map(lambda a: a, variables)
    wrong["params"]["aux1"]["fc1"]["kernel"] = state["aux1.fc1.weight"].T
    _, (bad1, _) = train_logits(wrong)
    assert np.abs(bad1 - aux1).max() > 0.1 * aux1.std()


def test_googlenet_without_aux_heads_imports_into_a_model_without_them(tmp_path):
    """A state dict saved from torchvision's googlenet(aux_logits=False), as its pretrained model
    is used: no aux1.*/aux2.* entries, 6,624,904 parameters on both sides."""
    name = "googlenet_torchvision"
    reference = torch_models.GoogLeNet(1000, aux_logits=False)
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    assert mapping.parameter_count(state) == 6_624_904
    assert not any(k.startswith("aux") for k in state)
    save_state_dict(state, tmp_path / "googlenet.safetensors")
    module, variables = load_weights(tmp_path / "googlenet.safetensors", name,
                                     transform_input=False)  # torchvision's class default
    assert module.aux_heads is False and module.transform_input is False
    assert sum(np.size(a) for a in jax.tree.leaves(variables["params"])) == 6_624_904
    x = torch.randn((1, 3, 64, 64), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        expected = reference.eval()(x).numpy()
    with jax.default_matmul_precision("highest"):
        logits = np.asarray(jax.jit(module.apply)(variables, nhwc(x)))
    np.testing.assert_allclose(logits, expected, rtol=0, atol=GOOGLENET_ATOL)

