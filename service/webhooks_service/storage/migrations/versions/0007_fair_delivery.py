"""fair delivery: endpoint health in a table of its own (no deadlocks with
publishing's FK locks); organisation_id in the claim index (claims skip the
due rows of organisations with enough work waiting without reading the table)

Revision ID: 0007_fair_delivery
Revises: 0006_service_keys
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_fair_delivery"
down_revision: str | None = "0006_service_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = "status = 'pending'"
_COLUMNS = (
    "attempts_total",
    "successes_total",
    "failures_total",
    "last_success_at",
    "last_error",
    "last_error_at",
    "failing_since",
)


def _due_index(columns: list[str]) -> None:
    op.drop_index(
        "ix_deliveries_due",
        table_name="deliveries",
        postgresql_where=sa.text(WHERE),
        sqlite_where=sa.text(WHERE),
    )
    op.create_index(
        "ix_deliveries_due",
        "deliveries",
        columns,
        unique=False,
        postgresql_where=sa.text(WHERE),
        sqlite_where=sa.text(WHERE),
    )


def upgrade() -> None:
    _due_index(["next_attempt_at", "config_id", "organisation_id"])
    op.create_table(
        "endpoint_health",
        sa.Column("config_id", sa.String(length=32), nullable=False),
        sa.Column("attempts_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("successes_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("failures_total", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), server_default="", nullable=False),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["webhook_configs.id"],
            name=op.f("fk_endpoint_health_config_id_webhook_configs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("config_id", name=op.f("pk_endpoint_health")),
    )
    op.create_index(
        op.f("ix_endpoint_health_failing_since"), "endpoint_health", ["failing_since"], unique=False
    )
    cols = ", ".join(_COLUMNS)
    op.execute(
        f"INSERT INTO endpoint_health (config_id, {cols}) SELECT id, {cols} FROM webhook_configs"
        " WHERE attempts_total > 0 OR failing_since IS NOT NULL"
    )
    with op.batch_alter_table("webhook_configs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_configs_failing_since"))
        for name in reversed(_COLUMNS):
            batch_op.drop_column(name)


def downgrade() -> None:
    _due_index(["next_attempt_at", "config_id"])
    with op.batch_alter_table("webhook_configs", schema=None) as batch_op:
        for name in ("attempts_total", "successes_total", "failures_total"):
            batch_op.add_column(
                sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)
            )
        batch_op.add_column(sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("last_error", sa.String(length=500), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_webhook_configs_failing_since"), ["failing_since"], unique=False
        )
    for name in _COLUMNS:
        op.execute(
            f"UPDATE webhook_configs SET {name} = (SELECT h.{name} FROM endpoint_health AS h"
            " WHERE h.config_id = webhook_configs.id)"
            " WHERE id IN (SELECT config_id FROM endpoint_health)"
        )
    op.drop_index(op.f("ix_endpoint_health_failing_since"), table_name="endpoint_health")
    op.drop_table("endpoint_health")
