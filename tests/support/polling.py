"""THE polling helper of the tests: wait until a condition holds, or fail saying what."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal, TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T | Literal[False] | None],
    timeout: float = 15.0,
    what: str = "condition",
    interval: float = 0.02,
) -> T:
    """Call ``check`` every ``interval`` s until it returns something truthy, and
    return that; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


async def eventually_async(
    check: Callable[[], T | Literal[False] | None],
    timeout: float = 15.0,  # noqa: ASYNC109 (the same signature as eventually)
    what: str = "condition",
    interval: float = 0.01,
) -> T:
    """``eventually`` on an event loop: sleeps with ``asyncio.sleep``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)
