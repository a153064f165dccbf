"""ordered delivery per key (issue 22): events and deliveries carry the
publisher's ordering key and its sequence number, configurations an
``ordered`` flag; ordering_sequences holds each key's last number; a partial
index finds a key's pending deliveries of a configuration in sequence order

Revision ID: 0013_ordering
Revises: 0012_bounds
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_ordering"
down_revision: str | None = "0012_bounds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = "status = 'pending' AND ordering_key IS NOT NULL"


def upgrade() -> None:
    op.create_table(
        "ordering_sequences",
        sa.Column("organisation_id", sa.String(length=32), nullable=False),
        sa.Column("ordering_key", sa.String(length=128), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_ordering_sequences_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "organisation_id", "ordering_key", name=op.f("pk_ordering_sequences")
        ),
    )
    with op.batch_alter_table("webhook_configs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ordered", sa.Boolean(), server_default=sa.text("false"), nullable=False)
        )
    for table in ("events", "deliveries"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("ordering_key", sa.String(length=128), nullable=True))
            batch_op.add_column(sa.Column("sequence", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_deliveries_ordering",
        "deliveries",
        ["config_id", "ordering_key", "next_attempt_at", "sequence"],
        unique=False,
        postgresql_where=sa.text(WHERE),
        sqlite_where=sa.text(WHERE),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_deliveries_ordering",
        table_name="deliveries",
        postgresql_where=sa.text(WHERE),
        sqlite_where=sa.text(WHERE),
    )
    for table in ("deliveries", "events"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("sequence")
            batch_op.drop_column("ordering_key")
    with op.batch_alter_table("webhook_configs", schema=None) as batch_op:
        batch_op.drop_column("ordered")
    op.drop_table("ordering_sequences")
