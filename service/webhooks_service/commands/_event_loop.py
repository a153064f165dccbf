"""The one place that picks the event loop ``serve``, ``worker`` and ``run`` run on.

The ``event_loop`` setting: ``uvloop`` (libuv's loop, from the optional
``webhooks-service[uvloop]`` extra; an error when it is not installed),
``asyncio`` (the standard library's), or ``auto``: uvloop when it can be
imported, else asyncio. Each command logs once at start-up which loop it runs.
(docs/operations.md, "Event loop"; docs/decisions.md has the measurements.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

from webhooks_service.errors import ConfigurationError

log = logging.getLogger("webhooks_service.event_loop")

T = TypeVar("T")

ASYNCIO = "asyncio"
UVLOOP = "uvloop"


@dataclass(frozen=True)
class EventLoopChoice:
    name: str  # "asyncio" or "uvloop"
    version: str
    # None: asyncio's own loop, exactly what ``asyncio.run`` would make.
    factory: Callable[[], asyncio.AbstractEventLoop] | None
    reason: str  # why this one, for the start-up log line


def _import_uvloop() -> ModuleType | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop


def choose(setting: str) -> EventLoopChoice:
    """The loop for an ``event_loop`` setting (``auto``, ``asyncio`` or ``uvloop``)."""
    import platform

    python = platform.python_version()
    if setting == ASYNCIO:
        return EventLoopChoice(ASYNCIO, python, None, "event_loop=asyncio")
    uvloop = _import_uvloop()
    if uvloop is not None:
        return EventLoopChoice(
            UVLOOP, str(uvloop.__version__), uvloop.new_event_loop, f"event_loop={setting}"
        )
    if setting == UVLOOP:
        raise ConfigurationError(
            "event loop 'uvloop': uvloop is not installed; install it with "
            "pip install 'webhooks-service[uvloop]', or use auto or asyncio "
            "(WEBHOOKS_EVENT_LOOP, --event-loop)"
        )
    return EventLoopChoice(ASYNCIO, python, None, "event_loop=auto, uvloop is not installed")


def run(main: Coroutine[Any, Any, T], choice: EventLoopChoice, *, command: str) -> T:
    """``asyncio.run(main)`` on the chosen loop; logs which one it is, once."""
    log.info(
        "%s runs on the %s event loop (%s %s; %s)",
        command,
        choice.name,
        choice.name,
        choice.version,
        choice.reason,
        extra={"command": command, "event_loop": choice.name, "event_loop_version": choice.version},
    )
    with asyncio.Runner(loop_factory=choice.factory) as runner:
        return runner.run(main)
