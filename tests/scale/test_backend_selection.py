"""The test suite's backend switch (tests/conftest.py): ``directory_opener`` gives the backend
``ZTGW_TEST_BACKEND`` names — PostgreSQL at the newest schema revision, or the SQLite file —
and every opener call is another engine on the same database."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ztgw.gateway.identity.directory import Directory, UserRecord
from ztgw.gateway.migrations import current, heads


def test_the_opener_gives_the_selected_backend(store_backend: str,
                                               directory_opener: Callable[[], Directory]) -> None:
    first = directory_opener()
    dialect = first.engine.dialect.name
    assert dialect == ("postgresql" if store_backend == "postgres" else "sqlite")
    if store_backend == "postgres":
        assert set(current(first.engine)) == set(heads())
    first.put_user(UserRecord(username="backend-check"))
    second = directory_opener()  # another worker on the same database
    assert second.get_user("backend-check") is not None


@pytest.mark.parametrize("n", [1, 2])
def test_each_test_gets_an_empty_database(directory_opener: Callable[[], Directory], n: int) -> None:
    d = directory_opener()
    assert d.get_user("only-once") is None  # nothing left over from the other run
    d.put_user(UserRecord(username="only-once"))
