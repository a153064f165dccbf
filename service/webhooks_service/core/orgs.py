"""Organisations: created by the operator (``webhooks orgs create``)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from webhooks_service.core.ids import new_id
from webhooks_service.errors import InvalidArgument, NotFound
from webhooks_service.storage import configs as config_store
from webhooks_service.storage import db
from webhooks_service.storage import orgs as store
from webhooks_service.storage.models import utcnow
from webhooks_service.storage.orgs import OrganisationRow

__all__ = [
    "OrganisationRow",
    "create_org",
    "get_org",
    "list_orgs",
    "set_endpoint_verification",
]


def create_org(engine: Engine, name: str) -> OrganisationRow:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidArgument("organisation name must be 1 to 200 characters")
    with db.write_transaction(engine) as conn:
        return store.insert(conn, new_id("org"), name, utcnow())


def get_org(engine: Engine, org_id: str) -> OrganisationRow:
    with db.read_transaction(engine) as conn:
        org = store.get(conn, org_id)
    if org is None:
        raise NotFound(f"organisation {org_id!r} does not exist")
    return org


def list_orgs(engine: Engine) -> list[OrganisationRow]:
    with db.read_transaction(engine) as conn:
        return store.list_all(conn)


def set_endpoint_verification(engine: Engine, org_id: str, required: bool) -> int:
    """Require (or stop requiring) that the organisation's new and re-pointed
    endpoints echo the ownership challenge before they receive events
    (``core/verification.py``). Turning it on leaves existing endpoints as
    they are; turning it off releases the pending ones (their waiting
    deliveries are due now). Returns how many deliveries it released."""
    with db.write_transaction(engine) as conn:
        if not store.set_require_verification(conn, org_id, required):
            raise NotFound(f"organisation {org_id!r} does not exist")
        return 0 if required else config_store.release_pending(conn, org_id, utcnow())
