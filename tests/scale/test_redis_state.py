"""The Redis-backed shared state against a real redis-server on loopback: the GCRA limiter
admits exactly the burst then the rate, across limiter instances (replicas); the daily quota
is shared; failure modes are as documented (closed → 503, open → per-replica); change notices
reach subscribers after the writing transaction commits."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from scale.services import Redis, free_port
from ztgw.gateway.dataplane.obligations import DailyQuota
from ztgw.gateway.dataplane.ratelimit import RateLimit, RateLimiter
from ztgw.gateway.errors import ServiceUnavailable
from ztgw.gateway.identity.directory import open_engine
from ztgw.gateway.identity.store import OAuthStore, now
from ztgw.gateway.migrations import upgrade
from ztgw.gateway.state.limits import RedisQuotaStore, RedisRateLimitStore
from ztgw.gateway.state.notify import ChangeBus
from ztgw.gateway.state.redis_client import StateSettings


def _settings(redis_server: Redis, prefix: str, **kw: object) -> StateSettings:
    return StateSettings(redis_url=redis_server.url, key_prefix=prefix, **kw)  # type: ignore[arg-type]


async def test_gcra_admits_the_burst_then_refuses_across_replicas(redis_server: Redis) -> None:
    s = _settings(redis_server, "t-gcra:")
    lim = [RateLimit("app", "*", rate=0.01, burst=5)]  # refills one request every 100 s
    a = RateLimiter(lim, store=RedisRateLimitStore(s))
    b = RateLimiter(lim, store=RedisRateLimitStore(s))
    waits = [await (a if i % 2 else b).acquire("app", "ds") for i in range(12)]
    assert waits[:5] == [0.0] * 5  # the burst, shared by both replicas
    assert all(w > 0 for w in waits[5:])
    assert all(90 < w <= 100 for w in waits[5:])  # Retry-After: the next emission
    assert await a.acquire("other", "ds") == 0.0  # no limit configured for this client
    assert await a.acquire("app", "other-dataset") == 0.0  # buckets are per dataset


async def test_gcra_refills_at_the_rate(redis_server: Redis) -> None:
    s = _settings(redis_server, "t-refill:")
    limiter = RateLimiter([RateLimit("*", "*", rate=50, burst=1)], store=RedisRateLimitStore(s))
    assert await limiter.acquire("c", "d") == 0.0
    wait = await limiter.acquire("c", "d")
    assert 0 < wait <= 0.02
    await asyncio.sleep(wait + 0.01)
    assert await limiter.acquire("c", "d") == 0.0


async def test_an_unreachable_redis_fails_closed_by_default_and_open_when_configured() -> None:
    down = StateSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    lim = [RateLimit("*", "*", rate=1, burst=2)]
    closed = RateLimiter(lim, store=RedisRateLimitStore(down))
    with pytest.raises(ServiceUnavailable) as exc:
        await closed.acquire("c", "d")
    assert exc.value.status == 503 and exc.value.code == "rate_limit_unavailable"
    opened = RateLimiter(lim, store=RedisRateLimitStore(down), fail_open=True)
    assert [await opened.acquire("c", "d") for _ in range(3)][:2] == [0.0, 0.0]
    assert await opened.acquire("c", "d") > 0  # the local bucket still limits
    quota = DailyQuota(RedisQuotaStore(down))
    with pytest.raises(ServiceUnavailable):
        await quota.remaining("user:x", "ds", 10)
    with pytest.raises(ServiceUnavailable):
        await quota.consume("user:x", "ds", 1)
    local = DailyQuota(RedisQuotaStore(down), fail_open=True)
    await local.consume("user:x", "ds", 4)
    assert await local.remaining("user:x", "ds", 10) == 6


async def test_daily_quota_is_shared_by_replicas(redis_server: Redis) -> None:
    s = _settings(redis_server, "t-quota:")
    a, b = DailyQuota(RedisQuotaStore(s)), DailyQuota(RedisQuotaStore(s))
    assert await a.remaining("user:张三", "population.persons", 100) == 100
    await a.consume("user:张三", "population.persons", 60)
    await b.consume("user:张三", "population.persons", 30)
    assert await b.remaining("user:张三", "population.persons", 100) == 10
    assert await a.remaining("user:李四", "population.persons", 100) == 100  # per subject


def test_change_bus_announces_a_revocation_after_commit(redis_server: Redis, tmp_path: Path) -> None:
    s = _settings(redis_server, "t-bus:")
    engine = open_engine(tmp_path / "ztgw.db")
    upgrade(engine)
    writer, reader = ChangeBus(s), ChangeBus(s)
    writer.watch_engine(engine)
    heard = threading.Event()
    seen: list[int] = []

    def on_revoked(_table: str) -> None:  # the row is visible when the notice arrives
        with engine.connect() as conn:
            seen.append(conn.execute(sa.text("SELECT count(*) FROM oauth_revoked")).scalar_one())
        heard.set()

    reader.on_change("oauth_revoked", on_revoked)
    reader.start()
    try:
        deadline = threading.Event()
        for _ in range(50):  # wait for the subscription to be live
            if redis_server_subscribers(redis_server, reader.channel):
                break
            deadline.wait(0.05)
        OAuthStore(engine).revoke_jti("jti-1", now() + 60)
        assert heard.wait(5), "no change notice"
        assert seen == [1]
        for _ in range(100):  # the sender thread counts right after Redis accepted it
            if writer.published:
                break
            deadline.wait(0.02)
        OAuthStore(engine).session_by_sid("nope")  # a read publishes nothing
        OAuthStore(engine).touch_session("nope")  # nor a write to a table nobody listens to
        deadline.wait(0.2)
        assert writer.published == 1
    finally:
        reader.close()
        writer.close()


def redis_server_subscribers(redis_server: Redis, channel: str) -> int:
    import redis

    r = redis.Redis.from_url(redis_server.url)
    try:
        return int(dict(r.pubsub_numsub(channel)).get(channel.encode(), 0))
    finally:
        r.close()


def test_a_redis_that_is_down_never_fails_the_writer(tmp_path: Path) -> None:
    down = StateSettings(redis_url=f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    engine = open_engine(tmp_path / "ztgw.db")
    upgrade(engine)
    bus = ChangeBus(down)
    bus.watch_engine(engine)
    try:
        store = OAuthStore(engine)
        store.revoke_jti("jti-down", now() + 60)  # the notice is queued, the write commits
        assert store.is_jti_revoked("jti-down")
        assert bus.published == 0
    finally:
        bus.close()
