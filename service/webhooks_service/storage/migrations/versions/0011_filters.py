"""payload filters: webhook_configs.filter (a CEL expression, "" for none); an
index of each organisation's events by type, newest first (the filter dry run)

Revision ID: 0011_filters
Revises: 0010_signing
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_filters"
down_revision: str | None = "0010_signing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_configs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("filter", sa.Text(), server_default="", nullable=False))
    op.create_index(
        "ix_events_org_type_pk", "events", ["organisation_id", "event_type", "pk"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_events_org_type_pk", table_name="events")
    with op.batch_alter_table("webhook_configs", schema=None) as batch_op:
        batch_op.drop_column("filter")
