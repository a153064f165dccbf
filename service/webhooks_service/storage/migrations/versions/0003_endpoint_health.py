"""endpoint health: per-config attempt counters, last success/error, failing_since

Revision ID: 0003_endpoint_health
Revises: 0002_claim_index_config
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_endpoint_health"
down_revision: str | None = "0002_claim_index_config"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
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


def downgrade() -> None:
    with op.batch_alter_table("webhook_configs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_configs_failing_since"))
        for name in (
            "failing_since",
            "last_error_at",
            "last_error",
            "last_success_at",
            "failures_total",
            "successes_total",
            "attempts_total",
        ):
            batch_op.drop_column(name)
