"""Each experiment's README command still resolves to the configs its results were measured with.

experiments/NAME/config.sha256 holds the sha256 of every sweep point's resolved config (JSON with
sorted keys, as `train` resolves it: the config file, the command's --config overrides, then the
point's) for every `./launch.sh experiments/NAME/config.py[:ARG] --sweep ...` command in NAME's
README.md. A change to an experiment's config, to configs/ablation_base.py or to a default that any of
them inherits makes this test fail: re-measure, then re-record on purpose with

    .venv/bin/python tests/experiments/test_config_hashes.py --write
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import re
import shlex
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"
HASH_FILE = "config.sha256"
HEADER = ("# sha256 of each sweep point's resolved config (JSON, sorted keys) for the commands of "
          "README.md;\n# re-record on purpose: .venv/bin/python tests/experiments/test_config_hashes.py "
          "--write\n")
COMMAND = re.compile(r"\./launch\.sh (experiments/(\w+)/config\.py(?::[\w,]+)?) --sweep([^`\n]*)")


def readme_commands(name: str) -> list[tuple[str, list[str]]]:
    """(config spec, --config overrides) of every sweep command of NAME's config in its README."""
    found = []
    for spec, owner, rest in COMMAND.findall((EXPERIMENTS / name / "README.md").read_text()):
        overrides = [t[len("--config."):] for t in shlex.split(rest) if t.startswith("--config.")]
        if owner == name and (spec, overrides) not in found:
            found.append((spec, overrides))
    return found


def point_text(point: dict) -> list[str]:
    """A sweep point as override texts that config_io reads back to the same values."""
    return [f"{k}={v}" for k, v in point.items()]


def resolved_hashes(name: str) -> list[str]:
    """'<sha256>  <spec> [overrides] | <point>' for every point of every README command."""
    from cnnjax.train import config_io

    lines = []
    for spec, overrides in readme_commands(name):
        path, _, arg = spec.partition(":")
        module = config_io.load_module(str(REPO / path))
        points = module.get_sweep(arg or None)
        for point in points:
            texts = point_text(point)
            config = config_io.resolve_config(str(REPO / spec), [*overrides, *texts])
            text = json.dumps(config.to_dict(), sort_keys=True, default=list)
            digest = hashlib.sha256(text.encode()).hexdigest()
            lines.append(f"{digest}  {' '.join([spec, *overrides])} | {','.join(texts)}")
    return lines


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
    recorded = (EXPERIMENTS / name / HASH_FILE).read_text().splitlines()
    recorded = [line for line in recorded if line and not line.startswith("#")]
    assert resolved_hashes(name) == recorded


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    for experiment in EXPERIMENTS_WITH_CONFIGS:
        (EXPERIMENTS / experiment / HASH_FILE).write_text(
            HEADER + "\n".join(resolved_hashes(experiment)) + "\n")
        print(f"wrote experiments/{experiment}/{HASH_FILE}")
