"""claim index covers config_id

The claim query skips the due deliveries of endpoints the worker has
saturated (a hanging endpoint's backlog sits at the head of the queue); with
config_id in the partial index that skip is an index-only scan.

Revision ID: 0002_claim_index_config
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_claim_index_config"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = "status = 'pending'"


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_deliveries_due",
            postgresql_where=sa.text(WHERE),
            sqlite_where=sa.text(WHERE),
        )
        batch_op.create_index(
            "ix_deliveries_due",
            ["next_attempt_at", "config_id"],
            unique=False,
            postgresql_where=sa.text(WHERE),
            sqlite_where=sa.text(WHERE),
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_deliveries_due",
            postgresql_where=sa.text(WHERE),
            sqlite_where=sa.text(WHERE),
        )
        batch_op.create_index(
            "ix_deliveries_due",
            ["next_attempt_at"],
            unique=False,
            postgresql_where=sa.text(WHERE),
            sqlite_where=sa.text(WHERE),
        )
