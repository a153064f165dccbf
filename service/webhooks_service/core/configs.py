"""Webhook configurations: the create/update (PutWebhookConfig), delete and list use cases.

The request's fields are checked first (core/config_validation.py: every
problem at once). Secrets are stored sealed by ``core/secrets_at_rest.py``
(encrypted when the operator set ``WEBHOOKS_SECRET_KEY``); when the admin
gives none on create, one is generated and returned once. Putting a
different secret on update is a rotation: the replaced secret keeps signing
next to the new one for ``secret_rotation_grace_seconds`` (default 24 h), so
receivers can roll without rejecting deliveries.

Signing schemes (issue 23): an endpoint on ``SigningScheme.ED25519`` holds a
``whsk_`` private key generated here (``signing_keys``) in the secret's
column, sealed the same way, and its ``whpk_`` public half in clear (the key
set, ``core/jwks.py``). Switching scheme, or rotating an ed25519 key, is the
same rotation: the replaced secret or key keeps signing for the grace period.
When the organisation requires endpoint verification, a new or re-pointed
endpoint starts ``pending`` and its deliveries wait (``core/verification.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import (
    endpoint_headers,
    filter_check,
    listing,
    operational,
    pagetokens,
)
from webhooks_service.core.config_validation import generate_secret, validate
from webhooks_service.core.config_validation import secret_hint as secret_hint  # api/convert.py
from webhooks_service.core.ids import check_config_id, new_id
from webhooks_service.core.secrets_at_rest import cipher_for
from webhooks_service.core.server_keys import keyring
from webhooks_service.domain import SigningScheme, VerificationStatus
from webhooks_service.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from webhooks_service.netpolicy import TargetGuard, literal_target_problem
from webhooks_service.signing_keys import generate_private_key, public_key_of
from webhooks_service.storage import config_deletion, db, endpoint_health, ordering
from webhooks_service.storage import configs as store
from webhooks_service.storage.configs import ConfigRow
from webhooks_service.storage.models import utcnow

__all__ = [
    "ConfigRow",
    "PutResult",
    "delete_config",
    "list_configs",
    "put_config",
    "secret_hint",
]

LIST_DEFAULT_PAGE_SIZE = 100

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class PutResult:
    config: ConfigRow
    generated_secret: str  # "" unless the server generated the secret in this call
    created: bool


def put_config(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    *,
    config_id: str,
    url: str,
    event_types: Sequence[str],
    secret: str | None,
    enabled: bool | None,
    description: str | None,
    headers: Mapping[str, str] | None = None,
    clear_headers: bool = False,
    signing_scheme: SigningScheme | None = None,
    new_key: bool = False,
    filter_expression: str | None = None,
    clock: Clock = utcnow,
    ordered: bool | None = None,
) -> PutResult:
    """Create (empty ``config_id``) or update a configuration of the organisation.

    One rule for the optional fields (``secret``, ``enabled``, ``description``):
    None (absent from the request) keeps the current value on update and takes
    the default on create. An empty ``secret`` counts as absent. Event types
    keep their order with duplicates dropped. A URL naming a literal address
    the delivery workers would refuse (loopback, private, …, unless the
    operator allowed its network) is refused here already. Non-empty
    ``headers`` replace the custom headers; empty ones keep them on update,
    unless ``clear_headers``. ``signing_scheme`` None keeps the scheme (HMAC
    on create); ``new_key`` generates a new ed25519 key (the rotation of an
    ed25519 endpoint). ``filter_expression`` (the payload filter) follows
    the optional fields' rule (empty removes it); a kept filter is checked
    again against new event types. ``ordered`` follows the optional fields'
    rule; switching it re-shapes the pending queue (``storage/ordering.py``:
    on, every key keeps one active delivery and the rest wait their turn; off,
    every waiting delivery is due now).
    """
    check_config_id(config_id, "id", required=False)
    secret = secret or None
    guard = TargetGuard(settings.allowed_target_networks)
    target_problem = literal_target_problem(guard, url)
    problems = validate(
        url=url,
        event_types=event_types,
        secret=secret,
        description=description,
        # On update the check waits for the stored URL: an unchanged one stays
        # editable (e.g. after the operator narrowed the allowed networks).
        url_guard=None if config_id else (lambda _: target_problem),
        headers=headers,
        clear_headers=clear_headers,
        filter_expression=filter_expression,
    )
    if secret is not None and signing_scheme is SigningScheme.ED25519:
        problems.append(
            FieldViolation(
                "secret",
                "an ed25519 endpoint's key pair is generated by the service: leave secret out",
            )
        )
    if problems:
        # The API's error mapping adds the first field and rule to the message.
        raise InvalidArgument("invalid webhook configuration", problems)
    types = tuple(dict.fromkeys(event_types))
    cipher = cipher_for(settings.secret_key)
    new_headers = endpoint_headers.normalise(headers) if headers else None
    now = clock()
    with db.write_transaction(engine) as conn:
        if config_id:
            current = store.get(conn, organisation_id, config_id)
            if current is None:
                raise NotFound(f"webhook configuration {config_id!r} not found")
            if target_problem is not None and url != current.url:
                raise InvalidArgument(
                    "invalid webhook configuration", [FieldViolation("url", target_problem)]
                )
            new_filter = current.filter if filter_expression is None else filter_expression
            if filter_expression is None and new_filter:
                kept = filter_check.check(new_filter, types)
                if kept:
                    raise InvalidArgument(
                        "invalid webhook configuration",
                        [
                            FieldViolation(
                                "filter",
                                f"the current filter no longer fits the event types: "
                                f"{kept[0].description}",
                            )
                        ],
                    )
            new_enabled = current.enabled if enabled is None else enabled
            current_secret = cipher.open(current.secret)
            if new_headers is not None:
                stored_headers = endpoint_headers.seal_headers(new_headers, cipher.seal)
            elif clear_headers or current.headers is None:
                stored_headers = None
            else:  # kept; every write re-seals (plaintext rows migrate here)
                stored_headers = cipher.seal(cipher.open(current.headers))
            previous, expires = current.previous_secret, current.previous_secret_expires_at
            previous_public = current.previous_public_key
            if expires is not None and expires <= now:
                previous, expires, previous_public = None, None, None
            scheme = signing_scheme or SigningScheme(current.signing_scheme)
            if scheme is SigningScheme.ED25519 and secret is not None:
                raise InvalidArgument(
                    "invalid webhook configuration",
                    [
                        FieldViolation(
                            "secret",
                            "this endpoint signs with ed25519, whose key pair the service "
                            "generates: leave secret out (RotateWebhookSecret makes a new key)",
                        )
                    ],
                )
            generated = ""
            new_secret = secret or current_secret
            if scheme != current.signing_scheme or (new_key and scheme is SigningScheme.ED25519):
                if scheme is SigningScheme.ED25519:
                    new_secret = generate_private_key()
                elif secret is None:
                    new_secret = generated = generate_secret()
            grace = settings.secret_rotation_grace_seconds
            if new_secret != current_secret:
                # Rotation: the replaced secret or key keeps signing for the grace period.
                previous, expires = current.secret, now + timedelta(seconds=grace)
                previous_public = current.public_key
                if grace <= 0:
                    previous, expires, previous_public = None, None, None
            url_changed = url != current.url
            verification = current.verification_status
            if url_changed:
                # A proof of ownership is for one URL.
                verification = (
                    VerificationStatus.PENDING
                    if store.requires_verification(conn, organisation_id)
                    else VerificationStatus.NOT_REQUIRED
                )
            row = replace(
                current,
                url=url,
                event_types=types,
                enabled=new_enabled,
                description=current.description if description is None else description,
                # Every write stores the secrets sealed (plaintext rows migrate here).
                secret=cipher.seal(new_secret),
                previous_secret=None if previous is None else cipher.seal(cipher.open(previous)),
                previous_secret_expires_at=expires,
                signing_scheme=scheme,
                public_key=public_key_of(new_secret) if scheme is SigningScheme.ED25519 else None,
                previous_public_key=previous_public,
                verification_status=verification,
                verification_error="" if url_changed else current.verification_error,
                verified_at=None if url_changed else current.verified_at,
                # Re-enabling by an admin clears the service's own reason.
                disabled_reason="" if new_enabled else current.disabled_reason,
                headers=stored_headers,
                ordered=current.ordered if ordered is None else ordered,
                filter=new_filter,
                updated_at=now,
            )
            store.update(conn, row)
            if row.ordered != current.ordered:
                switch = ordering.start_ordering if row.ordered else ordering.stop_ordering
                switch(conn, organisation_id, config_id, now)
            if url_changed and verification == VerificationStatus.PENDING:
                store.park_deliveries(conn, config_id)  # they wait for the new URL's proof
            elif current.verification_status == VerificationStatus.PENDING and (
                verification == VerificationStatus.NOT_REQUIRED
            ):
                store.unpark_deliveries(conn, config_id, now)  # no proof needed any more
            if current.enabled and not new_enabled:
                # Operational webhook to the organisation's other endpoints.
                operational.endpoint_disabled_by_admin(conn, current, now=now)
                # Every worker drops what it holds of it (issue 27.2).
                config_deletion.notify_stopped(conn, config_id, deleted=False)
            if new_enabled and (not current.enabled or url != current.url):
                # Re-enabled or re-pointed: the endpoint's failure run starts over.
                endpoint_health.reset_failing(conn, organisation_id, config_id)
                row = replace(row, health=replace(row.health, failing_since=None))
            opened = replace(
                row,
                secret=new_secret,
                headers=None if stored_headers is None else cipher.open(stored_headers),
            )
            return PutResult(opened, generated, created=False)
        if not store.lock_organisation(conn, organisation_id):
            raise NotFound(f"organisation {organisation_id!r} not found")
        limit = settings.max_configs_per_org
        if store.count_for_org(conn, organisation_id) >= limit:
            raise FailedPrecondition(
                f"this organisation already has the maximum of {limit} webhook configurations; "
                "update or remove one instead"
            )
        scheme = signing_scheme or SigningScheme.HMAC_SHA256
        generated = ""
        if scheme is SigningScheme.ED25519:
            new_secret = generate_private_key()
        else:
            new_secret = secret or (generated := generate_secret())
        row = ConfigRow(
            id=new_id("whc"),
            organisation_id=organisation_id,
            url=url,
            event_types=types,
            enabled=True if enabled is None else enabled,
            description=description or "",
            secret=cipher.seal(new_secret),
            disabled_reason="",
            created_at=now,
            updated_at=now,
            ordered=bool(ordered),
            headers=(
                None
                if new_headers is None
                else endpoint_headers.seal_headers(new_headers, cipher.seal)
            ),
            signing_scheme=scheme,
            public_key=public_key_of(new_secret) if scheme is SigningScheme.ED25519 else None,
            verification_status=(
                VerificationStatus.PENDING
                if store.requires_verification(conn, organisation_id)
                else VerificationStatus.NOT_REQUIRED
            ),
            filter=filter_expression or "",
        )
        store.insert(conn, row)
        opened = replace(
            row,
            secret=new_secret,
            headers=None if row.headers is None else cipher.open(row.headers),
        )
        return PutResult(opened, generated, created=True)


def delete_config(
    engine: Engine, organisation_id: str, config_id: str, *, clock: Clock = utcnow
) -> int:
    """Delete the organisation's configuration; how many pending deliveries it cancelled.

    NotFound for an unknown, already deleted or another organisation's id.
    See ``storage/config_deletion.py`` for what happens to its queue and log.
    """
    check_config_id(config_id)
    now = clock()
    deleted = db.retrying_write(
        engine,
        lambda conn: config_deletion.delete_config(conn, organisation_id, config_id, now=now),
    )
    if deleted is None:
        raise NotFound(f"webhook configuration {config_id!r} not found")
    return deleted.cancelled


def _config_position(position: object) -> tuple[datetime, str]:
    """A configs page token's (created_at, id), range-checked: an aware
    timestamp that is a UTC instant inside years 1-9999 and an id of at most
    32 characters; anything else is INVALID_ARGUMENT."""
    if not (isinstance(position, list) and len(position) == 2):
        raise pagetokens.invalid()
    text, config_id = position
    if not (isinstance(text, str) and isinstance(config_id, str) and len(config_id) <= 32):
        raise pagetokens.invalid()
    try:
        created = datetime.fromisoformat(text)
        if created.tzinfo is None:
            raise ValueError("naive timestamp")
        return created.astimezone(UTC), config_id
    except (ValueError, OverflowError) as exc:
        raise pagetokens.invalid() from exc


def list_configs(
    engine: Engine,
    organisation_id: str,
    *,
    page_size: int = 0,
    page_token: str = "",
    secret_key: str = "",
) -> tuple[list[ConfigRow], str]:
    """One page of the organisation's configurations, oldest first, and the next token.

    Rows carry their secret opened (``secret_key``) so that the caller can show
    its hint; the API never returns the whole secret.
    """
    size = listing.page_size(page_size, LIST_DEFAULT_PAGE_SIZE)
    bound = pagetokens.binding("configs", organisation_id)
    key = keyring(engine).tokens
    after: tuple[datetime, str] | None = None
    if page_token:
        after = _config_position(pagetokens.decode(page_token, bound, key))
    with db.read_transaction(engine) as conn:
        rows = store.list_page(conn, organisation_id, after=after, limit=size + 1)
    next_token = ""
    if len(rows) > size:
        rows = rows[:size]
        last = rows[-1]
        next_token = pagetokens.encode([last.created_at.isoformat(), last.id], bound, key)
    cipher = cipher_for(secret_key)
    opened = [
        replace(
            r,
            secret=cipher.open(r.secret),
            previous_secret=None,
            headers=None if r.headers is None else cipher.open(r.headers),
        )
        for r in rows
    ]
    return opened, next_token
