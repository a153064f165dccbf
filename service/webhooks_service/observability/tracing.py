"""OpenTelemetry traces: gRPC calls, publish, and every delivery attempt.

Off by default. ``webhooks serve`` / ``webhooks worker`` turn it on when the
standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
variable is set (:func:`configure_from_env`): spans go to that collector over
OTLP/gRPC in batches, with the SDK's other ``OTEL_*`` variables
(``OTEL_SERVICE_NAME``, headers, timeouts, sampling) honoured. Tests call
:func:`enable` with their own provider (the SDK's in-memory exporter).

One event, one trace:

- **gRPC** (:class:`TracingInterceptor`, installed only while tracing is on):
  a SERVER span per ``webhooks.v1`` call, continuing the W3C ``traceparent``
  (and ``tracestate``) the caller sent in its gRPC metadata.
- **publish** (:func:`start_publish`): a child span with the organisation and
  the event ids; its context, as a ``traceparent`` string, is stored with
  each event (``events.traceparent``).
- **attempt** (:func:`start_attempt` / :func:`end_attempt`): one CLIENT span
  per delivery attempt, child of the stored publish context, whichever
  process or worker makes it and however many hours later: config, delivery,
  attempt number, HTTP status, outcome.

Cost when off: the hooks test one module global and return ``None``; no
context is extracted, no span object is created, nothing is stored
(``traceparent`` stays NULL), and the interceptor is not installed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from webhooks_service.errors import ConfigurationError

if TYPE_CHECKING:
    from webhooks_service.domain import ClaimedDelivery, FinishedAttempt

log = logging.getLogger(__name__)

__all__ = [
    "TracingInterceptor",
    "configure_from_env",
    "disable",
    "enable",
    "enabled",
    "end_attempt",
    "end_publish",
    "shutdown",
    "start_attempt",
    "start_publish",
]

TRACER_NAME = "webhooks_service"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

_tracer: Tracer | None = None  # None: tracing is off
_provider: Any = None  # the SDK provider configure_from_env made (to flush on exit)
_propagator = TraceContextTextMapPropagator()


def enable(provider: trace.TracerProvider) -> None:
    """Trace with ``provider`` from now on (tests; :func:`configure_from_env`)."""
    global _tracer
    _tracer = provider.get_tracer(TRACER_NAME)


def disable() -> None:
    global _tracer
    _tracer = None


def enabled() -> bool:
    return _tracer is not None


def configure_from_env(service_name: str = "webhooks") -> bool:
    """Turn tracing on with an OTLP exporter if the OTLP endpoint variable is set."""
    global _provider
    if not any(os.environ.get(v) for v in ENDPOINT_VARIABLES):
        return False
    try:  # the optional webhooks-service[otel] extra
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigurationError(
            f"tracing is on ({_endpoint_variable()} is set) but the OpenTelemetry SDK and "
            "OTLP exporter are not installed: install the otel extra, "
            "pip install 'webhooks-service[otel]' (or unset the variable)"
        ) from exc

    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider = provider
    enable(provider)
    log.info("OpenTelemetry tracing on: OTLP export to %s", _endpoint())
    return True


def _endpoint_variable() -> str:
    return next(v for v in ENDPOINT_VARIABLES if os.environ.get(v))


def _endpoint() -> str:
    return next((os.environ[v] for v in ENDPOINT_VARIABLES if os.environ.get(v)), "")


def shutdown() -> None:
    """Flush and stop the exporter :func:`configure_from_env` started."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None
    disable()


# -- gRPC -----------------------------------------------------------------------

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


def _metadata_carrier(metadata: Any) -> dict[str, str]:
    carrier: dict[str, str] = {}
    for key, value in metadata or ():
        if key in ("traceparent", "tracestate"):
            carrier[key] = value.decode() if isinstance(value, bytes) else str(value)
    return carrier


