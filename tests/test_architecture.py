"""The service's floors: every import runs downwards, and no import cycles.

Read from the source (every ``import``, also inside functions and under
``TYPE_CHECKING``), so a deferred import can hide neither an upward arrow nor
a cycle. ``FLOORS`` is the building, lowest first, each floor with its one
rule (docs/architecture.md says the same): a module imports its own floor and
the floors below it, never a floor above (on one floor, the cycle check keeps
the order).
Every module of the service must be in a room, so a new package is placed
explicitly.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Floor:
    name: str
    rooms: tuple[str, ...]  # packages or top-level modules, without the PACKAGE prefix
    rule: str


FLOORS: tuple[Floor, ...] = (
    Floor(
        "base",
        (
            "",
            "errors",
            "domain",
            "config",
            "config_values",
            "hostport",
            "netpolicy",
            "protojson",
            "signing_keys",
            "caches",
        ),
        "the vocabulary, settings, errors, HOST:PORT, the address policy, proto JSON, "
        "the ed25519 key formats and the byte-bounded cache: no database, no network "
        "framework, no gRPC",
    ),
    Floor("storage", ("storage",), "SQLAlchemy: rows never leave; the driver's errors stop here"),
    Floor("gateway", ("gateway",), "Envoy's configuration and process: base only"),
    Floor("observability", ("observability",), "metrics, logs, health, tracing: no use cases"),
    Floor("core", ("core",), "use cases and validation: no gRPC, no HTTP client"),
    Floor("delivery", ("delivery",), "the worker: the only HTTP client (aiohttp)"),
    Floor("api", ("api",), "the gRPC layer: proto <-> core, one error mapping"),
    Floor("commands", ("commands", "cli"), "the CLI: wires processes together"),
)
# Third-party packages a floor must not import, with the floor that owns them.
FORBIDDEN_BELOW: dict[str, tuple[str, ...]] = {
    "sqlalchemy": ("base",),
    "psycopg": ("base", "gateway", "observability", "core", "delivery", "api", "commands"),
    "aiohttp": ("base", "storage", "gateway", "observability", "core", "api", "commands"),
    "grpc": ("base", "storage", "gateway", "core", "delivery"),
}


def room_of(module: str) -> tuple[int, str]:
    """(floor index, room) of a module of the service; KeyError if unplaced."""
    rest = module.removeprefix(PACKAGE).removeprefix(".")
    top = rest.split(".", 1)[0]
    for index, floor in enumerate(FLOORS):
        for room in floor.rooms:
            if room == top or (room == "" and rest == ""):
                return index, room
    raise KeyError(module)


def upward(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Edges (importer, imported) that go up a floor."""
    return {
        (module, dep)
        for module, deps in graph.items()
        for dep in deps
        if room_of(dep)[0] > room_of(module)[0]
    }


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The module graph collapsed to rooms (``api``, ``core``, ``config``, …)."""
    rooms: dict[str, set[str]] = {}
    for module, deps in graph.items():
        room = room_of(module)[1]
        rooms.setdefault(room, set()).update(room_of(d)[1] for d in deps)
        rooms[room].discard(room)
    return rooms


def third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party (and stdlib) names each module imports."""
    found: dict[str, set[str]] = {}
    for name, path in _modules().items():
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
        found[name] = names - {PACKAGE}
    return found


def test_every_module_is_on_a_floor() -> None:
    unplaced = []
    for module in import_graph():
        try:
            room_of(module)
        except KeyError:
            unplaced.append(module)
    assert unplaced == [], "place these in tests/test_architecture.py FLOORS"


def test_no_import_runs_up_at_module_level() -> None:
    assert upward(import_graph()) == set()


def test_no_import_runs_up_at_package_level() -> None:
    rooms = package_graph(import_graph())
    order = {room: i for i, floor in enumerate(FLOORS) for room in floor.rooms}
    offending = {
        (room, dep) for room, deps in rooms.items() for dep in deps if order[dep] > order[room]
    }
    assert offending == set()


def test_floors_keep_their_frameworks() -> None:
    floor_names = {room: floor.name for floor in FLOORS for room in floor.rooms}
    offending = set()
    for module, names in third_party_imports().items():
        floor = floor_names[room_of(module)[1]]
        offending |= {(module, name) for name in names if floor in FORBIDDEN_BELOW.get(name, ())}
    assert offending == set()


def test_nothing_above_storage_sees_the_drivers_errors() -> None:
    """Storage maps driver errors to the service's own (errors.py); nothing above
    it catches SQLAlchemy's or psycopg's exceptions."""
    offending = set()
    for name, path in _modules().items():
        if room_of(name)[1] == "storage":
            continue
        text = path.read_text()
        for pattern in ("sqlalchemy.exc", "sa.exc", "from sqlalchemy import exc", "psycopg.errors"):
            if pattern in text:
                offending.add((name, pattern))
    assert offending == set()


def test_the_domain_module_imports_nothing_of_the_service() -> None:
    assert import_graph()[f"{PACKAGE}.domain"] == set()


def test_a_deliberate_upward_import_is_caught() -> None:
    """A check on the checker: storage importing core or the gateway, core
    importing delivery, observability importing api, and the base importing
    delivery are all found, at module and at package level."""
    graph = {m: set(d) for m, d in import_graph().items()}
    planted = {
        (f"{PACKAGE}.storage.queue", f"{PACKAGE}.core.publishing"),
        (f"{PACKAGE}.core.configs", f"{PACKAGE}.delivery.target_guard"),
        (f"{PACKAGE}.observability.metrics", f"{PACKAGE}.api.server"),
        (f"{PACKAGE}.storage.db", f"{PACKAGE}.gateway.config"),
        (f"{PACKAGE}.netpolicy", f"{PACKAGE}.delivery.target_guard"),
    }
    for module, dep in planted:
        graph[module].add(dep)
    assert upward(graph) == planted
    rooms = package_graph(graph)
    assert {"core"} <= rooms["storage"] and {"delivery"} <= rooms["core"]


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
