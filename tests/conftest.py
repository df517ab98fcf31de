"""Backend selection for tests that open the directory database themselves.

``ZTGW_TEST_BACKEND=embedded`` (default): a SQLite file under the test's ``tmp_path``.
``ZTGW_TEST_BACKEND=postgres``: a fresh database per test on the session's loopback PostgreSQL
(tests/scale/services.py), at the newest schema revision by the product's alembic revisions.
Gateways started by tests/e2e/conftest.py choose their backend the same way (``backend_env``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from scale.services import ServiceMissing, backend, migrated_database, shared_postgres

if TYPE_CHECKING:
    from ztgw.gateway.identity.directory import Directory


@pytest.fixture(scope="session")
def store_backend() -> str:
    """``"embedded"`` or ``"postgres"`` (``ZTGW_TEST_BACKEND``)."""
    return backend()


@pytest.fixture
def directory_opener(tmp_path: Path, store_backend: str) -> Iterator[Callable[[], Directory]]:
    """Opens the test's directory database; every call is a new engine on the same database
    (another worker or replica).  Engines are disposed, and a PostgreSQL database dropped, after
    the test."""
    from ztgw.gateway.identity.directory import Directory

    opened: list[Directory] = []
    url: str | None = None
    if store_backend == "postgres":
        try:
            pg = shared_postgres()
        except ServiceMissing as exc:
            pytest.skip(str(exc))
        url = migrated_database(pg)

    def open_directory() -> Directory:
        if url is None:
            d = Directory.open(tmp_path / "ztgw.db")
        else:
            from ztgw.gateway.identity.directory import open_engine_url

            d = Directory(open_engine_url(url))  # migrated already: as the gateway opens it
        opened.append(d)
        return d

    yield open_directory
    for d in opened:
        d.engine.dispose()
    if url is not None:
        pg.drop_database(url)
