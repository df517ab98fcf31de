"""One Redis client factory for the shared state (rate limits, quotas, change notices).

Short timeouts: a request waits at most ``timeout`` seconds on Redis before the configured
failure mode applies (closed: 503; open: this replica's in-process limiter).  The URL may
carry a password (``redis://:PASSWORD@host/0``) or TLS (``rediss://``); it is never logged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class RedisUnavailable(Exception):
    """Redis did not answer (connection refused, timeout, error reply)."""


@dataclass(frozen=True, slots=True)
class StateSettings:
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    key_prefix: str = "ztgw:"
    fail_open: bool = False  # Redis down: False → refuse with 503, True → in-process limits
    timeout: float = 0.25  # seconds per Redis command on the request path

    @property
    def distributed(self) -> bool:
        return self.redis_url is not None


def async_client(s: StateSettings) -> Any:
    """A ``redis.asyncio.Redis`` (connections are made lazily, on the running event loop)."""
    import redis.asyncio as aioredis

    if s.redis_url is None:
        raise ValueError("no redis_url configured")
    return aioredis.Redis.from_url(
        s.redis_url, socket_timeout=s.timeout, socket_connect_timeout=max(s.timeout, 1.0),
        health_check_interval=30, max_connections=256)


def sync_client(s: StateSettings, timeout: float | None = None) -> Any:
    import redis

    if s.redis_url is None:
        raise ValueError("no redis_url configured")
    t = timeout if timeout is not None else max(s.timeout, 1.0)
    return redis.Redis.from_url(s.redis_url, socket_timeout=t, socket_connect_timeout=t,
                                health_check_interval=30)
