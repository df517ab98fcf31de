"""Rate limits and daily record quotas shared by every replica, in Redis.

Rate limit: GCRA (the generic cell rate algorithm — a token bucket kept as one timestamp, the
"theoretical arrival time") in one Lua script, so a request costs exactly one round trip and
the check-and-update is atomic across replicas.  The clock is Redis's own (``TIME``), so
replicas with skewed clocks still share one bucket.  With rate ``r`` and burst ``b`` it admits
``b`` requests at once and then ``r`` per second, as the in-process token bucket does.

Quota: ``INCRBY`` on a per (subject, dataset, UTC day) counter that expires after two days.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .redis_client import RedisUnavailable, StateSettings, async_client

if TYPE_CHECKING:
    from ..dataplane.ratelimit import RateLimit

# KEYS[1] bucket; ARGV[1] emission interval T (s), ARGV[2] burst b.
# tat' = max(tat, now) + T; admitted iff tat' - b*T <= now.  Returns the wait in seconds.
GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return tostring(allow_at - now)
end
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX',
           math.max(1, math.ceil((new_tat - now) * 1000)))
return '0'
"""
MAX_INTERVAL = 86_400.0  # rate 0: one request a day once the burst is spent
QUOTA_TTL = 2 * 86_400  # a day's counter outlives the day (clock skew between replicas)


def _part(text: str) -> str:
    """A key part that cannot collide through the separator (ids are usually short and
    plain; anything else is hashed)."""
    if len(text) <= 128 and ":" not in text and text.isprintable():
        return text
    return "h" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class RedisRateLimitStore:
    """``await take(client, dataset, limit)`` → 0.0 when admitted, else seconds to wait."""

    def __init__(self, settings: StateSettings, client: Any | None = None) -> None:
        self.settings = settings
        self._redis = client if client is not None else async_client(settings)
        self._script = self._redis.register_script(GCRA)

    async def take(self, client: str, dataset: str, limit: RateLimit) -> float:
        interval = 1.0 / limit.rate if limit.rate > 0 else MAX_INTERVAL
        key = f"{self.settings.key_prefix}rl:{_part(client)}:{_part(dataset)}"
        try:
            wait = await self._script(keys=[key], args=[repr(interval), repr(max(limit.burst, 1.0))])
        except Exception as exc:  # redis.exceptions.* and socket timeouts alike
            raise RedisUnavailable("the shared rate-limit store did not answer") from exc
        return float(wait)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self._redis.aclose()


class RedisQuotaStore:
    """Records used per (subject, dataset, UTC day), shared by every replica."""

    def __init__(self, settings: StateSettings, client: Any | None = None) -> None:
        self.settings = settings
        self._redis = client if client is not None else async_client(settings)

    def _key(self, subject: str, dataset: str) -> str:
        day = datetime.now(UTC).date().isoformat()
        return f"{self.settings.key_prefix}quota:{day}:{_part(subject)}:{_part(dataset)}"

    async def used(self, subject: str, dataset: str) -> int:
        try:
            value = await self._redis.get(self._key(subject, dataset))
        except Exception as exc:
            raise RedisUnavailable("the shared quota store did not answer") from exc
        return int(value or 0)

    async def add(self, subject: str, dataset: str, n: int) -> int:
        key = self._key(subject, dataset)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(key, n)
                pipe.expire(key, QUOTA_TTL)
                total, _ = await pipe.execute()
        except Exception as exc:
            raise RedisUnavailable("the shared quota store did not answer") from exc
        return int(total)

    async def close(self) -> None:
        await self._redis.aclose()
