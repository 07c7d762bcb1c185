"""Each experiment's README command still resolves to the configs its results were measured with.

experiments/NAME/resolved_configs.json records, for every sweep point of every
`./launch.sh experiments/NAME/config.py[:ARG] --sweep ...` command in NAME's README.md, the resolved
config as `train` resolves it (the config file, the command's --config overrides, then the point's),
flattened to dotted keys. The test resolves them again and compares every recorded key: a change to an
experiment's config, to configs/ablation_base.py, or to a default that any of them inherits (a model
knob's, say) makes it fail. Keys added to cnnjax after the recording are not compared: a new key's
default must keep the old behaviour, and the first change away from it is caught here once recorded.
A sweep whose rates are picked by a tuning step is recorded as waiting until its tuned_lr.json
exists; the record then fails until it is re-recorded with the results. The exception is
NUMERICS_KEYS, which change the numbers without changing what is trained (the XLA:CPU convolution
backend; the data pipeline, whose tf.data and device paths draw other orders): every record must
name them, since a result measured before they were config keys cannot say which numerics it had
(it took whatever launch.sh set that day).
After re-measuring, re-record on purpose with

    .venv/bin/python tests/experiments/test_config_records.py --write [NAME ...]   # default: all
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
RECORD_FILE = "resolved_configs.json"
NUMERICS_KEYS = ("xla_cpu_conv", "data.pipeline")
COMMAND = re.compile(r"\./launch\.sh (experiments/(\w+)/config\.py(?::[\w,]+)?) --sweep([^`\n]*)")


def readme_commands(name: str, experiments: pathlib.Path = EXPERIMENTS) -> list[tuple[str, list[str]]]:
    """(config spec, --config overrides) of every sweep command of NAME's config in its README."""
    found = []
    for spec, owner, rest in COMMAND.findall((experiments / name / "README.md").read_text()):
        overrides = [t[len("--config."):] for t in shlex.split(rest) if t.startswith("--config.")]
        if owner == name and (spec, overrides) not in found:
            found.append((spec, overrides))
    return found


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'model': {'name': 'x'}} -> {'model.name': 'x'}, tuples as lists (as config.json has them)."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def resolved_configs(name: str, root: pathlib.Path = REPO) -> dict[str, dict]:
    """'<spec> [overrides] | <point>' -> the flat resolved config, for every README sweep point
    (`root`: the folder the README's paths are relative to, holding experiments/)."""
    from cnnjax import config as config_io
    from cnnjax.errors import UserError

    configs = {}
    for spec, overrides in readme_commands(name, root / "experiments"):
        path, _, arg = spec.partition(":")
        module = config_io.load_module(str(root / path))
        try:
            sweep = module.get_sweep(arg or None)
        except UserError as e:  # a sweep of rates still to be tuned: recorded as waiting for them
            if "run the tuning sweep" not in str(e):
                raise
            configs[f"{' '.join([spec, *overrides])} | waiting for its tuning step"] = {}
            continue
        for point in sweep:
            texts = [f"{k}={v}" for k, v in point.items()]
            config = config_io.resolve_config(str(root / spec), [*overrides, *texts])
            label = f"{' '.join([spec, *overrides])} | {','.join(texts)}"
            configs[label] = json.loads(json.dumps(flatten(config.to_dict()), default=list))
    return configs


EXPERIMENTS_WITH_CONFIGS = sorted(p.parent.name for p in EXPERIMENTS.glob("*/config.py"))


def test_every_experiment_documents_a_sweep_command():
    for name in EXPERIMENTS_WITH_CONFIGS:
        assert readme_commands(name), f"experiments/{name}/README.md names no sweep command"


def test_no_experiment_loads_another_experiments_config():
    for path in EXPERIMENTS.glob("*/config.py"):
        text = path.read_text()
        others = [n for n in EXPERIMENTS_WITH_CONFIGS if n != path.parent.name and f'"{n}"' in text]
        assert "parents[1]" not in text and not others, path


def record_differences(recorded: dict[str, dict], now: dict[str, dict]) -> list[str]:
    """One line per way the README commands' configs (`now`) differ from the `recorded` ones: a point
    added or gone, a recorded key whose value changed, a numerics key the record does not name."""
    if sorted(now) != sorted(recorded):
        return [f"the README's sweep commands or points changed: recorded {sorted(recorded)}, "
                f"now {sorted(now)}"]
    problems = []
    for label, config in recorded.items():
        if not config and not now[label]:
            continue  # waiting for its tuning step, then and now
        changed = {k: (v, now[label].get(k, "<missing>")) for k, v in config.items()
                   if now[label].get(k, "<missing>") != v}
        changed.update({k: ("<not recorded>", now[label].get(k, "<missing>"))
                        for k in NUMERICS_KEYS if k not in config})
        if changed:
            problems.append(f"{label}: recorded -> now {changed}")
    return problems


@pytest.mark.parametrize("name", EXPERIMENTS_WITH_CONFIGS)
def test_readme_commands_resolve_to_the_recorded_configs(name):
    recorded = json.loads((EXPERIMENTS / name / RECORD_FILE).read_text())
    assert record_differences(recorded, resolved_configs(name)) == []


def test_a_record_measured_under_other_numerics_fails(tmp_path):
    """A fabricated experiment whose results were recorded with YNNPACK convolutions, while its
    README command now resolves to Eigen's (the default): the comparison names the key."""
    folder = tmp_path / "experiments" / "fake"
    folder.mkdir(parents=True)
    (folder / "config.py").write_text(
        "from cnnjax.sweep import product\n"
        f"from cnnjax.train.config_io import load_config\n\n"
        "def get_config(arg=None):\n"
        f"    return load_config({str(REPO / 'tests' / 'helpers' / 'tiny_config.py')!r})\n\n"
        "def get_sweep(arg=None):\n"
        "    return product(seed=[0])\n")
    (folder / "README.md").write_text("    ./launch.sh experiments/fake/config.py --sweep\n")
    now = resolved_configs("fake", tmp_path)
    [label] = now
    assert record_differences(now, now) == []
    measured = {label: {**now[label], "xla_cpu_conv": "ynnpack"}}
    [problem] = record_differences(measured, now)
    assert "'xla_cpu_conv': ('ynnpack', 'eigen')" in problem
    unnamed = {label: {k: v for k, v in now[label].items() if k != "xla_cpu_conv"}}
    [problem] = record_differences(unnamed, now)  # recorded before the key existed: unknown numerics
    assert "'xla_cpu_conv': ('<not recorded>', 'eigen')" in problem


if __name__ == "__main__" and sys.argv[1:2] == ["--write"]:
    for experiment in sys.argv[2:] or EXPERIMENTS_WITH_CONFIGS:
        text = json.dumps(resolved_configs(experiment), indent=1, sort_keys=True)
        (EXPERIMENTS / experiment / RECORD_FILE).write_text(text + "\n")
        print(f"wrote experiments/{experiment}/{RECORD_FILE}")
