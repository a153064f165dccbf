"""LISTEN for new deliveries on PostgreSQL: the wake-up between processes.

A publish whose deliveries are left unclaimed sends ``NOTIFY
webhooks_deliveries`` in its transaction (``events.py``); every worker process
holds one dedicated psycopg connection that LISTENs and sets its wake-up
event (``delivery/runner.py``). The connection's errors stay here: it
reconnects, and meanwhile the worker polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from sqlalchemy.engine import Engine

from webhooks_service.storage.events import NOTIFY_CHANNEL, PROCESS_TOKEN

log = logging.getLogger(__name__)


async def listen_for_deliveries(engine: Engine, wakeup: asyncio.Event) -> None:
    """LISTEN on PostgreSQL and set ``wakeup`` on every notification; reconnects."""
    conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        except psycopg.Error as exc:
            log.warning("LISTEN connection failed (%s); polling meanwhile", exc)
            await asyncio.sleep(1.0)
            continue
        try:
            await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            wakeup.set()  # anything published while we were not listening
            async for note in conn.notifies():
                if note.payload != PROCESS_TOKEN:  # our own publishes woke us already
                    wakeup.set()
        except psycopg.Error as exc:
            log.warning("LISTEN connection lost (%s); reconnecting", exc)
            await asyncio.sleep(0.2)
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
