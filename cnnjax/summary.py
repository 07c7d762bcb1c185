"""Layer-by-layer summary of a model: output shapes, parameters, multiply-adds, receptive fields.

    ./launch.sh summary MODEL [--input 224x224x3] [--num_classes N] [--KNOB=VALUE ...]

examples:
    ./launch.sh summary resnet20
    ./launch.sh summary vgg16 --input 64x64x3 --num_classes 10 --norm=batch
    python -m cnnjax.summary resnet50 --dtype=bfloat16

Nothing is allocated or compiled (jax.eval_shape and a jaxpr), so VGG-19 prints in a second.
--input defaults to the size the model was designed for (32x32x1 for lenet5 and mlp, 32x32x3 for
allconv and the CIFAR ResNets, 224x224x3 otherwise) and --num_classes likewise (10 or 1000).
Knob values are Python literals (0.5, true, 1024,512) or plain strings (relu, batch). Below the table,
every knob of the model is listed with its default (the value a config gets unless it sets one, as
--config.model.KNOB=VALUE) and, where it takes a choice, the values this model accepts.
The counting lives in cnnjax.models.introspect; this module parses arguments and prints.
"""

from __future__ import annotations

import ast
import sys
import traceback

from cnnjax.errors import UserError, traceback_requested

USAGE = "usage: summary MODEL [--input HxWxC] [--num_classes N] [--KNOB=VALUE ...]"


class _UsageError(UserError):
    """A command line summary cannot use (one line, with the usage)."""


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """'224x224x3' -> (224, 224, 3)."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise _UsageError(f"--input must be HxWxC with positive integers, e.g. 224x224x3; "
                          f"got {text!r}")
    return tuple(int(p) for p in parts)


def parse_value(text: str):
    """A knob value: a Python literal where it is one (true/false as booleans), else the string."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_args(argv: list[str]) -> tuple[str, tuple[int, int, int] | None, int | None, dict]:
    """(model name, input shape or None, num_classes or None, knobs) from the command line."""
    name, shape, classes, knobs = None, None, None, {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            if name is not None:
                raise _UsageError(f"one MODEL expected, got {name!r} and {arg!r}; {USAGE}")
            name = arg
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if not args or args[0].startswith("--"):
                raise _UsageError(f"--{key} needs a value (--{key}=VALUE); {USAGE}")
            value = args.pop(0)
        key = key.replace("-", "_")
        if key == "input":
            shape = parse_input_shape(value)
        elif key == "num_classes":
            if not value.isdigit() or int(value) < 1:
                raise _UsageError(f"--num_classes must be a positive integer; got {value!r}")
            classes = int(value)
        else:
            knobs[key] = parse_value(value)
    if name is None:
        raise _UsageError(f"no MODEL given; {USAGE}")
    return name, shape, classes, knobs


def _dims(pair: tuple[int, int] | None) -> str:
    if pair is None:
        return "all"
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _scaled(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def format_summary(title: str, summary, dense_units: int = 1024) -> str:
    """The table, the totals and the dense-layer comparison as text."""
    from cnnjax.models import introspect

    width = max([len("layer"), *(len(r.name) for r in summary.rows)])
    header = (f"{'layer':<{width}}  {'kind':<10} {'output':>14} {'params':>13} "
              f"{'mult-adds':>15} {'RF':>7} {'jump':>5}")
    lines = [title, header, "-" * len(header)]
    for r in summary.rows:
        lines.append(f"{r.name:<{width}}  {r.kind:<10} {_shape(r.output_shape):>14} "
                     f"{r.params:>13,} {r.macs:>15,} {_dims(r.field):>7} {_dims(r.jump):>5}")
    lines.append("-" * len(header))
    state = f" (+{summary.state:,} batch-norm statistics)" if summary.state else ""
    lines.append(f"total: {summary.params:,} parameters{state}; "
                 f"{summary.macs:,} multiply-adds per image ({_scaled(summary.macs)}); "
                 f"output {', '.join(_shape(s) for s in summary.output_shapes)}")
    unlisted = summary.params - sum(r.params for r in summary.rows)
    if unlisted:
        lines.append(f"of which {unlisted:,} in layers that run only in training (not listed: "
                     f"auxiliary heads)")
    inputs = 1
    for d in summary.input_shape:
        inputs *= d
    weights = introspect.dense_layer_weights(summary.input_shape, dense_units)
    first = next((r for r in summary.rows if r.params), None)
    first_text = f"; this model's first layer ({first.name}) has {first.params:,}" if first else ""
    lines.append(f"dense comparison: a fully connected layer of {dense_units} units on the "
                 f"{_shape(summary.input_shape)} input has {inputs:,} x {dense_units} = "
                 f"{weights:,} weights{first_text}")
    return "\n".join(lines)


def format_knobs(name: str, chosen: dict, num_classes: int) -> str:
    """Every knob of model `name`: its default, the value `chosen` on the command line where one was,
    and the values this model accepts where the knob takes a choice (accepted_choices)."""
    from cnnjax import models

    defaults, choices = models.knobs(name), accepted_choices(name, chosen, num_classes)
    width = max(len(k) for k in defaults)
    lines = [f"knobs of {name} (--config.model.KNOB=VALUE in a run; default, then the values it "
             "accepts with the other knobs as here):"]
    for knob, default in defaults.items():
        value = f"{default!r}" + (f" (here {chosen[knob]!r})" if knob in chosen else "")
        allowed = " | ".join(repr(c) for c in choices.get(knob, ()))
        lines.append(f"  {knob:<{width}}  {value:<24} {allowed}".rstrip())
    return "\n".join(lines)


def accepted_choices(name: str, chosen: dict, num_classes: int) -> dict[str, tuple]:
    """{knob: the values of models.knob_choices(name) that model `name` accepts}, each tried with the
    other knobs as `chosen` (else their defaults). knob_choices is exact with the other knobs at
    their defaults; a value chosen for one knob can rule out values of another (zero_init_residual
    needs batch norm), so each value is tried by building: building runs the model's checks and
    allocates nothing."""
    from cnnjax import models

    accepted = {}
    for knob, values in models.knob_choices(name).items():
        accepted[knob] = tuple(v for v in values if _builds(name, {**chosen, knob: v}, num_classes))
    return accepted


def _builds(name: str, knobs: dict, num_classes: int) -> bool:
    from cnnjax import models

    try:
        models.build(name, num_classes=num_classes, **knobs)
    except models.ModelError:
        return False
    return True


def main(argv: list[str]) -> int:
    """Print the summary; one line on stderr and status 2 for a bad model, knob or input."""
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    from cnnjax import models
    from cnnjax.models import introspect

    try:
        name, shape, classes, knobs = parse_args(argv)
        natural_shape, natural_classes = models.natural_input(name)
        shape = shape or natural_shape
        classes = classes or natural_classes
        model = models.build(name, num_classes=classes, **knobs)
        summary = introspect.summarize(model, shape)
    except UserError as e:
        if traceback_requested():
            traceback.print_exc()
        print(f"summary: error: {e}", file=sys.stderr)
        return 2
    knob_text = ", ".join(f"{k}={v}" for k, v in knobs.items())
    title = (f"{name} on {_shape(shape)} inputs, {classes} classes"
             + (f" ({knob_text})" if knob_text else ""))
    print(format_summary(title, summary))
    print(format_knobs(name, knobs, classes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
