"""Queries on ``webhook_configs``.

Every read and write is scoped by ``organisation_id``: an id of another
organisation behaves exactly like an id that does not exist. A deleted
configuration (``deleted_at`` set, see ``storage/config_deletion.py``)
behaves the same way: it stays only for its deliveries and attempts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa

from webhooks_service.domain import (
    HELD_UNTIL,
    PARKED_UNTIL,
    DeliveryStatus,
    SigningScheme,
    VerificationStatus,
)
from webhooks_service.storage.endpoint_health import (
    CONFIGS_WITH_HEALTH,
    HEALTH_COLUMNS,
    EndpointHealth,
    health_from_row,
)
from webhooks_service.storage.models import Delivery, Organisation, WebhookConfig

_T = cast(sa.Table, WebhookConfig.__table__)
_ORGS = cast(sa.Table, Organisation.__table__)
_DELIVERIES = cast(sa.Table, Delivery.__table__)


@dataclass(frozen=True)
class ConfigRow:
    id: str
    organisation_id: str
    url: str
    event_types: tuple[str, ...]
    enabled: bool
    description: str
    secret: str = field(repr=False)  # stored form: "enc:v1:…" or plaintext; never logged
    disabled_reason: str
    created_at: datetime
    updated_at: datetime
    # During a rotation the previous secret (stored form) signs too until it expires.
    previous_secret: str | None = field(default=None, repr=False)
    previous_secret_expires_at: datetime | None = None
    # Delivery statistics (read-only here; kept by storage/endpoint_health.py).
    health: EndpointHealth = field(default_factory=EndpointHealth)
    # Custom request headers, stored form (sealed JSON) or None; never logged.
    headers: str | None = field(default=None, repr=False)
    # Ordered delivery per ordering key (issue 22, storage/ordering.py).
    ordered: bool = False
    # Signing (issue 23): a domain.SigningScheme value; with ed25519 the secrets
    # are whsk_ private keys and these their whpk_ public halves.
    signing_scheme: str = SigningScheme.HMAC_SHA256
    public_key: str | None = None
    previous_public_key: str | None = None
    # Ownership: a domain.VerificationStatus value.
    verification_status: str = VerificationStatus.NOT_REQUIRED
    verification_error: str = ""
    verified_at: datetime | None = None
    # The payload filter (a CEL expression, core/filters.py); "" for none.
    filter: str = ""


_COLUMNS = (
    _T.c.id,
    _T.c.organisation_id,
    _T.c.url,
    _T.c.event_types,
    _T.c.enabled,
    _T.c.description,
    _T.c.secret,
    _T.c.disabled_reason,
    _T.c.created_at,
    _T.c.updated_at,
    _T.c.previous_secret,
    _T.c.previous_secret_expires_at,
    _T.c.headers,
    _T.c.ordered,
    _T.c.signing_scheme,
    _T.c.public_key,
    _T.c.previous_public_key,
    _T.c.verification_status,
    _T.c.verification_error,
    _T.c.verified_at,
    _T.c.filter,
    *HEALTH_COLUMNS,
)
_LIVE = _T.c.deleted_at.is_(None)


def _row(r: Any) -> ConfigRow:
    return ConfigRow(
        id=r.id,
        organisation_id=r.organisation_id,
        url=r.url,
        event_types=tuple(r.event_types),
        enabled=bool(r.enabled),
        description=r.description,
        secret=r.secret,
        disabled_reason=r.disabled_reason,
        created_at=r.created_at,
        updated_at=r.updated_at,
        previous_secret=r.previous_secret,
        previous_secret_expires_at=r.previous_secret_expires_at,
        health=health_from_row(r),
        headers=r.headers,
        ordered=bool(r.ordered),
        signing_scheme=r.signing_scheme,
        public_key=r.public_key,
        previous_public_key=r.previous_public_key,
        verification_status=r.verification_status,
        verification_error=r.verification_error,
        verified_at=r.verified_at,
        filter=r.filter,
    )


def lock_organisation(conn: sa.Connection, organisation_id: str) -> bool:
    """Serialise config creation per organisation (the quota check).

    PostgreSQL: ``SELECT … FOR UPDATE`` on the organisation row. SQLite needs
    nothing: a write transaction already holds the database's write lock.
    Returns False when the organisation does not exist.
    """
    query = sa.select(_ORGS.c.id).where(_ORGS.c.id == organisation_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    return conn.execute(query).first() is not None


def count_for_org(conn: sa.Connection, organisation_id: str) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(_T)
        .where(_T.c.organisation_id == organisation_id, _LIVE)
    )
    return int(conn.execute(query).scalar_one())


def get(conn: sa.Connection, organisation_id: str, config_id: str) -> ConfigRow | None:
    row = conn.execute(
        sa.select(*_COLUMNS)
        .select_from(CONFIGS_WITH_HEALTH)
        .where(_T.c.organisation_id == organisation_id, _T.c.id == config_id, _LIVE)
    ).first()
    return None if row is None else _row(row)


def list_page(
    conn: sa.Connection,
    organisation_id: str,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[ConfigRow]:
    """Oldest first by (created_at, id), starting after the given key."""
    query = (
        sa.select(*_COLUMNS)
        .select_from(CONFIGS_WITH_HEALTH)
        .where(_T.c.organisation_id == organisation_id, _LIVE)
    )
    if after is not None:
        created, cid = after
        query = query.where(
            sa.or_(_T.c.created_at > created, sa.and_(_T.c.created_at == created, _T.c.id > cid))
        )
    query = query.order_by(_T.c.created_at, _T.c.id).limit(limit)
    return [_row(r) for r in conn.execute(query)]


def sample_encrypted_secret(conn: sa.Connection, prefix: str) -> str | None:
    """One stored secret that starts with ``prefix`` (the startup key check), or None."""
    query = sa.select(_T.c.secret).where(_T.c.secret.startswith(prefix, autoescape=True)).limit(1)
    value = conn.execute(query).scalar()
    return None if value is None else str(value)


def secrets_page(
    conn: sa.Connection, *, after_id: str, limit: int
) -> list[tuple[str, str, str | None, str | None]]:
    """(id, secret, previous_secret, headers) of every organisation's live configs after
    ``after_id``, by id (re-sealing walks the whole table in batches)."""
    query = (
        sa.select(_T.c.id, _T.c.secret, _T.c.previous_secret, _T.c.headers)
        .where(_T.c.id > after_id, _LIVE)
        .order_by(_T.c.id)
        .limit(limit)
    )
    return [(r.id, r.secret, r.previous_secret, r.headers) for r in conn.execute(query)]


def set_secrets(
    conn: sa.Connection,
    config_id: str,
    secret: str,
    previous: str | None,
    headers: str | None = None,
) -> None:
    """Replace the stored forms of a config's secrets and headers (same values, re-sealed)."""
    conn.execute(
        sa.update(_T)
        .where(_T.c.id == config_id)
        .values(secret=secret, previous_secret=previous, headers=headers)
    )


