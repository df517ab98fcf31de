"""Real components on a temporary directory database — SQLite, or a fresh PostgreSQL database
with ``ZTGW_TEST_BACKEND=postgres`` (tests/conftest.py) — no mocks: the store is the real one."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ztgw.gateway.identity.directory import Directory
from ztgw.gateway.identity.keys import KeyRing
from ztgw.gateway.identity.store import OAuthStore


@pytest.fixture
def directory(directory_opener: Callable[[], Directory]) -> Directory:
    return directory_opener()


@pytest.fixture
def store(directory: Directory) -> OAuthStore:
    return OAuthStore(directory.engine)


@pytest.fixture(scope="session")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return KeyRing.load_or_create(tmp_path_factory.mktemp("keys"))
