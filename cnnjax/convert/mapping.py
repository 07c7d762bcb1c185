"""The pure name and layout mapping between cnnjax variables and PyTorch (torchvision) state dicts.

cnnjax's modules are named after torchvision's (see cnnjax.models), so a variable's torch name is
its module path joined by dots, with each trailing '_<index>' turned into '.<index>' (layer2_0 ->
layer2.0, downsample_1 -> downsample.1, features_28 -> features.28), and its leaf renamed:

    params/<m>/kernel (kh, kw, I, O) HWIO   <->  <m>.weight (O, I, kh, kw) OIHW       convolution
    params/<m>/kernel (I, O)                 <->  <m>.weight (O, I)                     linear
    params/<m>/scale, bias                   <->  <m>.weight, <m>.bias                  batch norm
    batch_stats/<m>/mean, var                <->  <m>.running_mean, <m>.running_var
    (nothing)                                 ->  <m>.num_batches_tracked () int64    as given

The first linear layer after a convolution stack reads flattened maps, and torch flattens (C, H, W)
where NHWC flattens (H, W, C): its weight's input axis is permuted between the two orders (so is
that of fc1 in each of torchvision GoogLeNet's auxiliary heads, which flattens a 4x4x128 map).

Everything here is numpy on one side and shapes on the other; nothing imports torch.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from cnnjax.convert.io import ConvertError

NUM_BATCHES_TRACKED = "num_batches_tracked"


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one supported model converts.

    model: the cnnjax registry name built on import; knobs: knobs the torch model fixes (vgg*_bn
    has norm='batch'); head: the last linear layer, whose outputs give num_classes; flatten: the
    linear layer that reads the flattened conv maps, and flatten_from the name prefix of the
    convolutions feeding it (its input channels are the last of those convolutions' outputs);
    nested_flatten: further such linear layers inside submodules, as {'aux1/fc1': 'aux1/conv/conv'}
    (the linear layer's module path: the path of the convolution that feeds it). optional_heads:
    the name prefix of auxiliary heads a state dict may leave out (the model is then built with
    aux_heads=False). unstated: knobs that change the computation but leave no trace in a state
    dict, as {knob: (the torch module's attribute that holds it, which value fits which weights)}:
    read from a torch module when one is given, required from the caller otherwise.
    """

    model: str
    head: str
    knobs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    flatten: str | None = None
    flatten_from: str | None = None
    nested_flatten: Mapping[str, str] = dataclasses.field(default_factory=dict)
    optional_heads: str | None = None
    unstated: Mapping[str, tuple[str, str]] = dataclasses.field(default_factory=dict)


def _specs() -> dict[str, Spec]:
    specs: dict[str, Spec] = {}
    for depth in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110):
        specs[f"resnet{depth}"] = Spec(f"resnet{depth}", head="fc")
    vgg = dict(head="classifier_6", flatten="classifier_0", flatten_from="features")
    for depth, config in ((11, "a"), (13, "b"), (16, "d"), (19, "e")):
        specs[f"vgg{depth}"] = Spec(f"vgg_{config}", knobs={"norm": "none"}, **vgg)
        specs[f"vgg{depth}_bn"] = Spec(f"vgg_{config}", knobs={"norm": "batch"}, **vgg)
        # cnnjax's own names, batch norm or not as the `norm` knob says.
        specs[f"vgg_{config}"] = Spec(f"vgg_{config}", **vgg)
    specs["alexnet_torchvision"] = Spec("alexnet_torchvision", head="classifier_6",
                                        flatten="classifier_1", flatten_from="features")
    specs["googlenet_torchvision"] = Spec(
        "googlenet_torchvision", head="fc", optional_heads="aux",
        nested_flatten={f"aux{i}/fc1": f"aux{i}/conv/conv" for i in (1, 2)},
        # torchvision's pretrained builder turns transform_input on, googlenet(weights=None) leaves
        # it off; the logits differ (up to 6.5x) and the weights do not tell which.
        unstated={"transform_input": ("transform_input", "True for torchvision's pretrained "
                                      "weights, False for googlenet(weights=None)'s default")})
    specs["lenet5"] = Spec("lenet5", head="output", flatten="f6", flatten_from="c")
    return specs


# Paper-true models whose torchvision namesake has another architecture: the model to use instead.
TORCHVISION_VARIANTS = {"alexnet": "alexnet_torchvision", "googlenet": "googlenet_torchvision"}


SPECS: dict[str, Spec] = _specs()


def supported_models() -> list[str]:
    """The model names the converter accepts, sorted."""
    return sorted(SPECS)


