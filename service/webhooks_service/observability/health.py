"""gRPC health (``grpc.health.v1``) that follows the database.

The API answers nothing useful without its database, so a load balancer (the
gateway's health checks, Kubernetes' gRPC probes) should stop sending it
calls while the database is unreachable. ``run_database_probe`` checks the
database every ``PROBE_INTERVAL_SECONDS`` (one ``SELECT 1`` through the
engine's pool, in a thread, bounded by ``PROBE_TIMEOUT_SECONDS``) and sets
the overall status ``""`` and every webhooks.v1 service to SERVING or
NOT_SERVING; only changes are logged. During graceful shutdown the servicer
ignores further updates, so NOT_SERVING sticks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from sqlalchemy.engine import Engine

from webhooks_service.storage import db

log = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 3.0


def database_reachable(engine: Engine) -> bool:
    """One round trip to the database (a fresh connection if the pooled one broke)."""
    try:
        db.ping(engine)
    except Exception as exc:
        log.debug("database probe failed: %s", exc)
        return False
    return True


async def run_database_probe(
    engine: Engine,
    health: HealthServicer,
    services: Sequence[str],
    *,
    interval: float | None = None,
    probe_timeout: float | None = None,
) -> None:
    """Probe forever (cancel the task to stop); ``services`` should include ``""``.

    ``interval`` / ``probe_timeout`` default to the module constants, read at call time.
    """
    serving: bool | None = None
    probe: asyncio.Future[bool] | None = None
    while True:
        if probe is None or probe.done():  # never stack probes behind a hanging one
            probe = asyncio.ensure_future(asyncio.to_thread(database_reachable, engine))
        try:
            limit = PROBE_TIMEOUT_SECONDS if probe_timeout is None else probe_timeout
            ok = await asyncio.wait_for(asyncio.shield(probe), limit)
        except TimeoutError:
            ok = False
        if ok != serving:
            if serving is not None or not ok:
                level = logging.INFO if ok else logging.ERROR
                log.log(level, "database %s", "reachable again" if ok else "unreachable")
            serving = ok
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if ok
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in services:
                await health.set(name, status)
        await asyncio.sleep(PROBE_INTERVAL_SECONDS if interval is None else interval)