def _editable(row: ConfigRow) -> dict[str, Any]:
    """The columns a put writes, on insert and update alike."""
    return {
        "url": row.url,
        "event_types": list(row.event_types),
        "enabled": row.enabled,
        "description": row.description,
        "secret": row.secret,
        "previous_secret": row.previous_secret,
        "previous_secret_expires_at": row.previous_secret_expires_at,
        "disabled_reason": row.disabled_reason,
        "headers": row.headers,
        "signing_scheme": row.signing_scheme,
        "public_key": row.public_key,
        "previous_public_key": row.previous_public_key,
        "verification_status": row.verification_status,
        "verification_error": row.verification_error,
        "verified_at": row.verified_at,
        "filter": row.filter,
        "ordered": row.ordered,
        "updated_at": row.updated_at,
    }


def insert(conn: sa.Connection, row: ConfigRow) -> None:
    conn.execute(
        sa.insert(_T).values(
            id=row.id,
            organisation_id=row.organisation_id,
            timeout_seconds=None,
            created_at=row.created_at,
            **_editable(row),
        )
    )


def update(conn: sa.Connection, row: ConfigRow) -> None:
    """Store the editable fields of ``row`` (matched by organisation and id)."""
    conn.execute(
        sa.update(_T)
        .where(_T.c.organisation_id == row.organisation_id, _T.c.id == row.id, _LIVE)
        .values(**_editable(row))
    )


