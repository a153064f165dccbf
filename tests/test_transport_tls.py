"""The delivery transport's TLS and environment, against a real HTTPS receiver.

libcurl's wheel brings its own OpenSSL, so the transport points it at the
trust store Python's ssl uses (``SSL_CERT_FILE`` included): an endpoint whose
certificate is not trusted there is refused (a TLS error in the log), a
trusted one is reached by name, with the URL's host as SNI and Host header
although the guard's vetted address is what curl connects to. A proxy set in
the environment is never used (it would carry the connection past the guard).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from webhooks_service.config import Settings
from webhooks_service.delivery.http import Transport
from webhooks_service.delivery.retry_policy import ErrorKind

LOOPBACK = ("127.0.0.0/8", "::1/128")


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class HttpsReceiver:
    def __init__(self) -> None:
        self.port = 0
        self.sni: list[str | None] = []
        self.hosts: list[str] = []


@pytest.fixture
def https(tmp_path: Path) -> Iterator[tuple[HttpsReceiver, Path]]:
    cert, key = _self_signed(tmp_path)
    rx = HttpsReceiver()
    ready = threading.Event()
    stop: asyncio.Event | None = None
    loop: asyncio.AbstractEventLoop | None = None

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        rx.hosts.append(request.headers.get("host", ""))
        return web.Response(text="ok")

    async def serve() -> None:
        nonlocal stop, loop
        stop, loop = asyncio.Event(), asyncio.get_running_loop()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

        def sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            rx.sni.append(name)

        context.sni_callback = sni
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        rx.port = runner.addresses[0][1]
        ready.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield rx, cert
    finally:
        assert loop is not None and stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


def _post(url: str) -> tuple[int, ErrorKind | None, str]:
    async def attempt() -> tuple[int, ErrorKind | None, str]:
        async with Transport(Settings(allowed_target_networks=LOOPBACK)) as transport:
            result = await transport.post(url, b"{}", {})
        return result.status_code, result.error_kind, result.error

    return asyncio.run(attempt())


def test_an_untrusted_certificate_is_refused_as_a_tls_error(
    https: tuple[HttpsReceiver, Path],
) -> None:
    rx, _ = https
    status, kind, error = _post(f"https://localhost:{rx.port}/hook")
    assert (status, kind) == (0, ErrorKind.CONNECT)
    assert error.startswith("TLS: "), error
    assert rx.hosts == []


def test_a_trusted_certificate_is_reached_by_name_with_its_sni_and_host(
    https: tuple[HttpsReceiver, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    rx, cert = https
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # never used
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    status, kind, error = _post(f"https://localhost:{rx.port}/hook")
    assert (status, kind, error) == (200, None, "")
    assert rx.sni == ["localhost"]
    assert rx.hosts == [f"localhost:{rx.port}"]
