"""SQLAlchemy table definitions: the whole schema, in one place.

Rows of these tables never leave ``storage/``: the query modules next to this
one return plain dataclasses. Schema changes go through Alembic migrations
(``storage/migrations``); ``tests/test_storage_schema.py`` checks that the models
and the migrations agree.

Identifiers: organisations, API keys and webhook configs have random string
ids (``org_…``, ``key_…``, ``whc_…``). Events, deliveries and attempts are the
high-volume tables and use integer surrogate keys; the public ids of
deliveries and attempts are derived from them (``dlv_…``, ``att_…``, see ``api/convert.py``), and an
event's public id is its ``event_id`` (unique per organisation).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# The clock lives in the domain; re-exported for the callers that take it from here.
from webhooks_service.domain import utcnow as utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Integer primary keys: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no timezone type, so values
    are stored as naive UTC and come back tagged as UTC. Naive inputs are
    refused so that a local time can never slip in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sqlite_time(value: datetime) -> str:
    """A UTC timestamp as ``UTCDateTime`` stores it on SQLite (SQLAlchemy's DATETIME
    format: naive UTC, always with microseconds, ``2026-11-27 10:15:00.250000``),
    for statements that pass timestamps as text (batches in one JSON parameter,
    ``executemany`` over tuples), so those rows compare and read back like every other."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTCDateTime column")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def pg_time(value: datetime) -> str:
    """A UTC timestamp as text PostgreSQL reads as ``timestamptz`` (ISO 8601, offset)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTCDateTime column")
    return value.astimezone(UTC).isoformat()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {datetime: UTCDateTime()}


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    # Endpoint ownership (issue 23): new and re-pointed endpoints must echo a
    # challenge before they receive events (core/verification.py).
    require_endpoint_verification: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )


class ApiKey(Base):
    """An API key. Only a hash of its secret part is stored.

    The key shown to the user once is ``whk_<id part>_<secret part>``; the id
    part finds the row, the secret part is checked against ``secret_hash`` in
    constant time. ``organisation_id`` is NULL for a platform key, which may
    publish events for every organisation.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organisation_id: Mapped[str | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), default="")
    secret_hash: Mapped[str] = mapped_column(String(128))
    # Space-separated scopes, e.g. "webhooks:read webhooks:write".
    scopes: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    # Key lifecycle (issue 12): refused after expires_at; last_used_at is
    # refreshed at most once a minute per process (core/keys.py).
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class PortalSession(Base):
    """A dashboard session of one organisation (``CreatePortalSession``).

    The bearer token is ``wpt_<id part>_<secret part>``; the id part finds the
    row (``wps_<id part>``), only the SHA-256 of the secret part is stored.
    ``created_by`` is the id of the API key that minted it (no foreign key:
    the session's own expiry bounds it).
    """

    __tablename__ = "portal_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    secret_hash: Mapped[str] = mapped_column(String(128))
    # Space-separated scopes, e.g. "webhooks:read webhooks:write".
    scopes: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class WebhookConfig(Base):
    __tablename__ = "webhook_configs"
    __table_args__ = (Index(None, "organisation_id", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    # List of dotted event types / wildcards, as given by the admin.
    event_types: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean)
    description: Mapped[str] = mapped_column(String(256), default="")
    # The signing secret ("whsec_…"); encrypted at rest when the operator
    # configures WEBHOOKS_SECRET_KEY (the stored form then starts "enc:").
    secret: Mapped[str] = mapped_column(Text)
    # During a rotation the previous secret keeps signing until it expires.
    previous_secret: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None]
    # Set when the service disabled the endpoint itself (410 Gone, …).
    disabled_reason: Mapped[str] = mapped_column(String(500), default="")
    # Per-endpoint override of the whole-attempt timeout, in seconds.
    timeout_seconds: Mapped[float | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Custom request headers sent on every attempt (core/endpoint_headers.py):
    # JSON {"name": "value"}, sealed like the secret when WEBHOOKS_SECRET_KEY
    # is set; NULL when none.
    headers: Mapped[str | None] = mapped_column(Text)
    # The payload filter, a CEL expression (core/filters.py); "" for none.
    filter: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Set by DeleteWebhookConfig: the row stays (its deliveries and attempts
    # reference it) but is invisible to the API and the quota.
    deleted_at: Mapped[datetime | None]
    # Ordered delivery per ordering key (issue 22, storage/ordering.py).
    ordered: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # A domain.SigningScheme value. With ed25519 ``secret`` (and, in a
    # rotation, ``previous_secret``) hold whsk_ private keys, sealed like
    # secrets; the public halves are kept in clear for the key set (JWKS).
    signing_scheme: Mapped[str] = mapped_column(
        String(16), default="hmac_sha256", server_default="hmac_sha256"
    )
    public_key: Mapped[str | None] = mapped_column(Text)
    previous_public_key: Mapped[str | None] = mapped_column(Text)
    # A domain.VerificationStatus value, the latest challenge's error, when it
    # last succeeded.
    verification_status: Mapped[str] = mapped_column(
        String(16), default="not_required", server_default="not_required"
    )
    verification_error: Mapped[str] = mapped_column(String(500), default="", server_default="")
    verified_at: Mapped[datetime | None]


class EndpointHealth(Base):
    """Per-configuration delivery health (storage/endpoint_health.py).

    Counters and the latest success/error, folded in set-wise by finish_batch
    in the transaction that logs the attempts. ``failing_since`` starts at the
    first failure after a success and clears on success; the health sweep
    disables endpoints that keep failing (endpoint_failure_disable_after).
    A table of its own, not columns of ``webhook_configs``: the hot path's
    upserts then never contend with the foreign-key locks publishing takes on
    configuration rows, nor with admins' updates (no deadlocks).
    """

    __tablename__ = "endpoint_health"

    config_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_configs.id", ondelete="CASCADE"), primary_key=True
    )
    attempts_total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    successes_total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    failures_total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_success_at: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(String(500), default="", server_default="")
    last_error_at: Mapped[datetime | None]
    failing_since: Mapped[datetime | None] = mapped_column(index=True)


class OperationalBudget(Base):
    """An organisation's operational webhooks in the current window
    (core/operational.py): deliveries of ``webhook.*`` events created since
    ``window_started_at`` (at most its live configurations per window), and
    running totals of what was sent, coalesced and suppressed."""

    __tablename__ = "operational_budgets"

    organisation_id: Mapped[str] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True
    )
    window_started_at: Mapped[datetime]
    deliveries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sent_total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    coalesced_total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    suppressed_total: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class OperationalFailure(Base):
    """An endpoint's failures not reported yet (``webhook.delivery_failed`` is
    sent at most once per window per endpoint; the others are counted here and
    reported together: ``failed_deliveries``, first and last ids)."""

    __tablename__ = "operational_failures"

    config_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_configs.id", ondelete="CASCADE"), primary_key=True
    )
    organisation_id: Mapped[str] = mapped_column(String(32))
    reported_at: Mapped[datetime]  # the last report; the window runs from here
    pending: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    first_delivery_id: Mapped[int | None] = mapped_column(BigInteger)
    first_failed_at: Mapped[datetime | None]
    # The newest unreported failure's event data (JSON), for the report
    last_data: Mapped[str | None] = mapped_column(Text)
    last_failed_at: Mapped[datetime | None] = mapped_column(index=True)