# --- signing keys and ownership verification (issue 23) ---------------------


def public_keys(
    conn: sa.Connection, organisation_id: str, *, limit: int
) -> list[tuple[str | None, str | None, datetime | None]]:
    """(public_key, previous_public_key, previous_secret_expires_at) of the
    organisation's live ed25519 configurations, oldest first, at most ``limit``.
    Only public halves are read: the private keys never leave their column."""
    query = (
        sa.select(_T.c.public_key, _T.c.previous_public_key, _T.c.previous_secret_expires_at)
        .where(
            _T.c.organisation_id == organisation_id,
            _LIVE,
            sa.or_(_T.c.public_key.is_not(None), _T.c.previous_public_key.is_not(None)),
        )
        .order_by(_T.c.created_at, _T.c.id)
        .limit(limit)
    )
    return [(r[0], r[1], r[2]) for r in conn.execute(query)]


def requires_verification(conn: sa.Connection, organisation_id: str) -> bool:
    """Whether the organisation requires new endpoints to prove ownership."""
    value = conn.execute(
        sa.select(_ORGS.c.require_endpoint_verification).where(_ORGS.c.id == organisation_id)
    ).scalar()
    return bool(value)


def set_verification(
    conn: sa.Connection,
    organisation_id: str,
    config_id: str,
    *,
    url: str,
    status: str,
    error: str,
    verified_at: datetime | None,
) -> bool:
    """Record a challenge's result for the configuration, if it still points at
    ``url`` (a re-point meanwhile needs its own challenge); True if recorded."""
    changed = conn.execute(
        sa.update(_T)
        .where(
            _T.c.organisation_id == organisation_id,
            _T.c.id == config_id,
            _T.c.url == url,
            _LIVE,
        )
        .values(verification_status=status, verification_error=error[:500], verified_at=verified_at)
    ).rowcount
    return bool(changed)


def park_deliveries(conn: sa.Connection, config_id: str) -> int:
    """Make the configuration's pending deliveries wait (PARKED_UNTIL), claimed ones
    too: their claim ends, so an attempt in flight (to the old URL) is not recorded
    and schedules no retry to the new one; the delivery waits for the new URL's proof."""
    return int(
        conn.execute(
            sa.update(_DELIVERIES)
            .where(
                _DELIVERIES.c.config_id == config_id,
                _DELIVERIES.c.status == DeliveryStatus.PENDING,
                # Ordered delivery: a key's held successors stay held (only its
                # head waits parked), so unparking keeps one delivery per key.
                _DELIVERIES.c.next_attempt_at < HELD_UNTIL,
            )
            .values(next_attempt_at=PARKED_UNTIL, claim_token=None)
        ).rowcount
    )


def unpark_deliveries(conn: sa.Connection, config_id: str, now: datetime) -> int:
    """Make the deliveries that waited for the configuration's verification due now."""
    return int(
        conn.execute(
            sa.update(_DELIVERIES)
            .where(
                _DELIVERIES.c.config_id == config_id,
                _DELIVERIES.c.status == DeliveryStatus.PENDING,
                _DELIVERIES.c.next_attempt_at >= PARKED_UNTIL,
                _DELIVERIES.c.next_attempt_at < HELD_UNTIL,  # held ones wait for their turn
            )
            .values(next_attempt_at=now, updated_at=now)
        ).rowcount
    )


def release_pending(conn: sa.Connection, organisation_id: str, now: datetime) -> int:
    """The organisation stopped requiring verification: its pending endpoints are
    not required to verify any more and their waiting deliveries are due now."""
    pending = [
        r[0]
        for r in conn.execute(
            sa.select(_T.c.id).where(
                _T.c.organisation_id == organisation_id,
                _T.c.verification_status == VerificationStatus.PENDING,
            )
        )
    ]
    if not pending:
        return 0
    conn.execute(
        sa.update(_T)
        .where(_T.c.id.in_(pending))
        .values(verification_status=VerificationStatus.NOT_REQUIRED, verification_error="")
    )
    return sum(unpark_deliveries(conn, config_id, now) for config_id in pending)
