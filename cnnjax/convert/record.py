"""What a weights file says it is: the record `convert import` writes beside the variables, and
the rules that turn a file, a model name and requested knobs into the model to build.

An imported .npz (written by `convert import`) holds
    __cnnjax__                          a JSON string {"format": 1, "model": NAME, "knobs": {...}}
    params/<module path>/<leaf>, ...    the cnnjax variables (batch_stats/... likewise)
    torch/<torch name>                  torch's buffers with no cnnjax variable, as they were
                                        (each batch norm's num_batches_tracked)
"knobs" are num_classes and every knob of the model except FREE_KNOBS, with the values the weights
were imported for, so a loader builds that model whatever cnnjax's defaults become. Files written
before the record (the variables alone) still load: the model name comes from the caller (--model)
and knobs a state dict cannot tell (googlenet_torchvision's transform_input) must be passed.
"""

from __future__ import annotations

import ast
import json
import pathlib
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np

from cnnjax.convert import mapping
from cnnjax.convert.io import ConvertError, write_then_rename

RECORD_KEY = "__cnnjax__"
BUFFER_PREFIX = "torch/"
FORMAT = 1
# Knobs that choose how the computation runs, not what it computes in evaluation (the convolution
# implementation, the float precision, batch-statistics syncing and dropout, which are training-only):
# not recorded, and free to set when the weights are loaded.
FREE_KNOBS = frozenset({"conv_impl", "dtype", "bn_stats", "dropout_rate", "aux_dropout_rate"})
_COLLECTIONS = ("params/", "batch_stats/")


def write_imported(path: pathlib.Path, record: Mapping[str, Any], variables: Mapping,
                   buffers: Mapping[str, np.ndarray]) -> pathlib.Path:
    """Writes the record, the variables (one array per 'params/conv1/kernel' path) and torch's
    buffers to the .npz `path` (write, then rename)."""
    arrays = {RECORD_KEY: np.array(json.dumps(dict(record), sort_keys=True)),
              **flatten(variables),
              **{BUFFER_PREFIX + name: np.asarray(value) for name, value in buffers.items()}}

    def write(f: BinaryIO) -> None:
        np.savez(f, **arrays)

    return write_then_rename(path, write)


# ---------------------------------------------------------------------------------------------------
# Pure functions
# ---------------------------------------------------------------------------------------------------

def is_imported(arrays: Mapping[str, Any]) -> bool:
    """True for the arrays of an .npz written by `convert import` (with or without a record), as
    against a state dict in torch names."""
    return RECORD_KEY in arrays or any(name.startswith(_COLLECTIONS) for name in arrays)


def split_imported(arrays: Mapping[str, Any], source: str
                   ) -> tuple[dict | None, dict, dict[str, np.ndarray]]:
    """(record or None for a file written before records, nested variables, torch buffers) of
    the arrays of an imported .npz; one-line ConvertError for a record that cannot be read."""
    record = None
    if RECORD_KEY in arrays:
        try:
            record = json.loads(str(np.asarray(arrays[RECORD_KEY])[()]))
            ok = (isinstance(record, dict) and isinstance(record.get("model"), str)
                  and isinstance(record.get("knobs"), dict))
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise ConvertError(f"{source}: its {RECORD_KEY} record is not the JSON object "
                               f"{{'format', 'model', 'knobs'}} convert import writes")
        if record.get("format", FORMAT) > FORMAT:
            raise ConvertError(f"{source} was written in record format {record['format']}; this "
                               f"cnnjax reads format {FORMAT} and older: update cnnjax")
    variables: dict = {}
    buffers = {}
    for name, value in arrays.items():
        if name.startswith(BUFFER_PREFIX):
            buffers[name[len(BUFFER_PREFIX):]] = np.asarray(value)
        elif name.startswith(_COLLECTIONS):
            *parents, leaf = name.split("/")
            node = variables
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = np.asarray(value)
        elif name != RECORD_KEY:
            raise ConvertError(f"{source}: entry {name!r} is neither a variable (params/..., "
                               f"batch_stats/...), a torch buffer ({BUFFER_PREFIX}...) nor the record")
    return record, variables, buffers


def flatten(tree: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
    """{'params': {'conv1': {'kernel': a}}} -> {'params/conv1/kernel': a}."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}/"))
        else:
            out[name] = np.asarray(value)
    return out


def make_record(model_name: str, knobs: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict:
    """The record of weights imported into `model_name` built with `knobs` (num_classes included):
    every knob of the model (`defaults`: the registry's) except FREE_KNOBS, with its value."""
    stated = {k: knobs.get(k, v) for k, v in defaults.items() if k not in FREE_KNOBS}
    return {"format": FORMAT, "model": model_name,
            "knobs": {"num_classes": int(knobs["num_classes"]), **stated}}


def parse_knob(text: str) -> tuple[str, Any]:
    """'dtype=bfloat16' -> ('dtype', 'bfloat16'); values are Python literals where they parse."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConvertError(f"--knob takes KEY=VALUE (e.g. --knob dtype=bfloat16); got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def model_name_of(record: Mapping | None, requested: str | None, source: str) -> str:
    """The converter model name: the recorded one, which a requested one must equal, or the
    requested one for a file without a record."""
    if record is None:
        if requested is None:
            raise ConvertError(f"{source} does not record its model (it was written before weight "
                               f"files recorded one, or is a state dict): pass --model NAME")
        return requested
    if requested is not None and requested != record["model"]:
        raise ConvertError(f"{source} holds {record['model']} weights (recorded at import); "
                           f"--model {requested} contradicts it: drop --model or name "
                           f"{record['model']}")
    return record["model"]


def resolve_knobs(model_name: str, spec: mapping.Spec, determined: Mapping[str, tuple[Any, str]],
                  requested: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The knobs to build `model_name` with (num_classes included).

    determined: what the file or torch module says, {knob: (value, where it was read)}; a requested
    knob that contradicts one (except FREE_KNOBS, which the request sets) is a one-line
    ConvertError, as is a knob of spec.unstated that neither says."""
    for knob, value in requested.items():
        if knob in determined and knob not in FREE_KNOBS and determined[knob][0] != value:
            known, where = determined[knob]
            raise ConvertError(f"{source} holds {model_name} with {knob}={known!r} ({where}); "
                               f"--knob {knob}={value!r} contradicts it: drop the flag")
    knobs = {k: v for k, (v, _) in determined.items()}
    knobs.update(requested)
    for knob, (_, hint) in spec.unstated.items():
        if knob not in knobs:
            raise ConvertError(f"{source} does not say {model_name}'s {knob} (a state dict cannot): "
                               f"pass --knob {knob}=True or --knob {knob}=False ({hint})")
    return knobs