class Event(Base):
    """A published event. ``payload`` is the exact JSON body sent to endpoints."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("organisation_id", "event_id"),
        # An organisation's recent events of one type, newest first (the filter dry run).
        Index("ix_events_org_type_pk", "organisation_id", "event_type", "pk"),
    )

    pk: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime]
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(index=True)
    # W3C traceparent of the publish span (only while tracing is on), so
    # that every attempt's span joins the publisher's trace.
    traceparent: Mapped[str | None] = mapped_column(String(64))
    # The publisher's ordering key and the event's number in it (per
    # organisation and key, from ordering_sequences); NULL without a key.
    ordering_key: Mapped[str | None] = mapped_column(String(128))
    sequence: Mapped[int | None] = mapped_column(BigInteger)


class OrderingSequence(Base):
    """The last sequence number given to an ordering key of an organisation.

    Incremented in the publish transaction; its row lock is what serialises
    publishers of one key (sequence = acceptance order) and, with the worker's
    promotion and the admin's retries, the "is there a head already?" checks
    of ``storage/ordering.py``. One small row per key ever used; never pruned,
    so that a key's sequence never restarts.
    """

    __tablename__ = "ordering_sequences"

    organisation_id: Mapped[str] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), primary_key=True
    )
    ordering_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(BigInteger)


class Delivery(Base):
    """One event to one endpoint: the unit of work of the delivery queue.

    ``status`` is ``pending`` until the delivery ends as ``delivered``,
    ``failed`` (final 4xx, refused target), ``dead`` (schedule exhausted) or
    ``cancelled`` (its configuration was deleted).
    A pending delivery is due when ``next_attempt_at <= now``. Claiming it
    moves ``next_attempt_at`` to the end of the lease and sets
    ``claim_token``; if the worker dies, the row simply becomes due again
    when the lease ends. See ``storage/queue.py`` for the claim query.
    """

    __tablename__ = "deliveries"
    __table_args__ = (
        # The claim query's index: only pending rows, ordered by due time.
        # config_id and organisation_id are in the index so that skipping the due
        # rows the fair scheduler excludes (claim_due's exclude_configs and
        # exclude_organisations) never reads the table.
        Index(
            "ix_deliveries_due",
            "next_attempt_at",
            "config_id",
            "organisation_id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(None, "config_id", "created_at"),
        # Ordered delivery (storage/ordering.py): a key's pending deliveries of a
        # configuration, the active one (due, claimed or backing off) first and
        # then the held ones (next_attempt_at = HELD_UNTIL) in sequence order.
        Index(
            "ix_deliveries_ordering",
            "config_id",
            "ordering_key",
            "next_attempt_at",
            "sequence",
            postgresql_where=text("status = 'pending' AND ordering_key IS NOT NULL"),
            sqlite_where=text("status = 'pending' AND ordering_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # No index of its own (issue 25): every query of deliveries by organisation
    # also names the delivery, its event or its configuration (docs/storage.md).
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id", ondelete="CASCADE"))
    event_pk: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"),
        ForeignKey("events.pk", ondelete="CASCADE"),
        index=True,
    )
    config_id: Mapped[str] = mapped_column(ForeignKey("webhook_configs.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    claim_token: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Copied from the event (issue 22): the queue orders a key's deliveries by them.
    ordering_key: Mapped[str | None] = mapped_column(String(128))
    sequence: Mapped[int | None] = mapped_column(BigInteger)


class DeliveryAttempt(Base):
    """One HTTP attempt of a delivery: the delivery log.

    Written in the same transaction that finishes or reschedules the
    delivery. ``event_id``, ``event_type`` and ``config_id`` are copied from
    the event and delivery so that each log filter is one index range scan;
    the request body is the event's ``payload``. Newest first is ``id``
    descending (ids are assigned in commit order per writer).
    """

    __tablename__ = "delivery_attempts"
    __table_args__ = (
        Index("ix_attempts_org", "organisation_id", "id"),
        Index("ix_attempts_org_config", "organisation_id", "config_id", "id"),
        Index("ix_attempts_org_event", "organisation_id", "event_id", "id"),
        Index("ix_attempts_org_type", "organisation_id", "event_type", "id"),
        Index("ix_attempts_org_outcome", "organisation_id", "outcome", "id"),
        # ListDeliveryLogs with status_class (issue 20): the class is the expression
        # status_hundreds, so an equality on it walks this index in id order.
        Index(
            "ix_attempts_org_status_class",
            "organisation_id",
            text("(response_status_code / 100)"),
            "id",
        ),
        # ListDeliveryLogs with since/until and no other indexed filter (issue 20):
        # newest attempt time first.
        Index("ix_attempts_org_time", "organisation_id", "attempted_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    # No foreign keys and no index on delivery_id / event_pk (issue 25, docs/storage.md):
    # the service writes an attempt only for a delivery it holds in the same
    # transaction, and deletes attempts itself before their deliveries and events
    # (retention, by organisation and event id).
    organisation_id: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    event_pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"))
    event_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(100))
    config_id: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(String(2048))
    response_status_code: Mapped[int] = mapped_column(Integer, default=0)
    response_body: Mapped[str] = mapped_column(Text, default="")
    response_body_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str] = mapped_column(Text, default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    # a domain.Outcome value
    outcome: Mapped[str] = mapped_column(String(16))
    attempted_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime | None]
    # The request headers as sent (signatures shortened, secret-looking custom values
    # masked) and the response headers as received (capped): JSON lists of
    # [name, value]; "" for attempts without a request, or logged before issue 20.
    request_headers: Mapped[str] = mapped_column(Text, default="", server_default="")
    response_headers: Mapped[str] = mapped_column(Text, default="", server_default="")
    response_headers_truncated: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=text("false")
    )


class EndpointStatsHour(Base):
    """One hour of one endpoint's attempts in one latency bucket (GetEndpointStats).

    Folded in by ``queue.finish_batch`` (``storage/endpoint_stats.py``), one
    set-based upsert per batch like ``endpoint_health``; reading an endpoint's
    last 24 hours reads at most 24 x the number of latency buckets rows,
    whatever its volume. ``bucket`` is the index of the latency bucket
    (``endpoint_stats.LATENCY_BOUNDS_MS``). Pruned by retention after two days.
    """

    __tablename__ = "endpoint_stats"

    config_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_configs.id", ondelete="CASCADE"), primary_key=True
    )
    hour: Mapped[datetime] = mapped_column(primary_key=True, index=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempts: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    failures: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class ServiceKey(Base):
    """Random keys the service generates for itself, once per database.

    ``ids``: the keyed permutation behind the public delivery and attempt ids,
    and the key page tokens are sealed with (see ``core/server_keys.py``).
    Every process sharing the database reads the same row, so ids and tokens
    are the same whichever process answers. Not the secrets-at-rest key: that
    one is never stored in the database.
    """

    __tablename__ = "service_keys"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]


class RateBucket(Base):
    """A token bucket shared by every process of a deployment (``core/limits.py``):
    per-key call limits, failed authentications per client address, and the
    organisations' replay and test-event budgets.

    ``name`` is ``<kind>:<who>`` (e.g. ``admin:key_…``, ``auth:203.0.113.9``).
    Times are seconds since the epoch. ``full_at`` is when the bucket is full
    again, i.e. when the row means nothing any more: rows past it are deleted.
    """

    __tablename__ = "rate_buckets"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    full_at: Mapped[float] = mapped_column(Float, index=True)


# The columns of an attempt row written by INSERT ... SELECT (storage/queue.py
# finish_batch, storage/config_deletion.py), in this order.
ATTEMPT_COLUMNS = (
    "organisation_id",
    "delivery_id",
    "event_pk",
    "event_id",
    "event_type",
    "config_id",
    "attempt",
    "url",
    "response_status_code",
    "response_body",
    "response_body_truncated",
    "error",
    "duration_ms",
    "outcome",
    "attempted_at",
    "next_attempt_at",
)
# What of a configuration a delivery is sent with, in this order: the claim
# record (storage/queue.py) and a publish's targets (storage/events.py).
DELIVERY_CONFIG_COLUMNS = (
    "url",
    "secret",
    "previous_secret",
    "previous_secret_expires_at",
    "timeout_seconds",
    "enabled",
    "headers",
)
# Written by finish_batch after ATTEMPT_COLUMNS (the other writers leave their defaults).
ATTEMPT_HEADER_COLUMNS = ("request_headers", "response_headers", "response_headers_truncated")
