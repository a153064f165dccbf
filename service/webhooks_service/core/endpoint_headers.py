"""Per-endpoint custom request headers: validation, storage form, and the attempt hook.

A configuration may carry up to :data:`MAX_HEADERS` headers of its own (an
``authorization`` for the receiver's gateway, a routing key …) that every
attempt sends next to the Standard Webhooks headers. Rules:

- **Names** are HTTP tokens (RFC 9110), at most 64 characters, stored lower
  case (HTTP names are case-insensitive; two names equal but for case are
  one too many). Refused, because the service owns them or HTTP does:
  ``webhook-*`` (the signature headers), ``host``, ``content-length``,
  ``content-type``, ``user-agent`` and the hop-by-hop headers.
- **Values** are at most 4096 visible ASCII characters, spaces and tabs
  (no CR/LF: no header injection), not blank.
- **Stored** as one JSON object, sealed with ``core/secrets_at_rest.py``
  exactly like the signing secret (``enc:v1:…`` when ``WEBHOOKS_SECRET_KEY``
  is set): an authorization header is a credential.
- **Shown** only as names (``WebhookConfig.header_names``); in the delivery
  log (``DeliveryLog.request_headers``, :func:`shown_headers`) with the
  values of secret-looking names masked and signatures shortened.

The worker calls :func:`request_headers` when it builds each attempt's
request (a small hook at that one call site), with the headers it opened
once per configuration and keeps in a cache bounded in bytes
(``delivery/attempt.py``, ``OpenedForms``), so the hot path pays one lookup.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping

from webhooks_service.errors import FieldViolation

__all__ = [
    "MAX_HEADERS",
    "header_names",
    "looks_secret",
    "normalise",
    "open_headers",
    "opened_headers",
    "request_headers",
    "seal_headers",
    "shown_headers",
    "validate_headers",
]

Headers = tuple[tuple[str, str], ...]

MAX_HEADERS = 20
MAX_NAME_LENGTH = 64
MAX_VALUE_LENGTH = 4096
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?")
RESERVED_PREFIX = "webhook-"
# Set by the service or by HTTP itself (hop-by-hop, RFC 9110 §7.6.1).
FORBIDDEN = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "user-agent",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)


def _name_problem(name: str) -> str | None:
    if not name:
        return "a header name must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"header names are at most {MAX_NAME_LENGTH} characters"
    if not _TOKEN.fullmatch(name):
        return "not an HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"
    lower = name.lower()
    if lower.startswith(RESERVED_PREFIX):
        return "webhook-* headers are the service's own (id, timestamp, signature)"
    if lower in FORBIDDEN:
        return f"{lower!r} is set by the service or by HTTP itself and cannot be overridden"
    return None


def _value_problem(value: str) -> str | None:
    if len(value) > MAX_VALUE_LENGTH:
        return f"header values are at most {MAX_VALUE_LENGTH} characters"
    if not _VALUE.fullmatch(value):
        return "values must be visible ASCII characters (spaces and tabs inside), no line breaks"
    return None


def validate_headers(headers: Mapping[str, str], field: str = "headers") -> list[FieldViolation]:
    """Every problem with a set of custom headers, one violation per offending entry."""
    problems: list[FieldViolation] = []
    if len(headers) > MAX_HEADERS:
        problems.append(
            FieldViolation(field, f"at most {MAX_HEADERS} custom headers (got {len(headers)})")
        )
    seen: set[str] = set()
    for name in sorted(headers):
        where = f"{field}[{name[:64]!r}]"
        problem = _name_problem(name) or _value_problem(headers[name])
        if problem is None and name.lower() in seen:
            problem = "given twice (header names are case-insensitive)"
        if problem is not None:
            problems.append(FieldViolation(where, problem))
        seen.add(name.lower())
    return problems


def normalise(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-case names, sorted (call after ``validate_headers``)."""
    return {name.lower(): headers[name] for name in sorted(headers, key=str.lower)}


def seal_headers(headers: Mapping[str, str], seal: Callable[[str], str]) -> str | None:
    """The stored form: sealed JSON, or None for no headers."""
    if not headers:
        return None
    return seal(json.dumps(dict(headers), separators=(",", ":"), sort_keys=True))


def open_headers(stored: str | None, open_: Callable[[str], str]) -> dict[str, str]:
    """The headers of a stored form (None or "" for none)."""
    if not stored:
        return {}
    value = json.loads(open_(stored))
    return {str(k): str(v) for k, v in value.items()}


def header_names(stored: str | None, open_: Callable[[str], str]) -> list[str]:
    return sorted(open_headers(stored, open_))


def opened_headers(stored: str | None, open_: Callable[[str], str]) -> Headers:
    """The headers of a stored form, as (name, value) pairs; not cached here: the
    attempter keeps them per configuration, bounded in bytes (delivery/attempt.py)."""
    return tuple(open_headers(stored, open_).items())


# A header whose name contains one of these carries a credential: the log shows
# MASK instead of its value.
_SECRET_WORDS = (
    "auth",
    "token",
    "secret",
    "key",
    "password",
    "passwd",
    "cookie",
    "credential",
    "session",
    "signature",
    "jwt",
    "bearer",
)
MASK = "••••••••"
SIGNATURE_HEADER = "webhook-signature"
SIGNATURE_CHARS_SHOWN = 8


@functools.lru_cache(maxsize=1024)  # names are at most MAX_NAME_LENGTH characters
def looks_secret(name: str) -> bool:
    """Whether a header's value is a credential to be masked wherever it is shown
    (asked for every header of every attempt the log records: decided once per name)."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def _short_signature(value: str) -> str:
    """``v1,K5oZfzN95Z9…`` per signature: enough to tell secrets apart, not to reuse."""
    shown = []
    for part in value.split(" "):
        scheme, _, sig = part.partition(",")
        shown.append(f"{scheme},{sig[:SIGNATURE_CHARS_SHOWN]}…" if sig else part)
    return " ".join(shown)


def shown_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """Request headers as the delivery log shows them: signatures shortened,
    secret-looking values masked, everything else as sent."""
    out = []
    for name, value in headers.items():
        if name == SIGNATURE_HEADER:
            value = _short_signature(value)
        elif looks_secret(name):
            value = MASK
        out.append((name, value))
    return out


def request_headers(signed: dict[str, str], custom: Headers) -> dict[str, str]:
    """THE attempt hook: the request's headers, ``custom`` ones (opened with
    :func:`opened_headers`) added to the signed ones.

    ``signed`` (the Standard Webhooks headers) is returned as is when the
    endpoint has no custom headers; otherwise a merged copy (the signed ones
    win, although validation already keeps their names out).
    """
    if not custom:
        return signed
    merged = dict(custom)
    merged.update(signed)
    return merged
