"""Calls to the government data APIs: one pooled aiohttp client, timeouts, size limits,
retries only for idempotent requests and only when nothing was received, and a circuit
breaker per upstream so a dead department API fails fast instead of tying up workers.

Upstream answers are untrusted input (OWASP API10): redirects are not followed, bodies are
bounded, 5xx and garbage become 502 JSON errors for the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp

from ..errors import ServiceUnavailable, UpstreamError, UpstreamTimeout
from ..metrics import Metrics, status_class

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "proxy-connection",
})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
# errors where the request certainly did not reach the upstream's application
_RETRYABLE = (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError)


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    connect_timeout: float
    read_timeout: float
    max_response_body: int
    breaker_failures: int = 5  # consecutive failures that open the circuit
    breaker_reset: float = 10.0  # seconds before a half-open probe


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class CircuitBreaker:
    """closed → (N consecutive failures) → open → (reset time) → half-open: one probe."""

    def __init__(self, failures: int, reset: float) -> None:
        self.threshold, self.reset = failures, reset
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if time.monotonic() - self.opened_at >= self.reset and not self.probing:
            self.probing = True
            return True
        return False

    def success(self) -> None:
        self.failures, self.opened_at, self.probing = 0, None, False

    def failure(self) -> None:
        self.failures += 1
        self.probing = False
        if self.failures >= self.threshold:
            self.opened_at = time.monotonic()


class UpstreamPool:
    def __init__(self, config: UpstreamConfig, metrics: Metrics) -> None:
        self.config, self.metrics = config, metrics
        self._session: aiohttp.ClientSession | None = None
        self._breakers: dict[str, CircuitBreaker] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=512, limit_per_host=256, keepalive_timeout=30,
                                         ttl_dns_cache=60)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout,
                                          sock_read=self.config.read_timeout),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def breaker(self, base: str) -> CircuitBreaker:
        b = self._breakers.get(base)
        if b is None:
            b = self._breakers[base] = CircuitBreaker(self.config.breaker_failures,
                                                      self.config.breaker_reset)
        return b

    async def fetch(self, base: str, path_and_query: str, method: str, headers: dict[str, str],
                    api: str) -> UpstreamResponse:
        breaker = self.breaker(base)
        if not breaker.allow():
            self.metrics.upstream.labels(api, "circuit_open").inc()
            raise ServiceUnavailable("the data source is unavailable; try again later",
                                     code="upstream_unavailable", headers={"Retry-After": "10"})
        attempts = 2 if method in IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                resp = await self._once(base + path_and_query, method, headers, api)
            except UpstreamError as exc:
                if exc.code == "upstream_unreachable" and attempt + 1 < attempts:
                    continue
                if exc.code in ("upstream_unreachable", "upstream_timeout", "upstream_error"):
                    breaker.failure()
                raise
            if resp.status >= 500:
                breaker.failure()
                raise UpstreamError(f"the data source failed ({resp.status})")
            breaker.success()
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, url: str, method: str, headers: dict[str, str],
                    api: str) -> UpstreamResponse:
        assert self._session is not None, "upstream pool not started"
        limit = self.config.max_response_body
        started = time.perf_counter()
        try:
            async with self._session.request(method, url, headers=headers,
                                             allow_redirects=False) as resp:
                if resp.content_length is not None and resp.content_length > limit:
                    raise UpstreamError("the data source's answer is too large",
                                        code="upstream_too_large")
                body = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    body += chunk
                    if len(body) > limit:
                        raise UpstreamError("the data source's answer is too large",
                                            code="upstream_too_large")
                status = resp.status
                out = {k.lower(): v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
        except TimeoutError as exc:
            self.metrics.upstream.labels(api, "timeout").inc()
            raise UpstreamTimeout("the data source did not answer in time",
                                  code="upstream_timeout") from exc
        except _RETRYABLE as exc:
            self.metrics.upstream.labels(api, "unreachable").inc()
            raise UpstreamError("the data source could not be reached",
                                code="upstream_unreachable") from exc
        except aiohttp.ClientError as exc:
            self.metrics.upstream.labels(api, "error").inc()
            raise UpstreamError("the data source's answer is malformed",
                                code="upstream_malformed") from exc
        self.metrics.upstream.labels(api, status_class(status)).inc()
        self.metrics.upstream_duration.labels(api).observe(time.perf_counter() - started)
        if 300 <= status < 400:
            raise UpstreamError("the data source answered with a redirect",
                                code="upstream_redirect")
        return UpstreamResponse(status, out, bytes(body))
