"""A least-recently-used cache bounded in bytes, not entries (issue 27.3).

``functools.lru_cache(maxsize=4096)`` bounds how many entries a cache holds,
not how much memory: keyed by sealed text, 4,096 entries of custom headers
(20 of 4,096 characters, sealed) held about 800 MiB, and since a re-seal is a
new key, re-PUTting the same headers filled it. A :class:`ByteBoundedLRU`
is given a budget and a ``size`` of each entry (key and value, in bytes as
stored); putting an entry evicts the least recently used until the total fits.
An entry larger than the whole budget is not kept at all.

Thread-safe (one lock; the worker's loop and ``asyncio.to_thread`` callers
may share one). No I/O, imports nothing of the service.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ByteBoundedLRU"]

K = TypeVar("K")
V = TypeVar("V")


class ByteBoundedLRU(Generic[K, V]):
    def __init__(self, max_bytes: int, size: Callable[[K, V], int]) -> None:
        self.max_bytes = max_bytes
        self._size = size
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            self._entries.move_to_end(key)
            return hit[0]

    def put(self, key: K, value: V) -> None:
        size = self._size(key, value)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if size > self.max_bytes:
                return
            self._entries[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped
                self.evictions += 1

    def pop(self, key: K) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0
