"""Calls to the government data APIs: one pooled HTTP/1.1 client (:mod:`.httpclient`, llhttp
on asyncio — aiohttp's client was the data plane's bottleneck), timeouts, size limits,
retries only for idempotent requests and only when nothing was received, and a circuit
breaker per upstream so a dead department API fails fast instead of tying up workers.

Upstream answers are untrusted input (OWASP API10): redirects are not followed, bodies are
bounded, 5xx and garbage become 502 JSON errors for the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import quote

from ..errors import ServiceUnavailable, UpstreamError, UpstreamTimeout
from ..metrics import Metrics, status_class
from .httpclient import (
    ConnectFailed,
    HttpClient,
    Malformed,
    ReadTimeout,
    StreamedBody,
    StreamedResponse,
    TooLarge,
)

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "proxy-connection",
})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})
PATH_SAFE = "/:@!$&'()*+,;=-._~"  # RFC 3986 pchar (and "/") that need no encoding


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    connect_timeout: float
    read_timeout: float
    max_response_body: int
    breaker_failures: int = 5  # consecutive failures that open the circuit
    breaker_reset: float = 10.0  # seconds before a half-open probe
    stream_over: int = 1024 * 1024  # list answers longer than this stream through the gateway
    max_streamed_body: int = 4 * 1024 * 1024 * 1024


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    stream: StreamedBody | None = None  # a large answer, read chunk by chunk (body is b"")


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
        self._client: HttpClient | None = None
        self._breakers: dict[str, CircuitBreaker] = {}

    async def start(self) -> None:
        self._client = HttpClient(connect_timeout=self.config.connect_timeout,
                                  read_timeout=self.config.read_timeout,
                                  max_connections_per_origin=256)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def breaker(self, base: str) -> CircuitBreaker:
        b = self._breakers.get(base)
        if b is None:
            b = self._breakers[base] = CircuitBreaker(self.config.breaker_failures,
                                                      self.config.breaker_reset)
        return b

    async def fetch(self, base: str, path_and_query: str, method: str, headers: dict[str, str],
                    api: str, *, stream: bool = False) -> UpstreamResponse:
        """``stream``: a large 200 answer comes back as ``UpstreamResponse.stream``."""
        breaker = self.breaker(base)
        if not breaker.allow():
            self.metrics.upstream.labels(api, "circuit_open").inc()
            raise ServiceUnavailable("the data source is unavailable; try again later",
                                     code="upstream_unavailable", headers={"Retry-After": "10"})
        attempts = 2 if method in IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                resp = await self._once(base, path_and_query, method, headers, api, stream)
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

    async def _once(self, base: str, target: str, method: str, headers: dict[str, str],
                    api: str, stream: bool = False) -> UpstreamResponse:
        assert self._client is not None, "upstream pool not started"
        started = time.perf_counter()
        # the path is canonical and *decoded* (a record id may hold a space, a quote, 汉字):
        # percent-encode it for the request line; the query is already encoded
        path, sep, query = target.partition("?")
        target = quote(path, safe=PATH_SAFE) + sep + query
        try:
            resp = await self._client.request(
                base, method, target, headers, max_body=self.config.max_response_body,
                stream_over=self.config.stream_over if stream else -1,
                stream_limit=self.config.max_streamed_body)
        except ReadTimeout as exc:
            self.metrics.upstream.labels(api, "timeout").inc()
            raise UpstreamTimeout("the data source did not answer in time",
                                  code="upstream_timeout") from exc
        except ConnectFailed as exc:
            self.metrics.upstream.labels(api, "unreachable").inc()
            raise UpstreamError("the data source could not be reached",
                                code="upstream_unreachable") from exc
        except TooLarge as exc:
            self.metrics.upstream.labels(api, "error").inc()
            raise UpstreamError("the data source's answer is too large",
                                code="upstream_too_large") from exc
        except (Malformed, ValueError) as exc:
            self.metrics.upstream.labels(api, "error").inc()
            raise UpstreamError("the data source's answer is malformed",
                                code="upstream_malformed") from exc
        status = resp.status
        self.metrics.upstream.labels(api, status_class(status)).inc()
        self.metrics.upstream_duration.labels(api).observe(time.perf_counter() - started)
        if 300 <= status < 400:
            raise UpstreamError("the data source answered with a redirect",
                                code="upstream_redirect")
        out = {k: v for k, v in resp.headers.items() if k not in HOP_BY_HOP}
        if isinstance(resp, StreamedResponse):
            return UpstreamResponse(status, out, b"", resp.body)
        return UpstreamResponse(status, out, resp.body)
