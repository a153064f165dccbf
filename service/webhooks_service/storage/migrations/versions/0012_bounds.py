"""bounds: operational webhooks bounded (issue 26.1): an organisation's
operational deliveries per window, and each endpoint's failures not reported
yet (coalesced into one webhook.delivery_failed per window)

Revision ID: 0012_bounds
Revises: 0011_filters
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_bounds"
down_revision: str | None = "0011_filters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operational_budgets",
        sa.Column("organisation_id", sa.String(length=32), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deliveries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sent_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("coalesced_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("suppressed_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisations.id"],
            name=op.f("fk_operational_budgets_organisation_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("organisation_id", name=op.f("pk_operational_budgets")),
    )
    op.create_table(
        "operational_failures",
        sa.Column("config_id", sa.String(length=32), nullable=False),
        sa.Column("organisation_id", sa.String(length=32), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pending", sa.Integer(), server_default="0", nullable=False),
        sa.Column("first_delivery_id", sa.BigInteger(), nullable=True),
        sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_data", sa.Text(), nullable=True),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["webhook_configs.id"],
            name=op.f("fk_operational_failures_config_id_webhook_configs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("config_id", name=op.f("pk_operational_failures")),
    )
    op.create_index(
        op.f("ix_operational_failures_last_failed_at"),
        "operational_failures",
        ["last_failed_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_operational_failures_last_failed_at"), table_name="operational_failures")
    op.drop_table("operational_failures")
    op.drop_table("operational_budgets")
