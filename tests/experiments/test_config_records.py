"""Each experiment's README command still resolves to the configs its results were measured with.

experiments/NAME/resolved_configs.json records, for every sweep point of every
`./launch.sh experiments/NAME/config.py[:ARG] --sweep ...` command in NAME's README.md, the resolved
config as `train` resolves it (the config file, the command's --config overrides, then the point's),
flattened to dotted keys. The test resolves them again and compares every recorded key: a change to an
experiment's config, to configs/ablation_base.py, or to a default that any of them inherits (a model
knob's, say) makes it fail. Keys added to cnnjax after the recording are not compared: a new key's
default must keep the old behaviour, and the first change away from it is caught here once recorded.
After re-measuring, re-record on purpose with

    .venv/bin/python tests/experiments/test_config_records.py --write
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
COMMAND = re.compile(r"\./launch\.sh (experiments/(\w+)/config\.py(?::[\w,]+)?) --sweep([^`\n]*)")


def readme_commands(name: str) -> list[tuple[str, list[str]]]:
    """(config spec, --config overrides) of every sweep command of NAME's config in its README."""
    found = []
    for spec, owner, rest in COMMAND.findall((EXPERIMENTS / name / "README.md").read_text()):
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


def resolved_configs(name: str) -> dict[str, dict]:
    """'<spec> [overrides] | <point>' -> the flat resolved config, for every README sweep point."""
    from cnnjax.train import config_io

    configs = {}
    for spec, overrides in readme_commands(name):
        path, _, arg = spec.partition(":")
        module = config_io.load_module(str(REPO / path))
        for point in module.get_sweep(arg or None):
            texts = [f"{k}={v}" for k, v in point.items()]
            config = config_io.resolve_config(str(REPO / spec), [*overrides, *texts])
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


@pytest.mark.parametrize("name", EXPERIMENTS_WITH_CONFIGS)
def test_readme_commands_resolve_to_the_recorded_configs(name):
    recorded = json.loads((EXPERIMENTS / name / RECORD_FILE).read_text())
    now = resolved_configs(name)
    assert sorted(now) == sorted(recorded), "the README's sweep commands or points changed"
    for label, config in recorded.items():
        changed = {k: (v, now[label].get(k, "<missing>")) for k, v in config.items()
                   if now[label].get(k, "<missing>") != v}
        assert not changed, f"{label}: recorded -> now {changed}"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    for experiment in EXPERIMENTS_WITH_CONFIGS:
        text = json.dumps(resolved_configs(experiment), indent=1, sort_keys=True)
        (EXPERIMENTS / experiment / RECORD_FILE).write_text(text + "\n")
        print(f"wrote experiments/{experiment}/{RECORD_FILE}")