def spec_for(model_name: str) -> Spec:
    """The conversion spec of `model_name`; one-line ConvertError listing the supported names."""
    if model_name in TORCHVISION_VARIANTS:
        variant = TORCHVISION_VARIANTS[model_name]
        raise ConvertError(f"{model_name} is the paper's architecture, which torchvision's weights do "
                           f"not fit; import torchvision's {model_name} weights into {variant}")
    if model_name not in SPECS:
        raise ConvertError(f"unknown model {model_name!r} for weight conversion; supported: "
                           f"{', '.join(supported_models())}")
    return SPECS[model_name]


def module_to_torch(path: tuple[str, ...]) -> str:
    """('layer2_0', 'downsample_0') -> 'layer2.0.downsample.0'."""
    return ".".join(re.sub(r"_(\d+)$", r".\1", part) for part in path)


# Layout transforms; each pair is exact inverses (pure transpositions and reshapes).
def conv_to_torch(kernel: np.ndarray) -> np.ndarray:
    """HWIO (kh, kw, I, O) -> OIHW (O, I, kh, kw)."""
    return np.transpose(kernel, (3, 2, 0, 1))


def conv_from_torch(weight: np.ndarray) -> np.ndarray:
    """OIHW (O, I, kh, kw) -> HWIO (kh, kw, I, O)."""
    return np.transpose(weight, (2, 3, 1, 0))


def dense_to_torch(kernel: np.ndarray) -> np.ndarray:
    """(I, O) -> (O, I)."""
    return np.transpose(kernel)


def dense_from_torch(weight: np.ndarray) -> np.ndarray:
    """(O, I) -> (I, O)."""
    return np.transpose(weight)


