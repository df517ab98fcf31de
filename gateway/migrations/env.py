"""alembic environment: run on the connection ``ztgw.gateway.migrations`` hands over
(``config.attributes["connection"]``), or on ``sqlalchemy.url`` for the alembic CLI."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from ztgw.gateway.migrations import VERSION_TABLE, target_metadata


def _include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    return not (type_ == "table" and name == VERSION_TABLE)


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata(), compare_type=True,
        include_object=_include,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER on SQLite via table copy
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
