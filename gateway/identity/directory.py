"""The directory: applications (OAuth clients), users and their attributes.

SQLAlchemy Core over SQLite under ``HOME`` by default (PostgreSQL when configured later).
Attributes stored here feed the policy engine: roles, department, clearance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ztgw.policies.domain import Classification

metadata = sa.MetaData()

clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("secret_hash", sa.String(256)),
    sa.Column("public", sa.Boolean, nullable=False, default=False),
    sa.Column("redirect_uris", sa.Text, nullable=False, default="[]"),
    sa.Column("grant_types", sa.Text, nullable=False, default="[]"),
    sa.Column("scope", sa.Text, nullable=False, default=""),
    sa.Column("roles", sa.Text, nullable=False, default="[]"),
    sa.Column("department", sa.String(256)),
    sa.Column("organization", sa.String(256)),
    sa.Column("clearance", sa.Integer, nullable=False, default=1),
    sa.Column("id_token_alg", sa.String(32), nullable=False, default="RS256"),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.String(40), nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("username", sa.String(128), primary_key=True),
    sa.Column("display_name", sa.String(256)),
    sa.Column("password_hash", sa.String(512)),
    sa.Column("department", sa.String(256)),
    sa.Column("clearance", sa.Integer, nullable=False, default=1),
    sa.Column("roles", sa.Text, nullable=False, default="[]"),
    sa.Column("attributes", sa.Text, nullable=False, default="{}"),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.String(40), nullable=False),
)


@dataclass(frozen=True, slots=True)
class ClientRecord:
    client_id: str
    name: str
    secret_hash: str | None = None
    public: bool = False
    redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ("client_credentials",)
    scope: str = ""
    roles: tuple[str, ...] = ()
    department: str | None = None
    organization: str | None = None
    clearance: Classification = Classification.GENERAL
    id_token_alg: str = "RS256"  # noqa: S105 - an algorithm name
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class UserRecord:
    username: str
    display_name: str | None = None
    password_hash: str | None = None
    department: str | None = None
    clearance: Classification = Classification.GENERAL
    roles: tuple[str, ...] = ()
    attributes: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def open_engine(db_path: Path) -> sa.Engine:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(f"sqlite:///{db_path}", future=True)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def open_engine_url(url: str) -> sa.Engine:
    """PostgreSQL (``postgresql+psycopg://…``) or any SQLAlchemy URL; SQLite paths use
    :func:`open_engine`."""
    if url.startswith("sqlite"):
        return sa.create_engine(url, future=True)
    return sa.create_engine(url, future=True, pool_pre_ping=True, pool_size=5, max_overflow=10)


class Directory:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, db_path: Path) -> Directory:
        from .store import create_tables

        d = cls(open_engine(db_path))
        create_tables(d.engine, metadata)
        create_tables(d.engine)  # the provider's state lives in the same database
        return d

    @classmethod
    def open_url(cls, url: str) -> Directory:
        from .store import create_tables

        d = cls(open_engine_url(url))
        create_tables(d.engine, metadata)
        create_tables(d.engine)
        return d

    # --- clients -------------------------------------------------------------------------
    def put_client(self, c: ClientRecord) -> None:
        row = {
            "client_id": c.client_id,
            "name": c.name,
            "secret_hash": c.secret_hash,
            "public": c.public,
            "redirect_uris": json.dumps(list(c.redirect_uris)),
            "grant_types": json.dumps(list(c.grant_types)),
            "scope": c.scope,
            "roles": json.dumps(list(c.roles), ensure_ascii=False),
            "department": c.department,
            "organization": c.organization,
            "clearance": int(c.clearance),
            "id_token_alg": c.id_token_alg,
            "enabled": c.enabled,
            "created_at": _now(),
        }
        with self.engine.begin() as conn:
            conn.execute(clients.delete().where(clients.c.client_id == c.client_id))
            conn.execute(clients.insert().values(**row))

    def get_client(self, client_id: str) -> ClientRecord | None:
        with self.engine.connect() as conn:
            r = conn.execute(
                sa.select(clients).where(clients.c.client_id == client_id)
            ).mappings().first()
        if r is None:
            return None
        return ClientRecord(
            client_id=r["client_id"],
            name=r["name"],
            secret_hash=r["secret_hash"],
            public=bool(r["public"]),
            redirect_uris=tuple(json.loads(r["redirect_uris"])),
            grant_types=tuple(json.loads(r["grant_types"])),
            scope=r["scope"],
            roles=tuple(json.loads(r["roles"])),
            department=r["department"],
            organization=r["organization"],
            clearance=Classification(r["clearance"]),
            id_token_alg=r["id_token_alg"],
            enabled=bool(r["enabled"]),
        )

    def list_clients(self) -> list[ClientRecord]:
        with self.engine.connect() as conn:
            ids = conn.execute(sa.select(clients.c.client_id).order_by(clients.c.client_id))
            names = [r[0] for r in ids]
        return [c for c in (self.get_client(i) for i in names) if c is not None]

    # --- users ---------------------------------------------------------------------------
    def put_user(self, u: UserRecord) -> None:
        row = {
            "username": u.username,
            "display_name": u.display_name,
            "password_hash": u.password_hash,
            "department": u.department,
            "clearance": int(u.clearance),
            "roles": json.dumps(list(u.roles), ensure_ascii=False),
            "attributes": json.dumps(u.attributes, ensure_ascii=False),
            "enabled": u.enabled,
            "created_at": _now(),
        }
        with self.engine.begin() as conn:
            conn.execute(users.delete().where(users.c.username == u.username))
            conn.execute(users.insert().values(**row))

    def get_user(self, username: str) -> UserRecord | None:
        with self.engine.connect() as conn:
            r = conn.execute(
                sa.select(users).where(users.c.username == username)
            ).mappings().first()
        if r is None:
            return None
        return UserRecord(
            username=r["username"],
            display_name=r["display_name"],
            password_hash=r["password_hash"],
            department=r["department"],
            clearance=Classification(r["clearance"]),
            roles=tuple(json.loads(r["roles"])),
            attributes=json.loads(r["attributes"]),
            enabled=bool(r["enabled"]),
        )

    def set_password_hash(self, username: str, password_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(users.update().where(users.c.username == username)
                         .values(password_hash=password_hash))

    def set_user_enabled(self, username: str, enabled: bool) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(users.update().where(users.c.username == username)
                                .values(enabled=enabled)).rowcount == 1

    def list_users(self) -> list[UserRecord]:
        with self.engine.connect() as conn:
            names = [r[0] for r in conn.execute(sa.select(users.c.username).order_by("username"))]
        return [u for u in (self.get_user(n) for n in names) if u is not None]