class TracingInterceptor(grpc.aio.ServerInterceptor):
    """A SERVER span around every ``webhooks.v1`` call, continuing the caller's trace."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or not method.startswith("/webhooks."):
            return handler
        if handler.stream_unary is not None:
            # The auth gate serves unary methods stream-unary, so that the key is
            # checked before the message is read (api/auth.py, #13); the span
            # wraps it the same way (the first argument is the request iterator).
            gated: Behavior = handler.stream_unary  # type: ignore[assignment]
            return grpc.stream_unary_rpc_method_handler(
                self._wrap(method, gated),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_unary is None:
            return handler
        behavior: Behavior = handler.unary_unary  # type: ignore[assignment]
        return grpc.unary_unary_rpc_method_handler(
            self._wrap(method, behavior),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, method: str, behavior: Behavior) -> Behavior:
        service, _, name = method.strip("/").partition("/")

        async def traced(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            tracer = _tracer
            if tracer is None:
                return await behavior(request, context)
            parent = _propagator.extract(_metadata_carrier(context.invocation_metadata()))
            with tracer.start_as_current_span(
                f"{service}/{name}",
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                try:
                    return await behavior(request, context)
                finally:
                    code = context.code()
                    if code is not None and code != grpc.StatusCode.OK:
                        value = code.value[0] if isinstance(code, grpc.StatusCode) else code
                        span.set_attribute("rpc.grpc.status_code", int(value))
                        span.set_status(Status(StatusCode.ERROR, str(code)))
                    else:
                        span.set_attribute("rpc.grpc.status_code", 0)

        return traced


# -- publish --------------------------------------------------------------------


def start_publish(organisation_ids: Sequence[str], event_ids: Sequence[str]) -> Span | None:
    """The publish span (child of the current gRPC span), or None when tracing is off."""
    tracer = _tracer
    if tracer is None:
        return None
    orgs = sorted(set(organisation_ids))
    attributes: dict[str, Any] = {
        "webhooks.organisation_id": orgs[0] if len(orgs) == 1 else ",".join(orgs),
        "webhooks.event_count": len(event_ids),
    }
    if len(event_ids) == 1:
        attributes["webhooks.event_id"] = event_ids[0]
    else:
        attributes["webhooks.event_ids"] = list(event_ids)
    return tracer.start_span("publish", kind=SpanKind.PRODUCER, attributes=attributes)


def traceparent(span: Span) -> str:
    """The W3C ``traceparent`` of ``span`` (what is stored with each event)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent", "")


def end_publish(span: Span | None, deliveries: int, duplicates: int) -> None:
    if span is None:
        return
    span.set_attribute("webhooks.deliveries", deliveries)
    span.set_attribute("webhooks.duplicates", duplicates)
    span.end()


def fail_publish(span: Span | None, exc: BaseException) -> None:
    if span is None:
        return
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    span.end()


# -- delivery attempts ----------------------------------------------------------


def start_attempt(d: ClaimedDelivery) -> Span | None:
    """The span of one attempt of ``d``, in its event's trace; None when off."""
    tracer = _tracer
    if tracer is None:
        return None
    parent = (
        _propagator.extract({"traceparent": d.traceparent})
        if d.traceparent
        else otel_context.Context()
    )
    return tracer.start_span(
        "attempt",
        context=parent,
        kind=SpanKind.CLIENT,
        attributes={
            "webhooks.organisation_id": d.organisation_id,
            "webhooks.config_id": d.config_id,
            "webhooks.delivery_id": f"dlv_{d.id}",
            "webhooks.event_id": d.event_id,
            "webhooks.event_type": d.event_type,
            "webhooks.attempt": d.attempt,
        },
    )


def end_attempt(span: Span | None, finished: FinishedAttempt) -> None:
    if span is None:
        return
    span.set_attribute("http.response.status_code", finished.response_status_code)
    span.set_attribute("webhooks.outcome", finished.outcome)
    if finished.error:
        span.set_attribute("error.type", finished.error[:200])
    if finished.outcome != "delivered":
        span.set_status(Status(StatusCode.ERROR, finished.outcome))
    span.end()
