"""portal API (issue 20): request/response headers of each attempt, the log's
status-class and time indexes, hourly per-endpoint stats

Revision ID: 0008_portal_api
Revises: 0007_fair_delivery
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_portal_api"
down_revision: str | None = "0007_fair_delivery"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("request_headers", sa.Text(), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column("response_headers", sa.Text(), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "response_headers_truncated",
                sa.Boolean(),
                server_default=sa.text("false"),
                nullable=False,
            )
        )
    op.create_index(
        "ix_attempts_org_status_class",
        "delivery_attempts",
        ["organisation_id", sa.text("(response_status_code / 100)"), "id"],
        unique=False,
    )
    op.create_index(
        "ix_attempts_org_time",
        "delivery_attempts",
        ["organisation_id", "attempted_at", "id"],
        unique=False,
    )
    op.create_table(
        "endpoint_stats",
        sa.Column("config_id", sa.String(length=32), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("failures", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["config_id"],
            ["webhook_configs.id"],
            name=op.f("fk_endpoint_stats_config_id_webhook_configs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("config_id", "hour", "bucket", name=op.f("pk_endpoint_stats")),
    )
    op.create_index(op.f("ix_endpoint_stats_hour"), "endpoint_stats", ["hour"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_endpoint_stats_hour"), table_name="endpoint_stats")
    op.drop_table("endpoint_stats")
    op.drop_index("ix_attempts_org_time", table_name="delivery_attempts")
    op.drop_index("ix_attempts_org_status_class", table_name="delivery_attempts")
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_column("response_headers_truncated")
        batch_op.drop_column("response_headers")
        batch_op.drop_column("request_headers")
