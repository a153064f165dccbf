"""The auth interceptor: who is calling, may they call this method.

One ``grpc.aio`` server interceptor wraps every ``webhooks.v1`` method. It

1. authenticates the ``authorization: Bearer <key or portal token>`` metadata
   (``api/credentials.py``; missing, malformed, unknown, revoked or expired:
   UNAUTHENTICATED) *before the request message is read* (see :meth:`_gate`),
   failed authentications limited per client address (``api/throttle.py``);
2. checks the scope the method needs (``api/scopes.py``; missing:
   PERMISSION_DENIED; a method missing from the table is refused);
3. takes a token from the key's shared rate-limit bucket (``api/throttle.py``;
   empty: RESOURCE_EXHAUSTED with RetryInfo and ``retry-after``);
4. enforces the method's message size limit, refuses undecodable messages;
5. exposes the caller to the servicer as ``current_principal()`` (a
   contextvar, set for the duration of the call), and answers the methods
   that return secrets with ``cache-control: no-store``;
6. turns whatever the servicer raises into a gRPC status through
   ``api/errors.py`` — servicers never build statuses themselves.

Health checking and server reflection need no key (load balancers and
``grpcurl`` call them anonymously).

The edge (issue #13): every protected method is served as a stream-unary
handler whose first step is authentication, so an anonymous caller's message
(up to the server's 16 MiB limit) is never received into memory; it is
refused with its first bytes still in flow control.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import grpc
from google.protobuf.message import Message
from sqlalchemy.engine import Engine

from webhooks_service.api.credentials import (
    Authenticator,
    Principal,
    current_principal,
    require_organisation,
    reset_principal,
    use_principal,
)
from webhooks_service.api.errors import abort_with_error
from webhooks_service.api.requests import Undecodable, lenient, nul_violations, undecodable_error
from webhooks_service.api.scopes import (
    ADMIN_MAX_BYTES,
    METHOD_MAX_BYTES,
    METHOD_SCOPES,
    NO_STORE_METHODS,
    PUBLIC_MAX_BYTES,
    PUBLIC_METHODS,
    PUBLIC_SERVICES,
)
from webhooks_service.api.throttle import Throttle
from webhooks_service.config import Settings
from webhooks_service.errors import (
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from webhooks_service.storage.models import utcnow

__all__ = [
    "METHOD_SCOPES",
    "PUBLIC_METHODS",
    "PUBLIC_SERVICES",
    "AuthInterceptor",
    "Principal",
    "current_principal",
    "require_organisation",
    "use_principal",
]

NO_STORE = (("cache-control", "no-store"),)

# The principal the gate authenticated before the message was read (this call only).
_gated: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "webhooks_gated_principal", default=None
)


Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates, authorises and maps errors for every webhooks.v1 call."""

    def __init__(
        self,
        engine: Engine,
        *,
        settings: Settings | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        settings = settings or Settings()
        self._credentials = Authenticator(engine, clock=clock, wall_clock=wall_clock)
        self.throttle = Throttle(engine, settings, clock=clock)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(PUBLIC_SERVICES):
            return handler
        if method in PUBLIC_METHODS and handler.unary_unary is not None:
            return self._public(method, handler)
        if handler.unary_unary is None:
            # No streaming RPC is part of the contract; refuse rather than
            # serve one unauthenticated.
            return grpc.unary_unary_rpc_method_handler(self._refuse(method))
        behavior = cast(Behavior, handler.unary_unary)  # async under grpc.aio
        # Served stream-unary (wire-identical for unary clients) so that the key
        # is checked before the message is read (see _gate).
        return grpc.stream_unary_rpc_method_handler(
            self._gated_call(method, self._wrap(method, behavior)),
            # Undecodable bytes become INVALID_ARGUMENT after auth (api/requests.py).
            request_deserializer=_size_limited(
                lenient(handler.request_deserializer, method.rsplit("/", 1)[-1] + " request"),
                METHOD_MAX_BYTES.get(method, ADMIN_MAX_BYTES),
            ),
            response_serializer=handler.response_serializer,
        )

    def _public(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """A method without a key: a small request, errors in the API's voice."""
        behavior = cast(Behavior, handler.unary_unary)

        async def public(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                if isinstance(request, TooLarge):
                    raise request.error(method)
                if isinstance(request, Undecodable):
                    raise undecodable_error(request)
                return await behavior(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                await abort_with_error(context, exc)

        return grpc.unary_unary_rpc_method_handler(
            public,
            request_deserializer=_size_limited(
                lenient(handler.request_deserializer, method.rsplit("/", 1)[-1] + " request"),
                PUBLIC_MAX_BYTES,
            ),
            response_serializer=handler.response_serializer,
        )

    def _refuse(self, method: str) -> Behavior:
        async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await abort_with_error(context, PermissionDenied(f"{method} is not available"))

        return refuse

    def _wrap(self, method: str, behavior: Behavior) -> Behavior:
        scope = METHOD_SCOPES.get(method)
        no_store = method in NO_STORE_METHODS

        async def wrapped(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                principal = _gated.get() or await self._credentials.authenticate(
                    context.invocation_metadata()
                )
                if scope is None:
                    raise PermissionDenied(f"{method} is not open to API keys")
                if scope not in principal.scopes:
                    raise PermissionDenied(f"this API key lacks the scope {scope!r}")
                await self.throttle.limit(scope, principal.key_id)
                if isinstance(request, TooLarge):
                    raise request.error(method)
                if isinstance(request, Undecodable):
                    raise undecodable_error(request)
                if isinstance(request, Message) and (problems := nul_violations(request)):
                    raise InvalidArgument(f"invalid request: check {problems[0].field}", problems)
                if no_store:
                    await context.send_initial_metadata(NO_STORE)
                token = use_principal(principal)
                try:
                    return await behavior(request, context)
                finally:
                    reset_principal(token)
            except grpc.aio.AbortError:
                raise  # the servicer aborted the call itself
            except Exception as exc:
                await abort_with_error(context, exc)

        return wrapped

    # -- the edge: authenticate before reading the message ------------------------

    def _gated_call(self, method: str, wrapped: Behavior) -> Any:
        """A stream-unary behavior: authenticate (:meth:`_gate`), then read the
        one request message and run ``wrapped`` on it."""

        async def call(request_iterator: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                principal = await self._gate(context)
            except Exception as exc:
                await abort_with_error(context, exc)
                return None
            request: Any = None
            async for message in request_iterator:
                request = message
                break
            if request is None:
                await abort_with_error(context, InvalidArgument(f"{method}: no request message"))
            token = _gated.set(principal)
            try:
                return await wrapped(request, context)
            finally:
                _gated.reset(token)

        return call

    async def _gate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        """The caller's principal, checked before the message is read. A failed
        authentication counts against the client address (``api/throttle.py``);
        past its limit the failure is RESOURCE_EXHAUSTED instead. A valid
        credential is served whatever its address did."""
        metadata = context.invocation_metadata()
        try:
            return await self._credentials.authenticate(metadata)
        except Unauthenticated as exc:
            client = self.throttle.client_address(context.peer() or "", metadata)
            wait = await self.throttle.failed(client)
            if wait is None:
                raise
            raise ResourceExhausted(
                f"too many failed authentications from {client}; retry in {wait:.2f} s",
                retry_after=wait,
            ) from exc


@dataclass(frozen=True)
class TooLarge:
    """A request message over its method's limit (never parsed)."""

    size: int
    limit: int

    def error(self, method: str) -> ResourceExhausted:
        return ResourceExhausted(
            f"{method.rsplit('/', 1)[-1]} request of {self.size} bytes is over the "
            f"limit of {self.limit} bytes"
        )


def _size_limited(
    deserializer: Callable[[bytes], Any] | None, limit: int
) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        if len(data) > limit:
            return TooLarge(len(data), limit)
        return deserializer(data)

    return parse
