"""cnnjax.convert: weights between PyTorch/torchvision state dicts and cnnjax models.

    state = load_state_dict("resnet50-0676ba61.pth")   # or .safetensors / .npz (no torch needed)
    variables = torch_to_variables(state, "resnet50")   # for models.build("resnet50", ...)
    module, variables = load_weights("vgg16_bn.safetensors", "vgg16_bn")
    save_state_dict(variables_to_torch(variables, "resnet50"), "exported.safetensors")

Supported: resnet18/34/50/101/152, vgg11/13/16/19 and vgg*_bn (built as vgg_a/b/d/e with
norm 'none' or 'batch'), alexnet_torchvision, googlenet_torchvision (with or without its auxiliary
heads; transform_input on, as torchvision's pretrained builder sets it), and, with the reference
implementations of cnnjax.convert.torch_models, lenet5 and the CIFAR resnet20/32/44/56/110.
The paper-true alexnet and googlenet are refused in one line that names the variant to use.
num_classes is read from the last linear layer. Inputs: torchvision's weights expect RGB in
[0, 1] normalised by the ImageNet mean and std; VGG and AlexNet, which have no adaptive pooling
in cnnjax, need inputs whose last feature map is the one the weights were trained on (224x224
for torchvision's 7x7 and 6x6), while the ResNets and GoogLeNet, which pool globally, take any
size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from cnnjax.convert.io import ConvertError, load_state_dict, save_state_dict
from cnnjax.convert.mapping import spec_for, supported_models


def _model_and_template(state: Mapping[str, Any], model_name: str, knobs: dict) -> tuple[Any, dict]:
    """The module for `state` (num_classes from its last linear layer) and its abstract variables."""
    import jax
    import jax.numpy as jnp

    from cnnjax import models
    from cnnjax.convert import mapping

    spec = spec_for(model_name)
    for knob, fixed in spec.knobs.items():
        if knob in knobs and knobs[knob] != fixed:
            raise ConvertError(f"{model_name} has {knob}={fixed!r} in torchvision; got {knob}="
                               f"{knobs[knob]!r} (pick the matching model name, e.g. vgg11 or vgg11_bn)")
    head = f"{mapping.module_to_torch((spec.head,))}.weight"
    if head not in state or np.ndim(state[head]) != 2:
        held = ", ".join(sorted(state)[:4]) + (", ..." if len(state) > 4 else "")
        raise ConvertError(f"state dict does not fit {model_name}: it needs a 2-D {head!r} "
                           f"(num_classes x features) to infer the number of classes; it holds "
                           f"{len(state)} entries ({held or 'none'})")
    if spec.optional_heads and "aux_heads" not in knobs:
        # torchvision's GoogLeNet saved with aux_logits=False has no aux1.*/aux2.* entries.
        knobs["aux_heads"] = any(k.startswith(spec.optional_heads) for k in state)
    module = models.build(spec.model, num_classes=int(np.shape(state[head])[0]),
                          **{**knobs, **spec.knobs})
    shape, _ = models.natural_input(spec.model)
    x = jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    template = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), x)
    return module, template


def torch_to_variables(state_dict: Mapping[str, Any], model_name: str, **knobs: Any) -> dict:
    """cnnjax variables {'params', 'batch_stats'} (float32 numpy leaves) for
    models.build(spec model, num_classes=rows of the last linear weight, **knobs) from a torch
    state dict with torchvision's names.

    One-line ConvertError for an unknown model, a knob that contradicts the model (vgg11 with
    norm='batch'), or missing keys, unexpected keys and shape mismatches (naming the first few).
    BN num_batches_tracked entries are ignored."""
    from cnnjax.convert import mapping

    _, template = _model_and_template(state_dict, model_name, dict(knobs))
    return mapping.from_torch(state_dict, template, spec_for(model_name), model_name)


def variables_to_torch(variables: Mapping[str, Any], model_name: str) -> dict[str, np.ndarray]:
    """The torch state dict (torchvision names, OIHW convolutions, (out, in) linear weights,
    num_batches_tracked = 0) of a supported model's cnnjax variables; the exact inverse of
    torch_to_variables."""
    from cnnjax.convert import mapping

    return mapping.to_torch(variables, spec_for(model_name))


def load_weights(path: Any, model_name: str, **knobs: Any) -> tuple[Any, dict]:
    """(flax module, variables) for the weights file `path` (.pth/.pt, .safetensors, .npz) loaded
    into `model_name`; apply as module.apply(variables, x, train=False) with x NHWC."""
    from cnnjax.convert import mapping

    state = load_state_dict(path)
    module, template = _model_and_template(state, model_name, dict(knobs))
    return module, mapping.from_torch(state, template, spec_for(model_name), model_name)


def main(argv: list[str] | None = None) -> int:
    """`python -m cnnjax.convert export|import ...`; see cnnjax.convert.cli."""
    from cnnjax.convert import cli

    return cli.main(argv)


__all__ = ["load_state_dict", "load_weights", "main", "save_state_dict", "supported_models",
           "torch_to_variables", "variables_to_torch"]
