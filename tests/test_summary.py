"""The summary tool: the printed table and totals, argument parsing, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cnnjax import summary


def _run(capsys, *argv):
    rc = summary.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_vgg19_totals_and_dense_comparison(capsys):
    rc, out, err = _run(capsys, "vgg19")
    assert rc == 0 and err == ""
    assert "143,667,240 parameters" in out
    assert "(19.63 G)" in out
    assert "150,528 x 1024 = 154,140,672 weights" in out
    line = next(li for li in out.splitlines() if li.startswith("features_36 "))  # pool5
    assert line.split()[1:3] == ["Pool", "7x7x512"]
    assert line.split()[-2:] == ["268", "32"]  # receptive field and jump


def test_lenet_defaults_to_its_own_input(capsys):
    rc, out, _ = _run(capsys, "lenet5")
    assert rc == 0
    assert "lenet5 on 32x32x1 inputs, 10 classes" in out
    assert "61,706 parameters" in out
    c1 = next(li for li in out.splitlines() if li.startswith("c1 ")).split()
    assert c1[1:] == ["Conv", "28x28x6", "156", "117,600", "5", "1"]


def test_knobs_input_and_classes_are_honoured(capsys):
    rc, out, _ = _run(capsys, "resnet20", "--norm=none", "--input", "16x16x3",
                      "--num-classes=100")
    assert rc == 0
    assert "resnet20 on 16x16x3 inputs, 100 classes (norm=none)" in out
    assert "batch-norm" not in out  # no running statistics without BN
    rc, out, _ = _run(capsys, "mlp", "--hidden=300,100", "--input=28x28x1")
    assert rc == 0 and f"{(784 + 1) * 300 + (300 + 1) * 100 + (100 + 1) * 10:,} parameters" in out


@pytest.mark.parametrize(("argv", "mentions"), [
    (["resnet19"], "valid names"),
    (["resnet18", "--foo=1"], "valid knobs"),
    (["resnet18", "--input", "224x224"], "HxWxC"),
    (["resnet18", "--input=0x224x3"], "HxWxC"),
    (["resnet18", "--norm=lrn"], "'batch'"),
    (["lenet5", "--input=4x4x1"], "exceeds"),
    (["lenet5", "--num_classes=ten"], "num_classes"),
    (["lenet5", "--dtype"], "needs a value"),
    ([], "no MODEL"),
    (["lenet5", "vgg16"], "one MODEL"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv, mentions):
    rc, out, err = _run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and mentions in err


def test_parse_value():
    assert summary.parse_value("true") is True
    assert summary.parse_value("False") is False
    assert summary.parse_value("0.5") == 0.5
    assert summary.parse_value("1024,512") == (1024, 512)
    assert summary.parse_value("relu") == "relu"
    assert summary.parse_value("none") == "none"


def test_runs_as_a_module_without_tensorflow():
    code = ("import sys; from cnnjax import summary; rc = summary.main(['lenet5']); "
            "assert 'tensorflow' not in sys.modules; sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "61,706 parameters" in result.stdout


def test_googlenet_aux_heads_are_counted_but_not_listed(capsys):
    rc, out, _ = _run(capsys, "googlenet")
    assert rc == 0 and "13,378,280 parameters" in out
    aux = 2 * (1024 * 1000 + 1000 + 4 * 4 * 128 * 1024 + 1024 + 128) + 128 * (512 + 528)
    assert f"of which {aux:,} in layers that run only in training" in out
    assert "aux1" not in out


def _knob_lines(out: str) -> dict[str, list[str]]:
    """{knob: the values listed after its default} from the knob table the summary prints."""
    lines = out.split("knobs of ", 1)[1].splitlines()[1:]
    table = {}
    for line in lines:
        knob, rest = line.split(None, 1)
        _default, _, listed = rest.partition("  ")  # two spaces end the default column
        table[knob] = [v.strip() for v in listed.split("|")] if listed.strip() else []
    return table


def _evaluates(name: str, knobs: dict) -> bool:
    """Whether the model builds and its init traces on its natural input (jax.eval_shape: nothing
    is allocated), the way a run would use it."""
    import jax
    import jax.numpy as jnp

    from cnnjax import models

    shape, classes = models.natural_input(name)
    try:
        model = models.build(name, num_classes=classes, **knobs)
        jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                       jax.ShapeDtypeStruct((1, *shape), jnp.float32))
    except models.ModelError:
        return False
    return True


@pytest.mark.parametrize("name", ["resnet20", "lenet5"])
def test_listed_knob_values_are_exactly_those_the_model_accepts(name, capsys):
    from cnnjax import models

    rc, out, err = _run(capsys, name)
    assert rc == 0, err
    listed = _knob_lines(out)
    for knob, values in models.knob_choices(name).items():
        accepted = [repr(v) for v in values if _evaluates(name, {knob: v})]
        assert listed[knob] == accepted, knob
    if name == "resnet20":  # the CIFAR stem has no pool to choose, and basic blocks no stride_in_3x3
        assert listed["pool"] == ["'max'"] and listed["stride_in_3x3"] == ["True"]
