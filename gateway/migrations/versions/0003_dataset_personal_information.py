"""datasets.pi_fields and datasets.subject_field: the personal-information flag per field and
the field naming a record's data subject (issue 6, consent).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def _columns() -> set[str]:
    return {c["name"] for c in sa.inspect(op.get_bind()).get_columns("datasets")}


def upgrade() -> None:
    have = _columns()  # a gateway that ran the code first may have added them already
    with op.batch_alter_table("datasets") as batch:
        if "pi_fields" not in have:
            batch.add_column(sa.Column("pi_fields", sa.Text(), nullable=False, server_default="{}"))
        if "subject_field" not in have:
            batch.add_column(sa.Column("subject_field", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("subject_field")
        batch.drop_column("pi_fields")
