"""OpenTelemetry traces: one trace from the publisher's ``traceparent`` through
the gRPC call, the publish and every delivery attempt.

In-process with the SDK's in-memory exporter (both databases), and once as
an operator runs it: ``webhooks serve`` with ``OTEL_EXPORTER_OTLP_ENDPOINT``
pointing at a real OTLP/gRPC collector endpoint.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.delivery_env import DeliveryEnv as Env
from tests.support.delivery_env import delivery_env
from tests.support.payloads import example
from tests.support.polling import eventually
from tests.support.receiver import Reply, running_receiver
from tests.support.serve_process import read_target, stop
from tests.support.server import make_org_and_keys
from webhooks.v1 import admin_pb2, admin_pb2_grpc
from webhooks_client import PublisherClient
from webhooks_service.config import Settings
from webhooks_service.core import configs
from webhooks_service.observability import tracing
from webhooks_service.storage import db

FAST = {"retry_schedule": (0.05, 0.05)}
WEBHOOKS = os.path.join(os.path.dirname(sys.executable), "webhooks")


def new_traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.enable(provider)
    try:
        yield memory
    finally:
        tracing.disable()
        provider.shutdown()


@pytest.fixture
def traced_env(exporter: InMemorySpanExporter, database_url: str) -> Iterator[Env]:
    with delivery_env(database_url, FAST) as e:  # the server starts with tracing on
        yield e


def spans_of(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.context is not None and f"{s.context.trace_id:032x}" == trace_id
    ]


def wait_for_spans(
    exporter: InMemorySpanExporter, trace_id: str, name: str, count: int
) -> list[ReadableSpan]:
    def found() -> list[ReadableSpan] | None:
        spans = [s for s in spans_of(exporter, trace_id) if s.name == name]
        return spans if len(spans) >= count else None

    return eventually(found, 15, f"{count} {name!r} spans")


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def test_one_trace_from_the_publishers_traceparent_through_every_attempt(
    traced_env: Env, exporter: InMemorySpanExporter
) -> None:
    env = traced_env
    env.rx.program("/flaky", Reply(500), Reply(503), Reply(200))
    config, _ = env.config("/flaky")
    parent, trace_id, caller_span = new_traceparent()
    published = env.publisher.publish_event(
        env.org_id, "reward.claimed", example(), id="evt_traced", traceparent=parent
    )
    assert published.deliveries == 1
    env.rx.wait_for(3, "/flaky")

    attempts = wait_for_spans(exporter, trace_id, "attempt", 3)
    [rpc] = [s for s in spans_of(exporter, trace_id) if s.name.endswith("/PublishEvent")]
    [publish] = [s for s in spans_of(exporter, trace_id) if s.name == "publish"]
    # the gRPC span continues the caller's span; publish is its child
    assert rpc.parent is not None and rpc.parent.span_id == int(caller_span, 16)
    assert (
        rpc.attributes is not None and rpc.attributes["rpc.service"] == "webhooks.v1.EventPublisher"
    )
    assert publish.parent is not None and publish.parent.span_id == span_id(rpc)
    assert publish.attributes is not None
    assert publish.attributes["webhooks.event_id"] == "evt_traced"
    assert publish.attributes["webhooks.organisation_id"] == env.org_id
    # every attempt (the first handed over or claimed, the retries claimed from
    # the database) is a child of the publish span, in the same trace
    attempts.sort(key=lambda s: int(s.attributes["webhooks.attempt"]) if s.attributes else 0)  # type: ignore[arg-type]
    assert len(attempts) == 3
    seen = []
    for span in attempts:
        assert span.parent is not None and span.parent.span_id == span_id(publish)
        attrs = span.attributes
        assert attrs is not None and attrs["webhooks.config_id"] == config.id
        seen.append(
            (
                attrs["webhooks.attempt"],
                attrs["http.response.status_code"],
                attrs["webhooks.outcome"],
            )
        )
    assert seen == [(1, 500, "retry_scheduled"), (2, 503, "retry_scheduled"), (3, 200, "delivered")]


def test_admin_calls_are_spans_too_and_errors_are_marked(
    traced_env: Env, exporter: InMemorySpanExporter
) -> None:
    env = traced_env
    parent, trace_id, _ = new_traceparent()
    stub_metadata = (("authorization", f"Bearer {env.keys['all']}"), ("traceparent", parent))
    with grpc.insecure_channel(env.srv.target) as channel:
        stub = admin_pb2_grpc.WebhookAdminStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.DeleteWebhookConfig(
                admin_pb2.DeleteWebhookConfigRequest(config_id="whc_nope"), metadata=stub_metadata
            )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    [span] = wait_for_spans(exporter, trace_id, "webhooks.v1.WebhookAdmin/DeleteWebhookConfig", 1)
    assert span.attributes is not None and span.attributes["rpc.grpc.status_code"] == 5
    assert not span.status.is_ok


def test_tracing_off_stores_no_trace_context(database_url: str) -> None:
    assert not tracing.enabled()
    with delivery_env(database_url, FAST) as env:
        env.config("/plain")
        env.publish(id="evt_plain")
        env.rx.wait_for(1, "/plain")
        with env.srv.engine.connect() as conn:
            stored = conn.execute(
                sa.text("SELECT traceparent FROM events WHERE event_id = 'evt_plain'")
            ).scalar()
        assert stored is None


# -- OTLP export, as an operator runs it -------------------------------------------------


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """A real OTLP/gRPC trace endpoint that keeps what it receives."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:
        with self.lock:
            for resource_spans in request.resource_spans:
                for scope in resource_spans.scope_spans:
                    self.spans.extend(scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.mark.slow
def test_serve_exports_spans_over_otlp_when_the_endpoint_is_set(
    sqlite_template: Path, tmp_path: Path
) -> None:
    path = tmp_path / "webhooks.db"
    shutil.copyfile(sqlite_template, path)
    url = f"sqlite:///{path}"
    engine = db.create_engine(url)
    org_id, keys = make_org_and_keys(engine)
    collector = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEBHOOKS_", "OTEL_"))}
    env.update(
        WEBHOOKS_DATABASE_URL=url,
        WEBHOOKS_GRPC_LISTEN="127.0.0.1:0",
        WEBHOOKS_METRICS_LISTEN="",
        WEBHOOKS_ALLOWED_TARGET_NETWORKS="127.0.0.0/8",
        WEBHOOKS_LOG_LEVEL="WARNING",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
        OTEL_EXPORTER_OTLP_INSECURE="true",
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_SERVICE_NAME="webhooks-test",
    )
    with running_receiver() as rx:
        configs.put_config(
            engine,
            Settings(allowed_target_networks=("127.0.0.0/8",)),
            org_id,
            config_id="",
            url=rx.url("/hook"),
            event_types=["*"],
            secret=None,
            enabled=None,
            description="",
        )
        proc = subprocess.Popen(
            [WEBHOOKS, "serve"],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        try:
            target = read_target(proc, 60)
            assert target, "webhooks serve did not start"
            parent, trace_id, _ = new_traceparent()
            with PublisherClient(target, keys["events:publish"]) as publisher:
                publisher.publish_event(org_id, "reward.claimed", example(), traceparent=parent)
            rx.wait_for(1, "/hook")
            expected = {"publish", "attempt", "webhooks.v1.EventPublisher/PublishEvent"}

            def names() -> set[str]:
                with collector.lock:
                    return {s.name for s in collector.spans if s.trace_id.hex() == trace_id}

            eventually(lambda: expected <= names(), 20, f"the spans {sorted(expected)}")
        finally:
            stop(proc)
            server.stop(0)
            engine.dispose()
