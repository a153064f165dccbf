"""The signing RPCs of WebhookAdmin: the published key set and the ownership challenge.

A mixin of ``WebhookAdminServicer`` (``api/admin.py``). ``GetSigningKeys`` is
the one WebhookAdmin method callable without a key (``api/auth.py``
``PUBLIC_METHODS``): it answers from a per-process cache
(``core/jwks.py``), reads the database for misses under a per-process rate
limit, and sets ``cache-control: public, max-age=<jwks_cache_seconds>`` on
the response (Envoy passes it through to REST clients).

``VerifyWebhookEndpoint`` sends the challenge during the call
(``core/verification.py``); ``challenge_in_background`` sends it after a
create or re-point of an endpoint that must verify, at most
:data:`BACKGROUND_CHALLENGES` at once per process (more are skipped: the
endpoint stays pending until an admin asks again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import grpc
from sqlalchemy.engine import Engine

from webhooks.v1 import admin_pb2
from webhooks_service.api.auth import require_organisation
from webhooks_service.api.convert import config_to_proto
from webhooks_service.api.ratelimit import RateLimiter
from webhooks_service.config import Settings
from webhooks_service.core import jwks, verification
from webhooks_service.core.secrets_at_rest import cipher_for
from webhooks_service.delivery.verification import challenge_sender
from webhooks_service.domain import VerificationStatus
from webhooks_service.errors import ResourceExhausted, WebhooksError
from webhooks_service.storage.configs import ConfigRow

log = logging.getLogger(__name__)
Context = grpc.aio.ServicerContext[Any, Any]

BACKGROUND_CHALLENGES = 16
_READS_KEY = "jwks"


class SigningOperations:
    """GetSigningKeys, VerifyWebhookEndpoint and the background challenge."""

    _settings: Settings
    _engine: Engine
    _notify: Callable[[], Any] | None

    def _init_signing(self) -> None:
        self._key_sets = jwks.KeySets(self._engine, self._settings.jwks_cache_seconds)
        rate = self._settings.jwks_reads_per_second
        self._jwks_reads = RateLimiter(rate, max(1, int(rate * 2)))
        self._challenges: set[asyncio.Task[Any]] = set()

    def keys_changed(self, organisation_id: str) -> None:
        """A write changed the organisation's keys: list them at once here."""
        self._key_sets.forget(organisation_id)

    async def GetSigningKeys(
        self, request: admin_pb2.GetSigningKeysRequest, context: Context
    ) -> admin_pb2.JsonWebKeySet:
        org = request.organisation_id
        keys = self._key_sets.cached(org)
        if keys is None:
            wait = self._jwks_reads.acquire(_READS_KEY)
            if wait is not None:
                raise ResourceExhausted("too many key-set reads; retry shortly", wait)
            keys = await asyncio.to_thread(self._key_sets.load, org)
        max_age = int(self._settings.jwks_cache_seconds)
        await context.send_initial_metadata((("cache-control", f"public, max-age={max_age}"),))
        return admin_pb2.JsonWebKeySet(keys=[admin_pb2.JsonWebKey(**k) for k in keys])

    async def VerifyWebhookEndpoint(
        self, request: admin_pb2.VerifyWebhookEndpointRequest, context: Context
    ) -> admin_pb2.VerifyWebhookEndpointResponse:
        org = require_organisation()
        result = await self._verify(org, request.config_id)
        return admin_pb2.VerifyWebhookEndpointResponse(
            config=config_to_proto(self._opened(result.config)),
            verified=result.verified,
            error=result.error,
        )

    async def _verify(self, org: str, config_id: str) -> verification.VerifyResult:
        async with challenge_sender(self._settings) as send:
            result = await verification.verify_endpoint(
                self._engine, self._settings, org, config_id, send=send
            )
        if result.released and self._notify is not None:
            self._notify()  # the deliveries that waited are due now
        return result

    def _opened(self, row: ConfigRow) -> ConfigRow:
        cipher = cipher_for(self._settings.secret_key)
        return replace(
            row,
            secret=cipher.open(row.secret),
            previous_secret=None,
            headers=None if row.headers is None else cipher.open(row.headers),
        )

    async def end_challenges(self, grace: float) -> None:
        """On shutdown: let background challenges finish for ``grace`` s, cancel the rest."""
        if not self._challenges:
            return
        _, late = await asyncio.wait(set(self._challenges), timeout=grace)
        for task in late:
            task.cancel()

    def challenge_in_background(self, row: ConfigRow) -> None:
        """After a create or re-point: send a pending endpoint its challenge."""
        if row.verification_status != VerificationStatus.PENDING or not row.enabled:
            return
        if len(self._challenges) >= BACKGROUND_CHALLENGES:
            log.warning("challenge for %s skipped: too many in flight", row.id)
            return

        async def run() -> None:
            try:
                await self._verify(row.organisation_id, row.id)
            except WebhooksError as exc:  # budget spent, deleted meanwhile, …
                log.info("challenge for %s not sent: %s", row.id, exc)

        task = asyncio.get_running_loop().create_task(run())
        self._challenges.add(task)
        task.add_done_callback(self._challenges.discard)
