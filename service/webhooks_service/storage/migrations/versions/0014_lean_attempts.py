"""the attempt log's write cost (issue 25, decision 2): delivery_attempts loses
its foreign keys (organisation, delivery, event) and the indexes no query uses
(delivery_id, event_pk: retention deletes attempts by organisation and event id);
deliveries loses its organisation_id index (every query of deliveries by
organisation names the delivery, its event or its configuration). Each remaining
index and the query it serves: docs/storage.md.

On SQLite dropping the foreign keys rebuilds delivery_attempts (a copy of the
table, in the migration's transaction).

Revision ID: 0014_lean_attempts
Revises: 0013_ordering
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_lean_attempts"
down_revision: str | None = "0013_ordering"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (column, referred table, referred column) of the attempt log's foreign keys before.
_FOREIGN_KEYS = (
    ("organisation_id", "organisations", "id"),
    ("delivery_id", "deliveries", "id"),
    ("event_pk", "events", "pk"),
)


_STATUS_CLASS = "ix_attempts_org_status_class"


def _rebuild_attempts() -> bool:
    """SQLite rebuilds the table to change its foreign keys, and its reflection
    cannot see the expression index (ix_attempts_org_status_class): it is
    dropped first and created again after, or the rebuild would lose it."""
    if op.get_bind().dialect.name != "sqlite":
        return False
    op.drop_index(_STATUS_CLASS, table_name="delivery_attempts")
    return True


def _status_class_again() -> None:
    op.create_index(
        _STATUS_CLASS,
        "delivery_attempts",
        ["organisation_id", sa.text("(response_status_code / 100)"), "id"],
        unique=False,
    )


def upgrade() -> None:
    rebuilt = _rebuild_attempts()
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_attempts_delivery_id"))
        batch_op.drop_index(batch_op.f("ix_delivery_attempts_event_pk"))
        for column, table, _ in _FOREIGN_KEYS:
            batch_op.drop_constraint(
                batch_op.f(f"fk_delivery_attempts_{column}_{table}"), type_="foreignkey"
            )
    if rebuilt:
        _status_class_again()
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deliveries_organisation_id"))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_deliveries_organisation_id"), ["organisation_id"], unique=False
        )
    rebuilt = _rebuild_attempts()
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        for column, table, referred in _FOREIGN_KEYS:
            batch_op.create_foreign_key(
                batch_op.f(f"fk_delivery_attempts_{column}_{table}"),
                table,
                [column],
                [referred],
                ondelete="CASCADE",
            )
        batch_op.create_index(
            batch_op.f("ix_delivery_attempts_event_pk"), ["event_pk"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_delivery_attempts_delivery_id"), ["delivery_id"], unique=False
        )
    if rebuilt:
        _status_class_again()
