"""The service's layering: storage calls nothing up, and no import cycles.

Read from the source (every ``import``, also inside functions and under
``TYPE_CHECKING``), so a deferred import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import webhooks_service

ROOT = Path(webhooks_service.__file__).parent
PACKAGE = "webhooks_service"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p
        for p in ROOT.rglob("*.py")
        if "migrations" not in p.parts  # Alembic's scripts, loaded by path
    }


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # ``from pkg import mod`` depends on pkg.mod when it is a module
                targets = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                targets.append(base)
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith(PACKAGE) and target != name:
                    deps.add(target)
        graph[name] = deps
    # A package's __init__ is imported with any of its modules; it is not a dependency edge.
    return {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}


def test_storage_imports_nothing_from_core_delivery_or_api() -> None:
    upward = (f"{PACKAGE}.core", f"{PACKAGE}.delivery", f"{PACKAGE}.api")
    offending = {
        (module, dep)
        for module, deps in import_graph().items()
        if module.startswith(f"{PACKAGE}.storage")
        for dep in deps
        if dep.startswith(upward)
    }
    assert offending == set()


def test_only_the_api_and_the_commands_import_the_api() -> None:
    offending = {
        (module, dep)
        for module, deps in import_graph().items()
        if module.startswith((f"{PACKAGE}.core", f"{PACKAGE}.delivery", f"{PACKAGE}.storage"))
        for dep in deps
        if dep.startswith(f"{PACKAGE}.api")
    }
    assert offending == set()


def test_the_domain_module_imports_nothing_of_the_service() -> None:
    assert import_graph()[f"{PACKAGE}.domain"] == set()


def test_no_import_cycles() -> None:
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []


def test_the_graph_is_read_correctly() -> None:
    """A check on the checker: known edges are found."""
    graph = import_graph()
    assert f"{PACKAGE}.storage.db" in graph[f"{PACKAGE}.storage.queue"]
    assert f"{PACKAGE}.domain" in graph[f"{PACKAGE}.storage.queue"]
    assert f"{PACKAGE}.delivery.scheduler" in graph[f"{PACKAGE}.delivery.worker"]
