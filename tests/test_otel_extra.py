"""OpenTelemetry's SDK and exporter are the optional ``otel`` extra.

Without them the service runs (spans go through the API, a no-op), and
tracing asked for by ``OTEL_EXPORTER_OTLP_ENDPOINT`` stops it with one
ConfigurationError naming the extra, in the API's voice: the command prints
it as one line, no traceback.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from webhooks_service.errors import ConfigurationError
from webhooks_service.observability import tracing

SDK_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.resources",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)


def test_tracing_without_the_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SDK_MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # import raises ImportError
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    with pytest.raises(ConfigurationError) as err:
        tracing.configure_from_env()
    assert "webhooks-service[otel]" in str(err.value)
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in str(err.value)
    assert not tracing.enabled()


def test_without_the_variable_nothing_needs_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SDK_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.configure_from_env() is False


def test_the_worker_command_stops_with_one_line(tmp_path: object) -> None:
    """``webhooks worker`` in a process where the SDK cannot be imported."""
    blocker = (
        "import sys\n"
        + "".join(f"sys.modules[{m!r}] = None\n" for m in SDK_MODULES)
        + "from webhooks_service.cli import main\n"
        + "sys.exit(main(['worker', '--database-url', 'sqlite:///"
        + f"{tmp_path}/w.db', '--metrics-listen', '']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocker],
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert any("webhooks-service[otel]" in line for line in lines), done.stderr
    assert "Traceback" not in done.stderr
