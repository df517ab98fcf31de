"""A real PostgreSQL and redis-server on loopback, once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scale.services import Postgres, Redis, ServiceMissing, start_postgres, start_redis


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    try:
        pg = start_postgres()
    except ServiceMissing as exc:
        pytest.skip(str(exc))
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    try:
        r = start_redis()
    except ServiceMissing as exc:
        pytest.skip(str(exc))
    try:
        yield r
    finally:
        r.stop()
