"""identity_audit_outbox: admin CLI events on their way to the audit trail
(gateway/identity/auditing.py).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # a gateway that ran this code before the revision existed made the table with create_all
    if sa.inspect(op.get_bind()).has_table("identity_audit_outbox"):
        return
    op.create_table(
        "identity_audit_outbox",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.Integer(), nullable=False),
        sa.Column("doc", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )


def downgrade() -> None:
    op.drop_table("identity_audit_outbox")
