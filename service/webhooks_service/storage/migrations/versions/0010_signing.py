"""signing: per-endpoint signing scheme and ed25519 public keys, endpoint ownership
verification (per-organisation requirement, per-endpoint state)

Revision ID: 0010_signing
Revises: 0009_auth
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_signing"
down_revision: str | None = "0009_auth"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_configs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "signing_scheme", sa.String(length=16), server_default="hmac_sha256", nullable=False
            )
        )
        batch_op.add_column(sa.Column("public_key", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("previous_public_key", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "verification_status",
                sa.String(length=16),
                server_default="not_required",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column(
                "verification_error", sa.String(length=500), server_default="", nullable=False
            )
        )
        batch_op.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "require_endpoint_verification",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("organisations", schema=None) as batch_op:
        batch_op.drop_column("require_endpoint_verification")
    with op.batch_alter_table("webhook_configs", schema=None) as batch_op:
        for name in (
            "verified_at",
            "verification_error",
            "verification_status",
            "previous_public_key",
            "public_key",
            "signing_scheme",
        ):
            batch_op.drop_column(name)
