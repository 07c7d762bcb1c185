"""Every registered model keeps its parameter and batch-stat tree (paths and shapes) and its knobs.

Checkpoints, torchvision import/export (cnnjax/convert) and the experiments' recorded parameter
counts depend on the variable names, so refactoring the families must not move a single leaf.
tests/models/param_trees.json was written on the commit before the model families shared a base
class and a conv-norm-activation block, by

    .venv/bin/python tests/models/test_param_tree_stability.py --write

and lists, for every model at its defaults, the paths and shapes of the abstract variables of
init (jax.eval_shape: nothing allocated), and for one model of each family and block kind, with
each value of each structural knob (norm, pool, groups, shortcut, the booleans), a digest of that
listing, or 'refused' where the model did not accept the value then. The deeper variants of a
family (resnet101, vgg19, plain110, ...) repeat the blocks of the ones listed and are checked at
their defaults only, to keep the test near ten seconds.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import pytest

from cnnjax import models

FIXTURE = pathlib.Path(__file__).with_name("param_trees.json")
# Knobs whose values change which layers exist; activation, dtype and conv_impl do not.
STRUCTURAL = ("norm", "pool", "groups", "shortcut", "aux_heads", "naive_inception",
              "relu_logits", "zero_init_residual", "stride_in_3x3", "transform_input")
# The values each structural knob may take: every value any model accepted on the starting commit.
VALUES = {"norm": ("none", "lrn", "batch"), "pool": ("max", "avg", "strided_conv"),
          "groups": (1, 2), "shortcut": ("projection", "identity_pad", "none")}
VARIED = ("lenet5", "mlp", "allconv", "smallcnn", "alexnet", "alexnet_torchvision", "vgg_a",
          "vgg_a_lrn", "vgg_c", "googlenet", "googlenet_small", "googlenet_torchvision",
          "resnet18", "resnet50", "resnet20", "plain18", "plain20")


def settings(name: str) -> list[dict]:
    """The knob settings listed for `name`: the defaults, then one structural knob changed."""
    defaults = models.knobs(name)
    out = [{}]
    if name not in VARIED:
        return out
    for knob in STRUCTURAL:
        if knob not in defaults:
            continue
        values = VALUES.get(knob, (False, True))
        out += [{knob: v} for v in values if v != defaults[knob]]
    return out


def tree(name: str, knobs: dict) -> list[str] | str:
    """['collection/path/leaf shape', ...] of the model's variables, or 'refused' when build or
    init raises a one-line ModelError."""
    (h, w, c), classes = models.natural_input(name)
    try:
        model = models.build(name, num_classes=classes, **knobs)
        x = jax.ShapeDtypeStruct((1, h, w, c), jnp.float32)
        variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
    except models.ModelError:
        return "refused"
    leaves = jax.tree_util.tree_leaves_with_path(variables)
    return [f"{jax.tree_util.keystr(p, simple=True, separator='/')} {a.shape}" for p, a in leaves]


def digest(listing: list[str] | str) -> str:
    """'refused', or the number of leaves and the sha256 of the listing (a changed digest: rerun
    --write on both commits and diff the files)."""
    if isinstance(listing, str):
        return listing
    return f"{len(listing)} leaves sha256:{hashlib.sha256(chr(10).join(listing).encode()).hexdigest()}"


def listing(names: list[str]) -> dict:
    out = {}
    for name in names:
        first, *rest = settings(name)
        out[name] = {"knobs": json.loads(json.dumps(models.knobs(name))),
                     "defaults": tree(name, first),
                     "variants": [[knobs, digest(tree(name, knobs))] for knobs in rest]}
    return out


RECORDED = json.loads(FIXTURE.read_text()) if FIXTURE.exists() else {}


def test_the_same_models_are_registered():
    assert models.list_models() == sorted(RECORDED)


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_variables_and_knobs_are_unchanged(name):
    now, recorded = listing([name])[name], RECORDED[name]
    assert now["knobs"] == recorded["knobs"]
    assert now["defaults"] == recorded["defaults"]
    assert now["variants"] == recorded["variants"]


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    data = listing(models.list_models())
    tmp = FIXTURE.with_suffix(".json.tmp")
    # One line per model and knob setting: a reviewable diff when a name moves.
    tmp.write_text("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in data.items())
                   + "\n}\n")
    tmp.replace(FIXTURE)
