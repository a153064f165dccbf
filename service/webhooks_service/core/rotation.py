"""RotateWebhookSecret: a new signing secret without repeating the settings.

Rotation is the same update as ``PutWebhookConfig`` with a new ``secret``
(``core.configs.put_config``), so there is one code path for what a rotation
means: the replaced secret keeps signing next to the new one for the
operator's grace period (``secret_rotation_grace_seconds``), secrets are
stored sealed, and validation and errors are the same. This module only
fills in the configuration's current settings, generates the secret when
none is given, and refuses a "rotation" to the secret already in use (that
would silently end nothing and start no grace period).

Known limit: the current settings are read in one transaction and written
in the next, so a PutWebhookConfig that lands in between (milliseconds) has
its URL, types and description overwritten by the values read before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from webhooks_service.config import Settings
from webhooks_service.core import config_validation, configs
from webhooks_service.core.ids import check_config_id
from webhooks_service.core.secrets_at_rest import cipher_for
from webhooks_service.domain import SigningScheme
from webhooks_service.errors import FieldViolation, InvalidArgument, NotFound
from webhooks_service.storage import configs as store
from webhooks_service.storage import db
from webhooks_service.storage.configs import ConfigRow
from webhooks_service.storage.models import utcnow

__all__ = ["RotateResult", "rotate_secret"]

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class RotateResult:
    config: ConfigRow  # with the new secret opened (for its hint)
    generated_secret: str  # "" when the caller gave the secret
    previous_secret_expires_at: datetime | None  # None: the old secret stopped at once


def rotate_secret(
    engine: Engine,
    settings: Settings,
    organisation_id: str,
    config_id: str,
    *,
    secret: str | None,
    clock: Clock = utcnow,
) -> RotateResult:
    """Replace the configuration's secret with ``secret`` or a generated one."""
    check_config_id(config_id)
    secret = secret or None
    if secret is not None:
        problems = config_validation.validate(
            url="https://placeholder.invalid/", event_types=["*"], secret=secret, description=None
        )
        if problems:
            raise InvalidArgument("invalid secret", problems)
    with db.read_transaction(engine) as conn:
        current = store.get(conn, organisation_id, config_id)
    if current is None:
        raise NotFound(f"webhook configuration {config_id!r} not found")
    ed25519 = current.signing_scheme == SigningScheme.ED25519
    if ed25519 and secret is not None:
        raise InvalidArgument(
            "invalid secret",
            [
                FieldViolation(
                    "secret",
                    "this endpoint signs with ed25519: the service generates its new key "
                    "(leave secret out)",
                )
            ],
        )
    if secret is not None and secret == cipher_for(settings.secret_key).open(current.secret):
        raise InvalidArgument(
            "the new secret equals the current one",
            [FieldViolation("secret", "must differ from the current secret (or omit it)")],
        )
    # ed25519: a new key pair (put_config's new_key); the replaced one keeps signing.
    generated = "" if secret is not None or ed25519 else config_validation.generate_secret()
    result = configs.put_config(
        engine,
        settings,
        organisation_id,
        config_id=config_id,
        url=current.url,
        event_types=current.event_types,
        secret=secret or generated or None,
        enabled=None,
        description=None,
        new_key=ed25519,
        clock=clock,
    )
    return RotateResult(result.config, generated, result.config.previous_secret_expires_at)