def flatten_dense_to_torch(kernel: np.ndarray, channels: int) -> np.ndarray:
    """(S*C, O) with inputs in NHWC-flatten order (s, c) -> (O, C*S) in NCHW order (c, s).

    S = H*W is the number of spatial positions the flattened maps had."""
    n_in, n_out = kernel.shape
    return kernel.reshape(n_in // channels, channels, n_out).transpose(2, 1, 0).reshape(n_out, n_in)


def flatten_dense_from_torch(weight: np.ndarray, channels: int) -> np.ndarray:
    """(O, C*S) in NCHW-flatten order -> (S*C, O) in NHWC order; inverse of flatten_dense_to_torch."""
    n_out, n_in = weight.shape
    return weight.reshape(n_out, channels, n_in // channels).transpose(2, 1, 0).reshape(n_in, n_out)


@dataclasses.dataclass(frozen=True)
class Entry:
    """One torch state-dict entry and the cnnjax variable it comes from.

    path: (collection, *modules, leaf), or None for num_batches_tracked (no cnnjax variable);
    to_torch / from_torch: the layout transforms; torch_shape: the entry's shape in torch."""

    path: tuple[str, ...] | None
    torch_shape: tuple[int, ...]
    to_torch: Callable[[np.ndarray], np.ndarray]
    from_torch: Callable[[np.ndarray], np.ndarray]


def _identity(a: np.ndarray) -> np.ndarray:
    return a


def flat(tree: Mapping, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(key path, leaf) of every leaf of a nested mapping, in order."""
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from flat(value, (*prefix, str(key)))
        else:
            yield (*prefix, str(key)), value


def feeding_channels(params: Mapping, prefix: str) -> int:
    """Output channels of the last top-level convolution named prefix[_]<index> in `params`."""
    convs = []
    for name, module in params.items():
        match = re.fullmatch(rf"{re.escape(prefix)}_?(\d+)", name)
        kernel = module.get("kernel") if isinstance(module, Mapping) else None
        if match and kernel is not None and len(np.shape(kernel)) == 4:
            convs.append((int(match.group(1)), np.shape(kernel)[-1]))
    if not convs:
        raise ConvertError(f"no convolution named {prefix}<index> feeds the flattening layer")
    return max(convs)[1]


# Variables kept as they are, with their torch names.
_RENAMED = {("params", "bias"): "bias", ("params", "scale"): "weight",
            ("batch_stats", "mean"): "running_mean", ("batch_stats", "var"): "running_var"}


def entries(variables: Mapping, spec: Spec) -> dict[str, Entry]:
    """Every torch state-dict entry of the model whose variables (arrays or ShapeDtypeStructs,
    {'params': ..., 'batch_stats': ...}) are given, keyed by torch name, in variable order."""
    params = variables.get("params", {})
    channels = feeding_channels(params, spec.flatten_from) if spec.flatten else None
    nested = {}  # linear module path -> channels of the map it flattens (heads left out: skipped)
    for dense, conv in spec.nested_flatten.items():
        kernel = dict(flat(params)).get((*conv.split("/"), "kernel"))
        if kernel is not None:
            nested[tuple(dense.split("/"))] = np.shape(kernel)[-1]
    out: dict[str, Entry] = {}
    bn_modules: list[tuple[str, ...]] = []
    for path, leaf in flat(variables):
        collection, *modules, name = path
        shape = tuple(np.shape(leaf))
        kernel = collection == "params" and name == "kernel"
        if kernel and len(shape) == 4:
            entry = Entry(path, (shape[3], shape[2], shape[0], shape[1]), conv_to_torch,
                          conv_from_torch)
        elif kernel and len(shape) == 2 and modules == [spec.flatten]:
            entry = Entry(path, shape[::-1],
                          functools.partial(flatten_dense_to_torch, channels=channels),
                          functools.partial(flatten_dense_from_torch, channels=channels))
        elif kernel and len(shape) == 2 and tuple(modules) in nested:
            c = nested[tuple(modules)]
            entry = Entry(path, shape[::-1], functools.partial(flatten_dense_to_torch, channels=c),
                          functools.partial(flatten_dense_from_torch, channels=c))
        elif kernel and len(shape) == 2:
            entry = Entry(path, shape[::-1], dense_to_torch, dense_from_torch)
        elif (collection, name) in _RENAMED:
            entry = Entry(path, shape, _identity, _identity)
            if collection == "batch_stats" and name == "mean":
                bn_modules.append(tuple(modules))
        else:
            raise ConvertError(f"variable {'/'.join(path)} {shape} has no PyTorch equivalent "
                               f"(expected conv/dense kernels, biases and batch-norm variables)")
        torch_name = "weight" if kernel else _RENAMED[collection, name]
        out[f"{module_to_torch(tuple(modules))}.{torch_name}"] = entry
    for modules in bn_modules:
        out[f"{module_to_torch(modules)}.{NUM_BATCHES_TRACKED}"] = Entry(
            None, (), _identity, _identity)
    return out


def to_torch(variables: Mapping, spec: Spec,
             num_batches_tracked: int | Mapping[str, Any] = 0) -> dict[str, np.ndarray]:
    """cnnjax variables -> torch state dict of numpy arrays. Each num_batches_tracked entry is
    int64: `num_batches_tracked` if an int (the training steps taken), else its value in that
    mapping of torch names (the buffers an import kept), 0 where the mapping has none."""
    leaves = dict(flat(variables))
    state = {}
    for name, entry in entries(variables, spec).items():
        if entry.path is None:
            count = (num_batches_tracked.get(name, 0) if isinstance(num_batches_tracked, Mapping)
                     else num_batches_tracked)
            state[name] = np.array(count, np.int64).reshape(())
        else:
            state[name] = np.ascontiguousarray(entry.to_torch(np.asarray(leaves[entry.path])))
    return state


def _listing(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def from_torch(state: Mapping[str, Any], template: Mapping, spec: Spec, model_name: str) -> dict:
    """Torch state dict -> cnnjax variables shaped like `template` (float32 numpy leaves).

    Raises one ConvertError naming the missing keys, the unexpected keys and the shape mismatches
    (the first few of each). num_batches_tracked entries are optional and ignored. The flattening
    layer accepts any input size that is a multiple of its channels (its spatial extent, 7x7 in
    torchvision's VGG, is taken from the file)."""
    expected = entries(template, spec)
    channels = (feeding_channels(template["params"], spec.flatten_from) if spec.flatten else None)
    flatten_name = f"{module_to_torch((spec.flatten,))}.weight" if spec.flatten else None
    missing = sorted(k for k, e in expected.items() if e.path is not None and k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = []
    for name, entry in expected.items():
        if entry.path is None or name not in state:
            continue
        got = tuple(np.shape(state[name]))
        want = entry.torch_shape
        if name == flatten_name and len(got) == 2 and got[0] == want[0] and got[1] > 0 \
                and got[1] % channels == 0:
            continue
        if got != want:
            mismatched.append(f"{name} {got} (expected {want})")
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} key(s): {_listing(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {_listing(mismatched, 3)}")
    if problems:
        raise ConvertError(f"state dict does not fit {model_name}: " + "; ".join(problems))
    variables: dict = {}
    for name, entry in expected.items():
        if entry.path is None:
            continue
        node = variables
        for key in entry.path[:-1]:
            node = node.setdefault(key, {})
        value = np.asarray(state[name], dtype=np.float32)
        node[entry.path[-1]] = np.ascontiguousarray(entry.from_torch(value))
    return variables


def parameter_count(state: Mapping[str, Any]) -> int:
    """What torch's sum(p.numel() for p in model.parameters()) gives for this state dict:
    every entry except batch-norm running statistics and num_batches_tracked."""
    buffers = ("running_mean", "running_var", NUM_BATCHES_TRACKED)
    return sum(math.prod(np.shape(v)) for k, v in state.items() if not k.endswith(buffers))
