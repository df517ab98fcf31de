"""Rate limits: token buckets per (client, dataset), in-process or shared in Redis.

Configured as a list of limits, each matching a client id and/or dataset (``*`` = any) with a
rate in requests per second and a burst.  The most specific matching limit applies.  A request
over the limit gets 429 with ``Retry-After`` and an audit event.

With a shared store (``redis_url``; :class:`ztgw.gateway.state.limits.RedisRateLimitStore`)
the limit holds across every replica.  If the store does not answer, ``fail_open=False`` (the
default) refuses the request with 503; ``fail_open=True`` falls back to this replica's own
bucket (the limit then holds per replica only).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

from ..errors import ServiceUnavailable


@dataclass(frozen=True, slots=True)
class RateLimit:
    client: str = "*"
    dataset: str = "*"
    rate: float = 10.0  # tokens per second
    burst: float = 20.0

    @property
    def specificity(self) -> int:
        return (self.client != "*") * 2 + (self.dataset != "*")


class SharedLimitStore(Protocol):
    async def take(self, client: str, dataset: str, limit: RateLimit) -> float: ...


class RateLimiter:
    MAX_BUCKETS = 100_000

    def __init__(self, limits: list[RateLimit], store: SharedLimitStore | None = None,
                 fail_open: bool = False) -> None:
        self.limits = sorted(limits, key=lambda lim: lim.specificity, reverse=True)
        self._buckets: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()
        self.store, self.fail_open = store, fail_open

    async def acquire(self, client: str, dataset: str) -> float:
        """0.0 if the request may pass, else the seconds until it could (shared when a store
        is configured).  Raises :class:`ServiceUnavailable` if the store fails closed."""
        if self.store is None:
            return self.check(client, dataset)
        lim = self._limit_for(client, dataset)
        if lim is None:
            return 0.0
        try:
            return await self.store.take(client, dataset, lim)
        except Exception as exc:  # the store's RedisUnavailable (or anything it let through)
            if self.fail_open:
                return self.check(client, dataset)
            raise ServiceUnavailable("the shared rate-limit store is unavailable",
                                     code="rate_limit_unavailable") from exc

    def _limit_for(self, client: str, dataset: str) -> RateLimit | None:
        for lim in self.limits:
            if lim.client in ("*", client) and lim.dataset in ("*", dataset):
                return lim
        return None

    def check(self, client: str, dataset: str) -> float:
        """0.0 if the request may pass, else the seconds until it could."""
        lim = self._limit_for(client, dataset)
        if lim is None:
            return 0.0
        key = (client, dataset)
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.MAX_BUCKETS:
                    self._buckets.clear()
                bucket = self._buckets[key] = [lim.burst, now]
            tokens = min(lim.burst, bucket[0] + (now - bucket[1]) * lim.rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / lim.rate if lim.rate > 0 else 3600.0
