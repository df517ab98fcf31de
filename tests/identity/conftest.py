"""Real components on a temporary SQLite directory (no mocks: the store is the real one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ztgw.gateway.identity.directory import Directory
from ztgw.gateway.identity.keys import KeyRing
from ztgw.gateway.identity.store import OAuthStore


@pytest.fixture
def directory(tmp_path: Path) -> Directory:
    return Directory.open(tmp_path / "ztgw.db")


@pytest.fixture
def store(directory: Directory) -> OAuthStore:
    return OAuthStore(directory.engine)


@pytest.fixture(scope="session")
def keyring(tmp_path_factory: pytest.TempPathFactory) -> KeyRing:
    return KeyRing.load_or_create(tmp_path_factory.mktemp("keys"))
