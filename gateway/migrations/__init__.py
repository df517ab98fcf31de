"""Schema migrations of the shared database (alembic), for SQLite and PostgreSQL alike.

The schema is every table on the directory engine: directory, clients, OAuth state, SSO
sessions, the revocation list, API keys and the dataset catalogue (and whatever later
revisions add).  ``ztgw init`` and the gateway at start upgrade to the newest revision;
``ztgw db upgrade|current|history|check`` are the operator's tools.

* Homes created before alembic (tables made by ``metadata.create_all``) need no stamping: the
  first revision creates only what is missing and adds the one column older homes lack.
* Several replicas starting at once on one PostgreSQL serialise on an advisory lock, so a
  revision is applied exactly once.
* A table added to the code without a revision is caught by :func:`schema_diff` (the test
  suite runs it against SQLite and PostgreSQL): write a revision under ``versions/``.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

HERE = Path(__file__).resolve().parent
VERSION_TABLE = "alembic_version"
# pg_advisory_lock key: "ztgwmigr" as a big-endian 63-bit integer (any fixed number will do)
ADVISORY_LOCK_KEY = int.from_bytes(b"ztgwmigr", "big") & 0x7FFF_FFFF_FFFF_FFFF
# modules whose import registers tables on the shared metadata objects
TABLE_MODULES = (
    "ztgw.gateway.identity.directory",
    "ztgw.gateway.identity.store",
    "ztgw.gateway.catalogue",
    "ztgw.gateway.dataplane.signatures",
)
OPTIONAL_TABLE_MODULES = ("ztgw.gateway.grants.store", "ztgw.gateway.grants")


def target_metadata() -> list[sa.MetaData]:
    """Every MetaData whose tables live on the directory engine (what the revisions build)."""
    metas: list[sa.MetaData] = []
    for name in TABLE_MODULES:
        meta = importlib.import_module(name).metadata
        if all(meta is not m for m in metas):
            metas.append(meta)
    for name in OPTIONAL_TABLE_MODULES:  # issue 6 (grants/consents), when present
        try:
            meta = importlib.import_module(name).metadata
        except (ImportError, AttributeError):
            continue
        if isinstance(meta, sa.MetaData) and all(meta is not m for m in metas):
            metas.append(meta)
    return metas


def alembic_config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("version_locations", str(HERE / "versions"))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def script() -> ScriptDirectory:
    """The revisions shipped with this code (read once per process: they do not change)."""
    return ScriptDirectory.from_config(alembic_config())


def heads() -> tuple[str, ...]:
    return tuple(script().get_heads())


@contextmanager
def _locked(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection holding the migration lock (PostgreSQL advisory lock; SQLite serialises
    writers itself)."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            conn.commit()
        try:
            yield conn
        finally:
            if conn.dialect.name == "postgresql":
                conn.rollback()
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
                conn.commit()


def current(engine: sa.Engine) -> tuple[str, ...]:
    """The revisions the database is at (empty: never migrated)."""
    with engine.connect() as conn:
        return tuple(MigrationContext.configure(conn).get_current_heads())


def is_current(engine: sa.Engine) -> bool:
    return set(current(engine)) == set(heads())


def ensure_current(engine: sa.Engine) -> None:
    """Upgrade to the newest revision unless the database is there already (one cheap query)."""
    if not is_current(engine):
        upgrade(engine)


def upgrade(engine: sa.Engine, revision: str = "head") -> tuple[str, ...]:
    """Bring the database to ``revision``; returns the revisions it is at afterwards."""
    with _locked(engine) as conn:
        command.upgrade(alembic_config(conn), revision)
        conn.commit()
    return current(engine)


def downgrade(engine: sa.Engine, revision: str) -> tuple[str, ...]:
    with _locked(engine) as conn:
        command.downgrade(alembic_config(conn), revision)
        conn.commit()
    return current(engine)


def history() -> list[dict[str, Any]]:
    """Revisions newest first."""
    return [{"revision": s.revision, "down_revision": s.down_revision, "doc": s.doc,
             "head": s.is_head}
            for s in script().walk_revisions()]


def _ignore(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    return not (type_ == "table" and name == VERSION_TABLE)


def schema_diff(engine: sa.Engine) -> list[Any]:
    """What autogenerate would change to match the code's tables (``[]``: nothing)."""
    metas = target_metadata()
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "compare_type": True, "include_object": _ignore, "target_metadata": metas,
        })
        # a sequence of MetaData is accepted (alembic: "target_metadata may be a sequence")
        return list(compare_metadata(ctx, metas))  # type: ignore[arg-type]
