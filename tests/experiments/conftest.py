"""Helpers for the experiment tests: import an experiment's script or config by path (experiments/
is not a package) and resolve every point of its sweep against its config."""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "experiments"


def load_module(relative: str) -> ModuleType:
    """experiments/<relative> imported as a module (cached in sys.modules under a unique name)."""
    path = EXPERIMENTS / relative
    name = "cnnjax_experiment_" + relative.replace("/", "_").removesuffix(".py")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def param_count():
    """param_count(model, (N, H, W, C)) -> the model's parameter count, from jax.eval_shape
    (nothing allocated)."""
    import jax
    import jax.numpy as jnp

    def count(model, shape) -> int:
        x = jax.ShapeDtypeStruct(shape, jnp.float32)
        params = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)["params"]
        return sum(int(a.size) for a in jax.tree.leaves(params))
    return count


@pytest.fixture
def experiment_module():
    """experiment_module('parameters/run.py') -> the imported script."""
    return load_module


@pytest.fixture
def sweep_configs(shared_data):
    """Skipped where ../shared is absent (the experiments read its Fashion-MNIST when validated).
    sweep_configs('lenet5_mnist', arg=None) -> [(point, resolved ConfigDict)] for every point
    of experiments/<name>/config.py's get_sweep, each validated as `./launch.sh --sweep` does."""
    from cnnjax import config as config_io
    from cnnjax.sweep import plan, points

    def resolve(name: str, arg: str | None = None) -> list:
        spec = str(EXPERIMENTS / name / "config.py") + (f":{arg}" if arg else "")
        config = config_io.load_config(spec)
        sweep = plan.load_points(spec)
        names = points.point_names(sweep)
        return [(p, plan.validated_config(config, [], p, i, n))
                for i, (p, n) in enumerate(zip(sweep, names, strict=True))]

    return resolve


@pytest.fixture
def module_sweep(shared_data):
    """Skipped where ../shared is absent, as sweep_configs. module_sweep(config_module,
    arg=None) -> [resolved ConfigDict] for every point of an already imported config module's
    get_sweep (so that a test may first monkeypatch the module)."""
    from cnnjax.sweep import plan, points

    def resolve(module, arg: str | None = None) -> list:
        config = module.get_config(arg)
        sweep = module.get_sweep(arg)
        names = points.point_names(sweep)
        return [plan.validated_config(config, [], p, i, n)
                for i, (p, n) in enumerate(zip(sweep, names, strict=True))]

    return resolve
