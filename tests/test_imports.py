"""The import graph of ``kcv/`` has no cycle (docs/design.md: the package layout).

Every module is parsed with :mod:`ast` — imports at module level and inside functions,
since a function-level import only hides a cycle, it does not remove it — and the graph of
``kcv`` modules is searched for a cycle. No module is imported, so this runs in a blink.

Edges: ``import kcv.a.b`` and ``from kcv.a import b`` (``b`` a submodule) point to
``kcv.a.b``; ``from kcv.a import name`` (not a module) points to ``kcv.a``. A package's
``__init__`` counts as the package itself. Importing ``kcv.a.b`` also runs ``kcv/a/__init__``,
but that edge is left out: ``kcv.a.b`` importing its sibling ``kcv.a.c`` while ``kcv.a``
imports ``kcv.a.b`` is not a cycle of meaning, and an ``__init__`` that imports submodules
(to register them) would otherwise put every submodule on a loop with it.

Not seen: ``importlib`` imports by computed name. The one there is is the registry's plugin
loading (``kcv.registry._ensure_loaded`` imports ``kcv.models``, whose family packages
import every file in them, each of which imports ``kcv.registry`` to register itself): by
then the registry module is complete, so the loop is the registry pattern, not an
import-order hazard.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kcv"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _statements(tree: ast.Module, top_level_only: bool):
    """Import statements anywhere in ``tree``, or only those run at import time (outside
    functions; ``if``/``try`` blocks at module level count)."""
    if not top_level_only:
        return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    found, todo = [], list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            todo += [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)]
    return found


def imported_names(name: str, path: Path, modules, top_level_only: bool = False) -> set[str]:
    """Every module ``name`` imports (``from kcv.a import b`` is ``kcv.a.b`` if that is a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in _statements(tree, top_level_only):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
            continue
        source = _absolute(node, name, path.name == "__init__.py")
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            found.add(sub if sub in modules else source)
    return found


def imports_of(name: str, path: Path, modules, top_level_only: bool = False) -> set[str]:
    """The ``kcv`` modules ``name`` imports (anywhere in its source by default)."""
    deps = set()
    for target in imported_names(name, path, modules, top_level_only):
        while target and target not in modules:  # `import kcv.a.b` used as an attribute path
            target = target.rpartition(".")[0]
        if target.startswith("kcv") and target != name:
            deps.add(target)
    return deps


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or ``None`` (iterative DFS)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_graph_sees_function_level_and_submodule_imports():
    graph = import_graph()
    assert len(graph) > 50
    # `from kcv.runtime import runners` (a submodule) inside a function of kcv.explain
    assert "kcv.runtime.predict" in graph["kcv.explain"]
    assert "kcv.contracts" in graph["kcv.runs"]


def test_find_cycle_reports_the_loop():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_kcv():
    cycle = find_cycle(import_graph())
    if cycle:
        pytest.fail("import cycle: " + " -> ".join(cycle))


def test_runtime_imports_no_tensorflow_at_module_level():
    """Running an exported file must not need TensorFlow or Keras at import time (edge
    devices): no module of ``kcv.runtime``, nor any ``kcv`` module it imports at module level,
    imports them outside a function; package ``__init__`` files on the way count. (The root
    ``kcv/__init__`` is left out: it is not the runtime's to change.)"""
    modules = all_modules()
    todo = [m for m in modules if m.startswith("kcv.runtime")]
    seen = {}
    while todo:
        name = todo.pop()
        names = imported_names(name, modules[name], modules, top_level_only=True)
        heavy = sorted(n for n in names if n.split(".")[0] in ("tensorflow", "keras"))
        assert not heavy, f"{name} (reached from kcv.runtime via {seen.get(name)}) imports {heavy} at module level"
        deps = imports_of(name, modules[name], modules, top_level_only=True)
        parents = {name.rsplit(".", i)[0] for i in range(1, name.count("."))}  # their __init__ runs first
        for dep in deps | parents:
            if dep != "kcv" and dep not in seen:
                seen[dep] = name
                todo.append(dep)
