"""A webhook configuration's fields checked, and its HMAC secrets made and hinted.

Validation collects every problem before answering, so that one
INVALID_ARGUMENT names all offending fields (``google.rpc.BadRequest``):
the URL (absolute http(s), no user-info, a host; the literal-address check
is the caller's ``url_guard``), the event types, the secret (``whsec_`` +
base64 of 24-64 bytes, Standard Webhooks), the description, the payload
filter (core/filter_check.py) and the custom headers
(core/endpoint_headers.py). Used by PutWebhookConfig (core/configs.py) and
RotateWebhookSecret (core/rotation.py).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlsplit

from webhooks_service.core import catalog, endpoint_headers, filter_check
from webhooks_service.errors import FieldViolation

__all__ = [
    "MAX_DESCRIPTION_LENGTH",
    "MAX_EVENT_TYPES",
    "MAX_URL_LENGTH",
    "SECRET_PREFIX",
    "generate_secret",
    "secret_hint",
    "validate",
]

MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 256
MAX_EVENT_TYPES = 100
SECRET_PREFIX = "whsec_"
SECRET_MIN_BYTES, SECRET_MAX_BYTES = 24, 64
GENERATED_SECRET_BYTES = 32


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(GENERATED_SECRET_BYTES)).decode()


def secret_hint(secret: str) -> str:
    """``whsec_MfKQ…`` -> ``whsec_Mf…``: enough to tell secrets apart, useless to sign."""
    return secret[: len(SECRET_PREFIX) + 2] + "…"


def _url_problem(url: str) -> str | None:
    if not url:
        return "required: an absolute http or https URL"
    if len(url) > MAX_URL_LENGTH:
        return f"at most {MAX_URL_LENGTH} characters (got {len(url)})"
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "must not contain whitespace or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme.lower() not in ("http", "https"):
        return "must be an absolute http or https URL"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not contain user-info (user:password@); authenticate with the signature"
    if not parts.hostname:
        return "must name a host"
    if port == 0:
        return "port 0 is not a valid destination"
    return None


def _secret_problem(secret: str) -> str | None:
    if not secret.startswith(SECRET_PREFIX):
        return f"must start with {SECRET_PREFIX!r}"
    body = secret[len(SECRET_PREFIX) :]
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return f"must be {SECRET_PREFIX!r} followed by standard base64"
    if not SECRET_MIN_BYTES <= len(raw) <= SECRET_MAX_BYTES:
        return f"must encode {SECRET_MIN_BYTES} to {SECRET_MAX_BYTES} bytes (got {len(raw)})"
    return None


def validate(
    *,
    url: str,
    event_types: Sequence[str],
    secret: str | None,
    description: str | None,
    url_guard: Callable[[str], str | None] | None = None,
    headers: Mapping[str, str] | None = None,
    clear_headers: bool = False,
    filter_expression: str | None = None,
) -> list[FieldViolation]:
    """Every problem with a put request, one violation per offending field/element."""
    problems: list[FieldViolation] = []
    url_problem = _url_problem(url)
    if url_problem is None and url_guard is not None:
        url_problem = url_guard(url)
    if url_problem:
        problems.append(FieldViolation("url", url_problem))
    if not event_types:
        problems.append(
            FieldViolation("event_types", "required: at least one event type, 'category.*' or '*'")
        )
    elif len(event_types) > MAX_EVENT_TYPES:
        problems.append(FieldViolation("event_types", f"at most {MAX_EVENT_TYPES} entries"))
    else:
        for i, pattern in enumerate(event_types):
            if not catalog.is_valid_pattern(pattern):
                problems.append(
                    FieldViolation(
                        f"event_types[{i}]",
                        f"{pattern!r} is not a catalog event type, a known 'category.*' or "
                        f"'*': {catalog.did_you_mean(pattern, catalog.all_types())}",
                    )
                )
    if secret is not None:
        secret_problem = _secret_problem(secret)
        if secret_problem:
            problems.append(FieldViolation("secret", secret_problem))
    if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
        problems.append(
            FieldViolation(
                "description",
                f"at most {MAX_DESCRIPTION_LENGTH} characters (got {len(description)})",
            )
        )
    if filter_expression and not any(p.field.startswith("event_types") for p in problems):
        problems.extend(filter_check.check(filter_expression, event_types))
    if headers:
        problems.extend(endpoint_headers.validate_headers(headers))
        if clear_headers:
            problems.append(
                FieldViolation("clear_headers", "give either headers or clear_headers, not both")
            )
    return problems
