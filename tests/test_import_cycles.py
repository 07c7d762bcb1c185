"""cnnjax's modules import each other without a cycle: the layers (ops, models, data, config, train,
tools) are a layering, not a knot held together by imports inside functions.

Read with `ast`, not by importing: an edge is an import of one cnnjax module by another
(`import cnnjax.a.b`, `from cnnjax.a import b` where b is a module, `from cnnjax.a.b import name`,
relative imports resolved). Two graphs are checked: the module-level imports (what runs when a module
loads), and every import, those inside functions included. An import put inside a function is fine for
a heavy dependency (JAX, TensorFlow) but must not hide a cycle between cnnjax's own modules: the second
graph must be acyclic too. Imports under `if TYPE_CHECKING:` never run and are left out of both. The
implicit import of a parent package is left out, as Python resolves it before the child.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "cnnjax"


def module_names(root: pathlib.Path = ROOT) -> dict[str, pathlib.Path]:
    """Every module of the package: dotted name -> file (a package is its __init__.py)."""
    names = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module, *, inside_functions: bool) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module loads (top level, and inside top-level if/try blocks), or with
    `inside_functions` every import in the file; never those under `if TYPE_CHECKING:`."""
    found, pending = [], list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
        elif isinstance(node, ast.If | ast.Try):
            pending.extend(ast.iter_child_nodes(node))
        elif inside_functions:
            pending.extend(ast.iter_child_nodes(node))
    return found


def import_graph(root: pathlib.Path = ROOT, *, inside_functions: bool = False) -> dict[str, set[str]]:
    """module -> the cnnjax modules it imports (at module level, or anywhere with inside_functions)."""
    modules = module_names(root)
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets = set()
        tree = ast.parse(path.read_text(), str(path))
        for node in _imports(tree, inside_functions=inside_functions):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
                continue
            base = node.module or ""
            if node.level:  # relative: from the package of this module, `level` steps up
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                targets.add(child if child in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_planted_cycle(tmp_path):
    # The finder itself, on a package with a -> b -> c -> a (absolute, relative and from-imports),
    # an import only under TYPE_CHECKING (never counted) and one inside a function (counted only in
    # the graph of every import, where it closes the cycle d <-> e).
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import cnnjax.sub.b\n")
    (pkg / "sub" / "b.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("from cnnjax.a import something\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from cnnjax import e\n")
    (pkg / "e.py").write_text("import cnnjax.d\ndef f():\n    from cnnjax import d\n"
                              "class C:\n    def g(self):\n        from . import a\n")
    graph = import_graph(tmp_path)
    assert graph["cnnjax.a"] == {"cnnjax.sub.b"}
    assert graph["cnnjax.sub.b"] == {"cnnjax.sub.c"}
    assert graph["cnnjax.d"] == set() and graph["cnnjax.e"] == {"cnnjax.d"}
    assert cycles(graph) == [["cnnjax.a", "cnnjax.sub.b", "cnnjax.sub.c"]]
    (pkg / "d.py").write_text("def f():\n    import cnnjax.e\n")
    every = import_graph(tmp_path, inside_functions=True)
    assert every["cnnjax.e"] == {"cnnjax.d", "cnnjax.a"}
    assert cycles(every) == [["cnnjax.a", "cnnjax.sub.b", "cnnjax.sub.c"], ["cnnjax.d", "cnnjax.e"]]


def _described(found: list[list[str]]) -> str:
    return "import cycles among cnnjax's modules:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_cnnjax_has_no_import_cycle_at_module_level():
    found = cycles(import_graph())
    assert not found, _described(found)


def test_cnnjax_has_no_import_cycle_hidden_inside_functions():
    found = cycles(import_graph(inside_functions=True))
    assert not found, _described(found)


if __name__ == "__main__":  # python tests/test_import_cycles.py: every cycle, one per line
    for component in cycles(import_graph(inside_functions=True)):
        print(" <-> ".join(component))
