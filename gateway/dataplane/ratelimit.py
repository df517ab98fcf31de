"""Rate limits: token buckets per (client, dataset), in-process.

Configured as a list of limits, each matching a client id and/or dataset (``*`` = any) with a
rate in requests per second and a burst.  The most specific matching limit applies.  A request
over the limit gets 429 with ``Retry-After`` and an audit event.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimit:
    client: str = "*"
    dataset: str = "*"
    rate: float = 10.0  # tokens per second
    burst: float = 20.0

    @property
    def specificity(self) -> int:
        return (self.client != "*") * 2 + (self.dataset != "*")


class RateLimiter:
    MAX_BUCKETS = 100_000

    def __init__(self, limits: list[RateLimit]) -> None:
        self.limits = sorted(limits, key=lambda lim: lim.specificity, reverse=True)
        self._buckets: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

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
