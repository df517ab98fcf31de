"""Initial schema: the directory, clients, OAuth and SSO state, revocation list, API keys and
the dataset catalogue, as ``metadata.create_all`` made them before alembic (issue 11).

Idempotent on purpose: a home created by ``create_all`` before migrations existed runs this
revision too — tables and indexes it already has are left alone, and the one column such
homes may lack (``datasets.filter_fields``, the old hand-written upgrade) is added.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _has_table(name: str) -> bool:
    return sa.inspect(op.get_bind()).has_table(name)


def _create_table(name: str, *elements: Any) -> None:
    if not _has_table(name):
        op.create_table(name, *elements)


def _create_index(index: str, table: str, column: str) -> None:
    have = {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes(table)}
    if index not in have:
        op.create_index(index, table, [column], unique=False)


def _legacy_columns() -> None:
    if _has_table("datasets"):
        have = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("datasets")}
        if "filter_fields" not in have:
            op.add_column("datasets", sa.Column("filter_fields", sa.Text(), nullable=False,
                                                server_default="[]"))


def upgrade() -> None:
    _legacy_columns()
    _create_table('api_keys',
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('public_key_pem', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('key_id')
    )
    _create_table('clients',
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('name', sa.String(length=256), nullable=False),
    sa.Column('secret_hash', sa.String(length=256), nullable=True),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.Column('redirect_uris', sa.Text(), nullable=False),
    sa.Column('grant_types', sa.Text(), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('roles', sa.Text(), nullable=False),
    sa.Column('department', sa.String(length=256), nullable=True),
    sa.Column('organization', sa.String(length=256), nullable=True),
    sa.Column('clearance', sa.Integer(), nullable=False),
    sa.Column('id_token_alg', sa.String(length=32), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('client_id')
    )
    _create_table('datasets',
    sa.Column('dataset', sa.String(length=128), nullable=False),
    sa.Column('title', sa.String(length=256), nullable=False),
    sa.Column('route_prefix', sa.String(length=256), nullable=False),
    sa.Column('upstream_url', sa.String(length=512), nullable=False),
    sa.Column('owner_department', sa.String(length=256), nullable=True),
    sa.Column('fields', sa.Text(), nullable=False),
    sa.Column('key_field', sa.String(length=128), nullable=True),
    sa.Column('filter_fields', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('dataset'),
    sa.UniqueConstraint('route_prefix')
    )
    _create_table('users',
    sa.Column('username', sa.String(length=128), nullable=False),
    sa.Column('display_name', sa.String(length=256), nullable=True),
    sa.Column('password_hash', sa.String(length=512), nullable=True),
    sa.Column('department', sa.String(length=256), nullable=True),
    sa.Column('clearance', sa.Integer(), nullable=False),
    sa.Column('roles', sa.Text(), nullable=False),
    sa.Column('attributes', sa.Text(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('username')
    )
    _create_table('federated_links',
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('external_sub', sa.String(length=256), nullable=False),
    sa.Column('username', sa.String(length=128), nullable=False),
    sa.Column('linked_at', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('provider', 'external_sub')
    )
    _create_table('login_challenges_used',
    sa.Column('challenge_hash', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('challenge_hash')
    )
    _create_table('login_throttle',
    sa.Column('key', sa.String(length=160), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failure', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    _create_table('oauth_client_logout',
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('backchannel_logout_uri', sa.Text(), nullable=True),
    sa.Column('post_logout_redirect_uris', sa.Text(), nullable=False),
    sa.Column('first_party', sa.Boolean(), nullable=False),
    sa.Column('min_acr', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('client_id')
    )
    _create_table('oauth_codes',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('username', sa.String(length=128), nullable=False),
    sa.Column('redirect_uri', sa.Text(), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('nonce', sa.Text(), nullable=True),
    sa.Column('code_challenge', sa.String(length=128), nullable=True),
    sa.Column('code_challenge_method', sa.String(length=16), nullable=True),
    sa.Column('auth_time', sa.Integer(), nullable=False),
    sa.Column('acr', sa.String(length=64), nullable=True),
    sa.Column('amr', sa.Text(), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=True),
    sa.Column('family_id', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.Integer(), nullable=False),
    sa.Column('used', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('code_hash')
    )
    _create_table('oauth_consents',
    sa.Column('username', sa.String(length=128), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('granted_at', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('username', 'client_id')
    )
    _create_table('oauth_families',
    sa.Column('family_id', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('username', sa.String(length=128), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.Integer(), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.Column('revoked_reason', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('family_id')
    )
    _create_table('oauth_issued_access',
    sa.Column('jti', sa.String(length=64), nullable=False),
    sa.Column('family_id', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('jti')
    )
    _create_index('ix_oauth_issued_access_family_id', 'oauth_issued_access', 'family_id')

    _create_table('oauth_refresh_tokens',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('family_id', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('username', sa.String(length=128), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('auth_time', sa.Integer(), nullable=False),
    sa.Column('acr', sa.String(length=64), nullable=True),
    sa.Column('amr', sa.Text(), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=True),
    sa.Column('issued_at', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.Integer(), nullable=False),
    sa.Column('rotated', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('token_hash')
    )
    _create_index('ix_oauth_refresh_tokens_family_id', 'oauth_refresh_tokens', 'family_id')

    _create_table('oauth_revoked',
    sa.Column('seq', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('jti', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('jti')
    )
    _create_table('sso_session_clients',
    sa.Column('sid', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('sid', 'client_id')
    )
    _create_table('sso_sessions',
    sa.Column('sid_hash', sa.String(length=64), nullable=False),
    sa.Column('sid', sa.String(length=64), nullable=False),
    sa.Column('username', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.Integer(), nullable=False),
    sa.Column('last_seen', sa.Integer(), nullable=False),
    sa.Column('auth_time', sa.Integer(), nullable=False),
    sa.Column('acr', sa.String(length=64), nullable=False),
    sa.Column('amr', sa.Text(), nullable=False),
    sa.Column('source_ip', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=256), nullable=True),
    sa.Column('ended', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('sid_hash'),
    sa.UniqueConstraint('sid')
    )
    _create_index('ix_sso_sessions_username', 'sso_sessions', 'username')

    _create_table('user_totp',
    sa.Column('username', sa.String(length=128), nullable=False),
    sa.Column('secret_sealed', sa.Text(), nullable=False),
    sa.Column('confirmed', sa.Boolean(), nullable=False),
    sa.Column('last_step', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('username')
    )


def downgrade() -> None:
    op.drop_table('user_totp')
    op.drop_index('ix_sso_sessions_username', table_name='sso_sessions')
    op.drop_table('sso_sessions')
    op.drop_table('sso_session_clients')
    op.drop_table('oauth_revoked')
    op.drop_index('ix_oauth_refresh_tokens_family_id', table_name='oauth_refresh_tokens')
    op.drop_table('oauth_refresh_tokens')
    op.drop_index('ix_oauth_issued_access_family_id', table_name='oauth_issued_access')
    op.drop_table('oauth_issued_access')
    op.drop_table('oauth_families')
    op.drop_table('oauth_consents')
    op.drop_table('oauth_codes')
    op.drop_table('oauth_client_logout')
    op.drop_table('login_throttle')
    op.drop_table('login_challenges_used')
    op.drop_table('federated_links')
    op.drop_table('users')
    op.drop_table('datasets')
    op.drop_table('clients')
    op.drop_table('api_keys')
