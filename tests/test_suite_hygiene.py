"""The suite waits on conditions, never on a fixed sleep (issue 24, item 8).

A test waits for what it expects with ``eventually`` (tests/support/polling.py)
and checks "nothing more happens" against a signal the service gives (the
worker's ``idle`` and ``claims``: ``RunningServer.quiet``; the queue's pending
count: ``DeliveryEnv.settled``; a worker's log line; Envoy's statistics), never
by sleeping. A sleep is right only where it is the behaviour under test: a fake
receiver or server that answers slowly or hangs, a load generator's pace, a
fault held for a while. Those are listed here, each with its reason; any other
``time.sleep`` or ``asyncio.sleep`` in tests/ fails this test.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).parent

# "file::function" (the innermost enclosing function, qualified by its class) -> why
ALLOWED: dict[str, str] = {
    "support/polling.py::eventually": "THE polling helper: the interval between checks",
    "support/polling.py::eventually_async": "THE polling helper, on an event loop",
    "support/receiver.py::Receiver.handle": "a receiver programmed to answer after a delay",
    "support/chaos.py::ChaosReceiver._answer": "the chaos receiver's slow mode",
    "test_client.py::BrokenAdmin.ListDeliveryLogs": "a server slower than the client's deadline",
    "test_faults_process.py::test_a_full_worker_woken_up_still_runs_its_attempts": (
        "the fault itself: a wake-up every 20 ms while every slot is taken"
    ),
    "test_faults_database.py::Publisher.run": "a publisher's pace and its back-off on refusals",
    "test_faults_database.py::test_postgres_restart_while_events_flow": (
        "the fault itself: the outage lasts at least 2 s"
    ),
    "test_faults_database.py::test_sqlite_locked_longer_than_the_busy_timeout": (
        "the fault itself: the write lock is held for 2 s"
    ),
}


def _sleep_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, enclosing function) of every ``*.sleep(...)`` / ``sleep(...)`` call,
    except ``asyncio.sleep(0)`` (a yield to the loop, not a wait)."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                visit(child, [*scope, child.name])
                continue
            if isinstance(child, ast.Call):
                func = child.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                zero = (
                    len(child.args) == 1
                    and isinstance(child.args[0], ast.Constant)
                    and child.args[0].value == 0
                )
                if name == "sleep" and not zero:
                    found.append((child.lineno, ".".join(scope)))
            visit(child, scope)

    visit(tree, [])
    return found


def _qualname(scope: str) -> str:
    """The innermost function with its class: ``Cls.method`` or ``function``
    (nested helpers count as their outermost test or method)."""
    parts = scope.split(".")
    if len(parts) >= 2 and parts[0][:1].isupper():
        return ".".join(parts[:2])
    return parts[0]


def test_no_fixed_sleep_outside_the_allow_list() -> None:
    offenders = []
    used = set()
    for path in sorted(TESTS.rglob("*.py")):
        rel = path.relative_to(TESTS).as_posix()
        for line, scope in _sleep_calls(ast.parse(path.read_text(), filename=str(path))):
            key = f"{rel}::{_qualname(scope)}"
            if key in ALLOWED:
                used.add(key)
            else:
                offenders.append(f"tests/{rel}:{line} in {scope or 'module'}")
    assert offenders == [], (
        "a fixed sleep in the tests: wait with tests/support/polling.eventually for what "
        "you expect, and check 'nothing more happens' against the service's own signal "
        "(RunningServer.quiet, DeliveryEnv.settled); a sleep that is the behaviour under "
        f"test goes in ALLOWED with its reason: {offenders}"
    )
    assert used == set(ALLOWED), f"allowed sleeps that are gone: {sorted(set(ALLOWED) - used)}"


def test_the_check_finds_a_sleep_in_a_test_body() -> None:
    source = (
        "import asyncio, time\n"
        "def test_x():\n"
        "    time.sleep(0.3)\n"
        "async def test_y():\n"
        "    await asyncio.sleep(0)\n"  # a yield, not a wait
        "    await asyncio.sleep(1)\n"
        "class Fake:\n"
        "    def handler(self):\n"
        "        def inner():\n"
        "            sleep(2)\n"
    )
    found = [(line, _qualname(scope)) for line, scope in _sleep_calls(ast.parse(source))]
    assert found == [(3, "test_x"), (6, "test_y"), (10, "Fake.handler")]
