"""cnnjax.convert: weights between PyTorch/torchvision state dicts and cnnjax models.

    state = load_state_dict("resnet50-0676ba61.pth")   # or .safetensors / .npz (no torch needed)
    variables = torch_to_variables(state, "resnet50")   # for models.build("resnet50", ...)
    variables = torch_to_variables(torch_module, "googlenet_torchvision")  # knobs read from it
    module, variables = load_weights("vgg16_bn.safetensors", "vgg16_bn")
    module, variables = load_weights("imported.npz")    # model and knobs from its record
    save_state_dict(variables_to_torch(variables, "resnet50"), "exported.safetensors")

Supported: resnet18/34/50/101/152, vgg11/13/16/19 and vgg*_bn (built as vgg_a/b/d/e with
norm 'none' or 'batch'), alexnet_torchvision, googlenet_torchvision (with or without its auxiliary
heads; transform_input, which a state dict does not show, read from a torch module or passed as a
knob), and, with the reference implementations of cnnjax.convert.torch_models, lenet5 and the CIFAR
resnet20/32/44/56/110. The paper-true alexnet and googlenet are refused in one line that names the
variant to use. num_classes is read from the last linear layer. An imported .npz records the model
and its knobs (cnnjax.convert.record), so loading it needs neither. Inputs: torchvision's weights
expect RGB in [0, 1] normalised by the ImageNet mean and std; VGG and AlexNet, which have no
adaptive pooling in cnnjax, need inputs whose last feature map is the one the weights were trained
on (224x224 for torchvision's 7x7 and 6x6), while the ResNets and GoogLeNet, which pool globally,
take any size.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from cnnjax.convert.io import ConvertError, load_state_dict, save_state_dict
from cnnjax.convert.mapping import spec_for, supported_models


@dataclasses.dataclass(frozen=True)
class Weights:
    """Weights read into a cnnjax model.

    model: the converter model name; knobs: what models.build(spec model, **knobs) took,
    num_classes included; module: that flax module; variables: {'params', ['batch_stats']} of
    float32 numpy leaves; buffers: torch's entries with no cnnjax variable (num_batches_tracked),
    as the source had them; input_channels: the image channels the first convolution takes (those
    of the model's natural input unless the weights say otherwise, e.g. a resnet20 trained on
    grayscale images); record: what an imported .npz writes to say what it is."""

    model: str
    knobs: dict[str, Any]
    module: Any
    variables: dict
    buffers: dict[str, np.ndarray]
    input_channels: int

    @property
    def record(self) -> dict:
        from cnnjax.convert import record
        from cnnjax.models import registry

        return record.make_record(self.model, self.knobs, registry.knobs(spec_for(self.model).model))


def read_weights(source: Any, model_name: str | None = None, **knobs: Any) -> Weights:
    """`source` read into a cnnjax model: a weights file (.pth/.pt, .safetensors, a state-dict .npz,
    or an .npz of `convert import` with its record), a state dict (name -> array or tensor), or a
    torch nn.Module (its state dict, and the knobs of spec.unstated read from its attributes).

    The model is `model_name`, or the one the file records; knobs are what the source determines
    (its record, or num_classes from the last linear layer and the auxiliary heads it holds),
    then `knobs`. One-line ConvertError for an unknown model, a requested knob or model that
    contradicts the source, a knob the source cannot tell and `knobs` does not give, and missing
    keys, unexpected keys and shape mismatches (naming the first few)."""
    from cnnjax.convert import mapping, record

    state, recorded, label, from_module = _state_of(source, model_name)
    name = record.model_name_of(recorded, model_name, label)
    spec = spec_for(name)
    for knob, fixed in spec.knobs.items():
        if knob in knobs and knobs[knob] != fixed:
            raise ConvertError(f"{name} has {knob}={fixed!r} in torchvision; got {knob}="
                               f"{knobs[knob]!r} (pick the matching model name, e.g. vgg11 or vgg11_bn)")
    head = f"{mapping.module_to_torch((spec.head,))}.weight"
    if head not in state or np.ndim(state[head]) != 2:
        held = ", ".join(sorted(state)[:4]) + (", ..." if len(state) > 4 else "")
        raise ConvertError(f"state dict does not fit {name}: it needs a 2-D {head!r} "
                           f"(num_classes x features) to infer the number of classes; it holds "
                           f"{len(state)} entries ({held or 'none'})")
    if recorded is not None:
        determined = {k: (v, "recorded at import") for k, v in recorded["knobs"].items()}
    else:
        where = "read from the state dict"
        determined = {"num_classes": (int(np.shape(state[head])[0]), where)}
        if spec.optional_heads:
            # torchvision's GoogLeNet saved with aux_logits=False has no aux1.*/aux2.* entries.
            determined["aux_heads"] = (any(k.startswith(spec.optional_heads) for k in state), where)
        for knob, (attribute, _) in spec.unstated.items():
            if from_module is not None and hasattr(from_module, attribute):
                determined[knob] = (getattr(from_module, attribute), "read from the torch module")
    built = {**record.resolve_knobs(name, spec, determined, knobs, label), **spec.knobs}
    module, template, channels = _model_and_template(spec, built, state)
    variables = mapping.from_torch(state, template, spec, name)
    buffers = {k: np.asarray(v) for k, v in state.items()
               if k.endswith(f".{mapping.NUM_BATCHES_TRACKED}")}
    return Weights(name, built, module, variables, buffers, channels)


def torch_to_variables(state_dict: Any, model_name: str, **knobs: Any) -> dict:
    """cnnjax variables {'params', 'batch_stats'} (float32 numpy leaves) for
    models.build(spec model, num_classes=rows of the last linear weight, **knobs) from a torch
    state dict with torchvision's names, or a torch nn.Module; see read_weights for the knobs and
    the errors. BN num_batches_tracked entries are left out (read_weights keeps them)."""
    return read_weights(state_dict, model_name, **knobs).variables


def variables_to_torch(variables: Mapping[str, Any], model_name: str,
                       num_batches_tracked: int | Mapping[str, Any] = 0) -> dict[str, np.ndarray]:
    """The torch state dict (torchvision names, OIHW convolutions, (out, in) linear weights) of a
    supported model's cnnjax variables; the exact inverse of torch_to_variables. Every batch
    norm's num_batches_tracked is `num_batches_tracked` (the training steps taken), or its entry
    in that mapping of torch names (Weights.buffers)."""
    from cnnjax.convert import mapping

    return mapping.to_torch(variables, spec_for(model_name), num_batches_tracked)


def fit_weights(path: str | pathlib.Path, template: Mapping[str, Any], model_name: str) -> dict:
    """The variables in the weights file `path` (any that cnnjax writes or reads: an .npz of convert
    import, or a state dict in .pth/.pt, .safetensors or .npz) for the model `model_name` (a
    registry name, as config.model.name) whose variables are shaped like `template`
    ({'params', ['batch_stats']}, arrays or ShapeDtypeStructs): float32 numpy leaves of exactly
    the template's names and shapes. One-line ConvertError when they do not fit (missing,
    unexpected or misshapen entries, naming the first few), or for a model the converter does not
    know."""
    from cnnjax.convert import mapping, record

    spec = spec_for(model_name)
    path = pathlib.Path(path)
    arrays = load_state_dict(path)
    state = arrays
    if record.is_imported(arrays):  # back in torch names (exact transposes): one check for all
        recorded, variables, buffers = record.split_imported(arrays, str(path))
        state = {**variables_to_torch(variables, recorded["model"] if recorded else model_name),
                 **buffers}
    try:
        variables = mapping.from_torch(state, template, spec, model_name)
    except ConvertError as e:
        raise ConvertError(f"{path}: {e}") from None
    expected = dict(mapping.flat(template))
    wrong = [f"{'/'.join(k)} {np.shape(v)} (expected {tuple(np.shape(expected[k]))})"
             for k, v in mapping.flat(variables) if np.shape(v) != tuple(np.shape(expected[k]))]
    if wrong:  # the flattening layer's input, which from_torch lets vary with the image size
        raise ConvertError(f"{path} does not fit {model_name} on these images: {', '.join(wrong[:3])}")
    return variables


def load_weights(path: Any, model_name: str | None = None, **knobs: Any) -> tuple[Any, dict]:
    """(flax module, variables) for the weights file `path` (.pth/.pt, .safetensors, .npz) loaded
    into `model_name` (default: the model an imported .npz records); apply as
    module.apply(variables, x, train=False) with x NHWC. See read_weights."""
    weights = read_weights(pathlib.Path(path), model_name, **knobs)
    return weights.module, weights.variables


def _state_of(source: Any, model_name: str | None) -> tuple[dict, dict | None, str, Any]:
    """(torch state dict of numpy arrays, the record or None, a label for messages, the torch
    module or None) of a file, a state dict or a torch module."""
    from cnnjax.convert import io, record

    if hasattr(source, "state_dict") and hasattr(source, "named_buffers"):  # a torch nn.Module
        return io.tensors_to_numpy(source.state_dict()), None, "the torch module", source
    if not isinstance(source, Mapping):
        path = pathlib.Path(source)
        arrays, label = load_state_dict(path), str(path)
    else:
        arrays, label = dict(source), "the state dict"
        if any(hasattr(v, "detach") for v in arrays.values()):
            arrays = io.tensors_to_numpy(arrays)
    if not record.is_imported(arrays):
        return arrays, None, label, None
    recorded, variables, buffers = record.split_imported(arrays, label)
    name = record.model_name_of(recorded, model_name, label)
    # The variables back in torch names (exact transposes), so one path checks every source.
    state = {**variables_to_torch(variables, name), **buffers}
    return state, recorded, label, None


def _model_and_template(spec: Any, knobs: dict, state: Mapping[str, Any]
                        ) -> tuple[Any, dict, int]:
    """(the module models.build(spec.model, **knobs), its abstract variables, the image channels)
    for images at the model's natural size with the channels of the convolution that reads them
    in `state`: a resnet20 trained on grayscale images loads as one."""
    import jax
    import jax.numpy as jnp

    from cnnjax import models
    from cnnjax.convert import mapping

    module = models.build(spec.model, **knobs)
    (height, width, natural), _ = models.natural_input(spec.model)

    def template(channels: int) -> dict:
        x = jax.ShapeDtypeStruct((1, height, width, channels), jnp.float32)
        return jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), x)

    def convolutions(variables: dict) -> dict[str, tuple[int, ...]]:
        return {n: e.torch_shape for n, e in mapping.entries(variables, spec).items()
                if len(e.torch_shape) == 4}

    fits = template(natural)
    expected = convolutions(fits)
    if all(tuple(np.shape(state[n])) == shape for n, shape in expected.items() if n in state):
        return module, fits, natural  # the common case: one abstract init
    # The image convolution is the one whose shape follows the channels; the variables' order does
    # not tell it (GoogLeNet's auxiliary heads come first).
    other = convolutions(template(natural + 1))
    first = next(n for n, shape in expected.items() if shape != other[n])
    if np.ndim(state.get(first)) != 4 or np.shape(state[first])[1] == natural:
        return module, fits, natural  # from_torch names the mismatches
    channels = int(np.shape(state[first])[1])  # torch's OIHW: dimension 1 is the input channels
    return module, template(channels), channels


__all__ = ["Weights", "fit_weights", "load_state_dict", "load_weights", "read_weights", "save_state_dict",
           "supported_models", "torch_to_variables", "variables_to_torch"]
