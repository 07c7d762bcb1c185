"""The sweep backends: local and Slurm are two implementations of one interface, chosen by name; a
third is one object and one entry in BACKENDS; the sweep modules import each other without a cycle."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
from test_import_cycles import cycles, import_graph
from test_sweep_tool import POINTS, sweep_config

from cnnjax import cli
from cnnjax.sweep import backends, local, slurm


def test_local_and_slurm_are_the_registered_backends():
    assert backends.BACKENDS == {"local": local.BACKEND, "slurm": slurm.BACKEND}
    assert backends.DEFAULT == "local"
    for backend in backends.BACKENDS.values():
        assert isinstance(backend.description, str) and isinstance(backend.absolute_paths, bool)
        for method in ("add_arguments", "check", "run"):
            assert callable(getattr(backend, method))


@dataclasses.dataclass
class HostList:
    """A third backend as a test would write it: points 'run' on a list of hosts (recorded only)."""

    name: str = "ssh"
    description: str = "run the points over ssh on --hosts"
    absolute_paths: bool = True
    calls: list = dataclasses.field(default_factory=list)

    def add_arguments(self, parser: argparse.ArgumentParser) -> list[str]:
        parser.add_argument("--hosts", default="", help="comma-separated host names")
        return ["hosts"]

    def check(self, args: argparse.Namespace) -> None:
        if not args.hosts:
            raise cli.UserError("--hosts needs at least one host")

    def run(self, plan, sweep_dir, config_spec, base, args) -> int:
        self.calls.append((plan, sweep_dir, config_spec, base, args.hosts.split(",")))
        return 0


def test_a_third_backend_is_one_registration(tmp_path, monkeypatch, capsys):
    hosts = HostList()
    monkeypatch.setitem(backends.BACKENDS, hosts.name, hosts)
    config = sweep_config(tmp_path, POINTS)
    out = tmp_path / "out"
    argv = ["train", config, "--sweep", "--workdir", str(out), "--config.num_steps=8"]
    assert cli.main([*argv, "--hosts", "a,b"]) == 2  # its option, without choosing it
    assert capsys.readouterr().err == "error: --hosts needs --ssh\n"
    assert cli.main([*argv, "--backend", "ssh"]) == 2  # its own check
    assert capsys.readouterr().err == "error: --hosts needs at least one host\n"
    assert hosts.calls == [] and not out.exists()
    assert cli.main([*argv, "--hosts", "a,b", "--ssh"]) == 0
    (plan, sweep_dir, spec, base, names), = hosts.calls
    assert names == ["a", "b"] and base == ["num_steps=8"] and spec == config
    assert len(plan) == len(POINTS) and sweep_dir == out
    # absolute_paths: the commands name the folders absolutely, to run in another directory
    assert all(run.workdir.is_absolute() and str(run.workdir) in run.command for run in plan)
    assert cli.main([*argv, "--hosts", "a", "--hosts-x"]) == 2  # a misspelt option stays refused
    capsys.readouterr()
    assert cli.main([*argv, "--backend", "shh"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown sweep backend 'shh'; did you mean 'ssh'?")


@pytest.mark.parametrize("inside_functions", [False, True])
def test_the_sweep_modules_import_each_other_without_a_cycle(inside_functions):
    graph = import_graph(inside_functions=inside_functions)
    sweep = {m: {t for t in targets if t.startswith("cnnjax.sweep")}
             for m, targets in graph.items() if m.startswith("cnnjax.sweep")}
    assert cycles(sweep) == []
