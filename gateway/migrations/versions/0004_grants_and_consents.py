"""Access requests, approvals, grants, consent requests, consents and the change counter that
every replica polls (issue 6, gateway/grants/store.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

TABLES = ("access_requests", "access_request_approvals", "grants", "consent_requests",
          "consents", "grants_changes")


def _meta() -> sa.MetaData:
    m = sa.MetaData()
    sa.Table(
        "access_requests", m,
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("dataset", sa.String(128), nullable=False, index=True),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("grantee", sa.String(200), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("not_before", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("row_field", sa.String(64)),
        sa.Column("row_values", sa.Text, nullable=False),
        sa.Column("rows_per_day", sa.Integer),
        sa.Column("rows_per_request", sa.Integer),
        sa.Column("required_approvals", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("decided_at", sa.BigInteger),
        sa.Column("decision_reason", sa.Text),
        sa.Column("grant_id", sa.String(40)),
    )
    sa.Table(
        "access_request_approvals", m,
        sa.Column("request_id", sa.String(40), primary_key=True),
        sa.Column("approver", sa.String(200), primary_key=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
    )
    sa.Table(
        "grants", m,
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("dataset", sa.String(128), nullable=False, index=True),
        sa.Column("grantee", sa.String(200), nullable=False, index=True),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("not_before", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("row_field", sa.String(64)),
        sa.Column("row_values", sa.Text, nullable=False),
        sa.Column("rows_per_day", sa.Integer),
        sa.Column("rows_per_request", sa.Integer),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger),
        sa.Column("revoked_by", sa.String(200)),
        sa.Column("revoke_reason", sa.Text),
        sa.Column("version", sa.Integer, nullable=False),
    )
    sa.Table(
        "consent_requests", m,
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("period_days", sa.Integer, nullable=False),
        sa.Column("citizen", sa.String(128)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("answered_at", sa.BigInteger),
        sa.Column("answered_by", sa.String(128)),
    )
    sa.Table(
        "consents", m,
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("request_id", sa.String(40)),
        sa.Column("citizen", sa.String(128), nullable=False, index=True),
        sa.Column("subject_key", sa.String(128), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False, index=True),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("purpose", sa.Text, nullable=False),
        sa.Column("not_before", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("issued_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger),
        sa.Column("receipt", sa.Text, nullable=False),
    )
    sa.Table(
        "grants_changes", m,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("counter", sa.BigInteger, nullable=False),
    )
    return m


def upgrade() -> None:
    # frozen copies of the tables as this revision made them; a gateway that ran the code
    # before the revision existed made them with create_all (checkfirst leaves them alone)
    _meta().create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    meta = _meta()
    for name in reversed(TABLES):
        meta.tables[name].drop(op.get_bind(), checkfirst=True)
