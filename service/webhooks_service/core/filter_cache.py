"""The bounded caches of compiled filter programs.

- :data:`PROGRAMS`: single programs by (filter text, type), for the
  fallback one by one, the dry run, retry and replay (:data:`CACHE_BYTES`).
- :data:`GROUPS`: an organisation's filters for an event type compiled into
  combined programs (one list expression per :data:`GROUP_SIZE` filters),
  for the fan-out (:data:`GROUP_CACHE_BYTES`).

Both are bounded by the programs' estimated compiled size
(:func:`program_bytes`), oldest evicted first.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from webhooks_service.core.filter_env import compile_program, type_env

__all__ = [
    "CACHE_BYTES",
    "GROUPS",
    "GROUP_CACHE_BYTES",
    "GROUP_SIZE",
    "NOT_CHECKED",
    "PROGRAMS",
    "Chunk",
    "GroupCache",
    "ProgramCache",
    "program_bytes",
]

CACHE_BYTES = 32 << 20  # compiled (filter, type) programs per process, estimated size
GROUP_CACHE_BYTES = 64 << 20  # the organisations' combined programs, estimated size
GROUP_SIZE = 32
NOT_CHECKED = object()  # the filter does not type-check against this event type


def program_bytes(expression: str) -> int:
    """What a compiled program of ``expression`` holds in cel-cpp, roughly: measured
    about 5.4 KB for a 70-character filter (an AST node per few characters)."""
    return 1024 + 80 * len(expression)


class ProgramCache:
    """Compiled programs by (filter text, event type), bounded by their estimated
    size (:func:`program_bytes`): CACHE_BYTES.

    Shared by every configuration with the same text. A hit is one dict read
    without the lock (atomic in CPython); the oldest entries are evicted first
    (insertion order), and an evicted program is compiled again when next
    needed (about 40 µs).
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._programs: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def program(self, expression: str, event_type: str) -> Any:
        key = (expression, event_type)
        program = self._programs.get(key)
        if program is not None:
            return program
        try:
            program = compile_program(expression, event_type)
        except (RuntimeError, TypeError):
            program = NOT_CHECKED
        with self._lock:
            if key not in self._programs:
                self._programs[key] = program
                self._bytes += program_bytes(expression)
            while self._bytes > self._max_bytes and len(self._programs) > 1:
                (old, _), _ = self._programs.popitem(last=False)
                self._bytes -= program_bytes(old)
        return program

    def __len__(self) -> int:
        return len(self._programs)


PROGRAMS = ProgramCache(CACHE_BYTES)


@functools.lru_cache(maxsize=16384)
def _type_checks(expression: str, event_type: str) -> bool:
    """Whether ``expression`` compiles for ``event_type`` (the program is not kept)."""
    try:
        compile_program(expression, event_type)
    except (RuntimeError, TypeError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Chunk:
    """Up to GROUP_SIZE filters of one organisation compiled as one list expression."""

    members: tuple[tuple[str, str], ...]  # (config id, filter), in list order
    program: Any  # cel program answering [bool, …], or None (compile failed)


class GroupCache:
    """The combined programs of organisations' filter sets, bounded in estimated bytes.

    One CEL evaluation costs about 2 µs of binding overhead whatever it does,
    so the fan-out evaluates an organisation's filters for an event type as
    one list expression ``[(f1), (f2), …]`` per GROUP_SIZE filters (one
    evaluation instead of a hundred). Keyed by the (config id, filter) pairs
    and the type: a changed filter is a new key. At most GROUP_CACHE_BYTES
    of estimated compiled size (:func:`program_bytes`) is kept, oldest
    evicted first.
    """

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._groups: OrderedDict[tuple[Any, ...], tuple[tuple[Chunk, ...], int]] = OrderedDict()
        self._lock = threading.Lock()

    def chunks(self, members: tuple[tuple[str, str], ...], event_type: str) -> tuple[Chunk, ...]:
        key = (event_type, *members)
        found = self._groups.get(key)
        if found is not None:
            return found[0]
        checked = [m for m in members if _type_checks(m[1], event_type)]
        chunks: list[Chunk] = []
        for i in range(0, len(checked), GROUP_SIZE):
            part = tuple(checked[i : i + GROUP_SIZE])
            # Each filter on lines of its own: a trailing // comment stays its own.
            source = "[" + ", ".join(f"(\n{expr}\n)" for _, expr in part) + "]"
            try:
                program = type_env(event_type).env.compile(source)  # type: ignore[union-attr]
            except RuntimeError:
                program = None
            chunks.append(Chunk(part, program))
        size = sum(program_bytes(expr) + len(cid) for cid, expr in members)
        with self._lock:
            self._groups[key] = (tuple(chunks), size)
            self._bytes += size
            while self._bytes > self._max_bytes and len(self._groups) > 1:
                _, (_, dropped) = self._groups.popitem(last=False)
                self._bytes -= dropped
        return tuple(chunks)


GROUPS = GroupCache(GROUP_CACHE_BYTES)
