"""The directory engine for a home: SQLite under the home, or ``directory_url`` (PostgreSQL),
always migrated to the newest schema revision before anything reads it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from ..identity.directory import Directory, open_engine, open_engine_url

if TYPE_CHECKING:
    from ..settings import Settings


def open_engine_for(settings: Settings) -> sa.Engine:
    if settings.directory_url is not None:
        return open_engine_url(settings.directory_url.get_secret_value())
    return open_engine(settings.db_path)


def open_directory(settings: Settings, migrate: bool = True) -> Directory:
    """The directory of this home, its schema upgraded first (``migrate=False``: as it is)."""
    from ..migrations import upgrade

    engine = open_engine_for(settings)
    if migrate:
        upgrade(engine)
    return Directory(engine)


def is_initialised(settings: Settings) -> bool:
    """Whether ``ztgw init`` ran for this home's database (a PostgreSQL directory counts when
    it carries a schema revision).  An unreachable database raises ``SQLAlchemyError``."""
    if settings.directory_url is None:
        return settings.db_path.exists()
    from ..migrations import current

    return bool(current(open_engine_for(settings)))
