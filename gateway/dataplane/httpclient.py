"""A small, strict HTTP/1.1 client for the upstream hop: asyncio protocol + llhttp (httptools).

Why not aiohttp's client: on this project's machines a uvicorn app that proxies through
aiohttp's pooled ``ClientSession`` tops out near 1,800 req/s while the same app with this
client reaches ~5,000 (bench/gateway_bench.sh; docs/benchmarks.md "Data plane") — the
upstream hop was most of the data plane's cost.  The upstream call of a gateway needs far less
than a general client: one request at a time per connection, a response body read whole into
memory under a hard limit, no cookies, no redirects (they are refused anyway), no proxies.
The parser is llhttp (Node.js's parser, via httptools — the one uvicorn uses for the inbound
side), so framing, chunked encoding and malformed answers are handled by a hardened parser,
not by code written here.

What this module does:

* keep-alive pools per origin (LIFO, so a few warm connections serve the load), a cap on open
  connections per origin (callers wait for a free one), idle connections dropped before the
  upstream's own keep-alive timeout would close them under a request;
* timeouts: connect, and read (no byte from the upstream for ``read_timeout`` seconds);
* the response body bounded while it arrives (the connection is closed at the limit), and
  ``Content-Encoding: gzip|deflate|br`` decoded under the same bound (decompression bombs);
* outcomes as exceptions the pool maps to the gateway's errors: :class:`ConnectFailed` (the
  request certainly did not reach the upstream's application: safe to retry for idempotent
  methods), :class:`ReadTimeout`, :class:`TooLarge`, :class:`Malformed`.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import brotli
import httptools

ACCEPT_ENCODING = "gzip, deflate, br"
IDLE_TTL = 4.0  # seconds; below uvicorn's default keep-alive (5 s) and nginx's (75 s)
MAX_HEADER_COUNT = 128
MAX_HEADER_BYTES = 64 * 1024


class ClientError(Exception):
    """Base of every upstream-call failure."""


class ConnectFailed(ClientError):
    """Nothing was sent to, or received from, the upstream application."""


class ReadTimeout(ClientError):
    pass


class TooLarge(ClientError):
    pass


class Malformed(ClientError):
    pass


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, base: str) -> Origin:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {base!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port)


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


STREAM_HIGH = 1024 * 1024  # buffered unread bytes that pause reading from the upstream
STREAM_LOW = 256 * 1024  # … and resume it


class StreamedBody:
    """The body of a large answer, chunk by chunk, with backpressure: reading from the
    upstream pauses while more than ``STREAM_HIGH`` bytes wait for the consumer.  The body is
    *not* decoded (a streaming consumer re-encodes as it goes)."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._chunks: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._done = False
        self._error: BaseException | None = None
        self._wake: asyncio.Future[None] | None = None
        self._paused = False
        self.on_finish: Any = None  # the pool's release, called once at the end

    # --- producer side (the connection's callbacks) --------------------------------------
    def _push(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._queued += len(chunk)
        if self._queued > STREAM_HIGH and not self._paused and self._conn.transport is not None:
            self._conn.transport.pause_reading()
            self._paused = True
        self._notify()

    def _end(self, error: BaseException | None = None) -> None:
        if self._done:
            return
        self._done, self._error = True, error
        self._notify()

    def _notify(self) -> None:
        w, self._wake = self._wake, None
        if w is not None and not w.done():
            w.set_result(None)

    # --- consumer side ---------------------------------------------------------------------
    def __aiter__(self) -> StreamedBody:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self._done:
                self._finish()
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._wake = self._conn.loop.create_future()
            await self._wake
        chunk = self._chunks.popleft()
        self._queued -= len(chunk)
        if self._paused and self._queued < STREAM_LOW and self._conn.transport is not None:
            self._conn.transport.resume_reading()
            self._paused = False
        return chunk

    def _finish(self) -> None:
        cb, self.on_finish = self.on_finish, None
        if cb is not None:
            cb()

    def abort(self) -> None:
        """The consumer gives up (client gone, body unprotectable): drop the connection."""
        if not self._done:
            self._conn.reusable = False
            self._conn._close()
            self._end(Malformed("aborted by the gateway"))
        self._finish()


@dataclass(slots=True)
class StreamedResponse:
    status: int
    headers: dict[str, str]
    body: StreamedBody


class _Connection(asyncio.Protocol):
    """One upstream connection; one request in flight at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read_timeout: float) -> None:
        self.loop = loop
        self.read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.parser: Any = None
        self.fut: asyncio.Future[Response] | None = None
        self.limit = 0
        self.size = 0
        self.chunks: list[bytes] = []
        self.headers: dict[str, str] = {}
        self.header_bytes = 0
        self.closed = False
        self.reusable = False
        self.received = False
        self.last_activity = 0.0
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.head_only = False
        self.status = 0
        self._name = b""
        self.stream_over = -1  # with >= 0: answers longer than this (or unframed) are streamed
        self.stream_limit = 0  # the bound of a streamed body
        self.stream: StreamedBody | None = None

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        self.last_activity = self.loop.time()
        if self.fut is None and self.stream is None:  # bytes nobody asked for: not trustworthy
            self.reusable = False
            self._close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Malformed("the upstream tried to switch protocols"))
        except httptools.HttpParserError as exc:
            if self.stream is not None:
                self.stream._end(Malformed(f"unparseable upstream answer: {exc}"))
                self.stream = None
                self.reusable = False
                self._close()
            elif self.fut is not None:  # a callback may have failed the request already
                self._fail(Malformed(f"unparseable upstream answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        if self.stream is not None:
            stream, self.stream = self.stream, None
            unframed = ("content-length" not in self.headers
                        and "chunked" not in self.headers.get("transfer-encoding", ""))
            stream._end(None if unframed else Malformed("the upstream closed the connection mid-answer"))
            return
        fut = self.fut
        if fut is None or fut.done():
            return
        if self.status and not self.head_only and "content-length" not in self.headers \
                and "chunked" not in self.headers.get("transfer-encoding", "") \
                and not self.parser.should_keep_alive():
            self.on_message_complete()  # a body delimited by the end of the connection
            return
        if not self.received:
            fut.set_exception(ConnectFailed("the upstream closed the connection"))
        else:
            fut.set_exception(Malformed("the upstream closed the connection mid-answer"))
        self.fut = None

    # --- llhttp callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        # a second answer to one request: never read it as the next one
        if self.fut is None and self.stream is None:
            self.reusable = False
            self._close()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.fut is None:  # after the answer (or a failure): nothing more is read
            return
        self.header_bytes += len(name) + len(value)
        if len(self.headers) >= MAX_HEADER_COUNT or self.header_bytes > MAX_HEADER_BYTES:
            self._fail(Malformed("the upstream sent too many header bytes"))
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        prev = self.headers.get(key)
        self.headers[key] = text if prev is None else prev + ", " + text

    def on_headers_complete(self) -> None:
        if self.fut is None:
            return
        self.status = self.parser.get_status_code()
        length = self.headers.get("content-length")
        if length is not None and not length.isdigit():
            self._fail(Malformed("the upstream sent an invalid Content-Length"))
            return
        size = int(length) if length is not None else None
        if self.head_only:  # HEAD: no body follows, whatever the headers say
            self.reusable = False
            self.on_message_complete()
            return
        if self.stream_over >= 0 and self.status == 200 and (size is None or size > self.stream_over):
            self.limit = self.stream_limit
            if size is not None and size > self.limit:
                self._fail(TooLarge("the upstream answer is too large"))
                return
            self.stream = StreamedBody(self)
            fut, self.fut = self.fut, None
            self.chunks = []
            if fut is not None and not fut.done():
                fut.set_result(StreamedResponse(self.status, self.headers, self.stream))  # type: ignore[arg-type]
            return
        if size is not None and size > self.limit:
            self._fail(TooLarge("the upstream answer is too large"))

    def on_body(self, body: bytes) -> None:
        if self.stream is not None:
            self.size += len(body)
            if self.size > self.limit:
                self.stream._end(TooLarge("the upstream answer is too large"))
                self.reusable = False
                self._close()
                return
            self.stream._push(body)
            return
        if self.fut is None:
            return
        self.size += len(body)
        if self.size > self.limit:
            self._fail(TooLarge("the upstream answer is too large"))
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        if self.stream is not None:
            self._cancel_timer()
            self.reusable = self.parser.should_keep_alive()
            stream, self.stream = self.stream, None
            stream._end()
            return
        fut = self.fut
        if fut is None or fut.done():
            return
        self._cancel_timer()
        if not self.head_only:
            self.reusable = self.parser.should_keep_alive()
        self.fut = None
        fut.set_result(Response(self.status, self.headers, b"".join(self.chunks)))

    # --- use ------------------------------------------------------------------------------
    def request(self, data: bytes, limit: int, head_only: bool, stream_over: int = -1,
                stream_limit: int = 0) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.stream_over, self.stream_limit, self.stream = stream_over, stream_limit, None
        self.parser = httptools.HttpResponseParser(self)
        self.fut = fut = self.loop.create_future()
        self.limit, self.size, self.chunks, self.headers = limit, 0, [], {}
        self.header_bytes, self.status, self.received = 0, 0, False
        self.head_only, self.reusable = head_only, False
        self.last_activity = self.loop.time()
        self.timer = self.loop.call_at(self.last_activity + self.read_timeout, self._check_timeout)
        self.transport.write(data)
        return fut

    def _check_timeout(self) -> None:
        self.timer = None
        if self.fut is None and self.stream is None:
            return
        due = self.last_activity + self.read_timeout
        if self.loop.time() < due:
            self.timer = self.loop.call_at(due, self._check_timeout)
            return
        self._fail(ReadTimeout("the upstream did not answer in time"))

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _fail(self, exc: ClientError) -> None:
        if self.stream is not None:
            stream, self.stream = self.stream, None
            stream._end(exc)
        fut, self.fut = self.fut, None
        self._cancel_timer()
        self.reusable = False
        self._close()
        if fut is not None and not fut.done():
            fut.set_exception(exc)

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self.closed = True


class _OriginPool:
    def __init__(self, origin: Origin, max_connections: int) -> None:
        self.origin = origin
        self.max = max_connections
        self.idle: collections.deque[_Connection] = collections.deque()
        self.open = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()


class HttpClient:
    """Pooled HTTP/1.1 client for upstream calls (see the module docstring)."""

    def __init__(self, *, connect_timeout: float, read_timeout: float,
                 max_connections_per_origin: int = 256, idle_ttl: float = IDLE_TTL,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.max_per_origin, self.idle_ttl = max_connections_per_origin, idle_ttl
        self._pools: dict[str, _OriginPool] = {}
        self._ssl = ssl_context
        self._closed = False

    def _pool(self, base: str) -> _OriginPool:
        pool = self._pools.get(base)
        if pool is None:
            pool = self._pools[base] = _OriginPool(Origin.parse(base), self.max_per_origin)
        return pool

    async def _acquire(self, pool: _OriginPool) -> _Connection:
        loop = asyncio.get_running_loop()
        now = loop.time()
        while pool.idle:
            conn = pool.idle.pop()
            if not conn.closed and now - conn.idle_since < self.idle_ttl:
                return conn
            pool.open -= 1
            conn._close()
        while pool.open >= pool.max:
            waiter: asyncio.Future[None] = loop.create_future()
            pool.waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
            while pool.idle:
                conn = pool.idle.pop()
                if not conn.closed and loop.time() - conn.idle_since < self.idle_ttl:
                    return conn
                pool.open -= 1
                conn._close()
        pool.open += 1
        origin = pool.origin
        try:
            ctx = None
            if origin.scheme == "https":
                ctx = self._ssl or ssl.create_default_context()
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(loop, self.read_timeout),
                                       origin.host, origin.port, ssl=ctx,
                                       server_hostname=origin.host if ctx else None),
                self.connect_timeout)
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            pool.open -= 1
            self._wake(pool)
            raise ConnectFailed(f"cannot connect to the upstream: {exc}") from exc
        return conn

    def _release(self, pool: _OriginPool, conn: _Connection) -> None:
        if conn.reusable and not conn.closed and not self._closed:
            conn.idle_since = asyncio.get_running_loop().time()
            pool.idle.append(conn)
        else:
            pool.open -= 1
            conn._close()
        self._wake(pool)

    @staticmethod
    def _wake(pool: _OriginPool) -> None:
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def request(self, base: str, method: str, target: str, headers: dict[str, str],
                      *, body: bytes = b"", max_body: int,
                      stream_over: int = -1, stream_limit: int = 0) -> Response | StreamedResponse:
        """One request; ``target`` is the path and query, already canonical and encoded.

        ``stream_over`` ≥ 0: a 200 answer longer than this (or without a length) comes back as
        a :class:`StreamedResponse` — its body still encoded, ``stream_limit`` bounding it — and
        the connection returns to the pool when the body has been read (or is aborted)."""
        if self._closed:
            raise ConnectFailed("the client is closed")
        pool = self._pool(base)
        if any(c in target for c in " \r\n\t") or not target.startswith("/"):
            raise ValueError("invalid request target")
        lines = [f"{method} {target} HTTP/1.1\r\nhost: {pool.origin.host_header}\r\n"
                 f"accept-encoding: {ACCEPT_ENCODING}\r\n"]
        for name, value in headers.items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
                raise ValueError("header injection attempt")
            lines.append(f"{name}: {value}\r\n")
        if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines.append(f"content-length: {len(body)}\r\n")
        lines.append("\r\n")
        data = "".join(lines).encode("latin-1") + body
        conn = await self._acquire(pool)
        try:
            resp = await conn.request(data, max_body, method == "HEAD", stream_over, stream_limit)
        except BaseException:
            conn.reusable = False
            self._release(pool, conn)
            raise
        if isinstance(resp, StreamedResponse):
            resp.body.on_finish = lambda: self._release(pool, conn)
            resp.headers.pop("content-length", None)
            return resp
        self._release(pool, conn)
        encoding = resp.headers.get("content-encoding", "").strip().lower()
        if encoding and encoding != "identity":
            resp.body = decode_body(resp.body, encoding, max_body)
            del resp.headers["content-encoding"]
            resp.headers.pop("content-length", None)
        return resp

    async def close(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            while pool.idle:
                pool.idle.pop()._close()
            pool.open = 0
            for waiter in pool.waiters:
                if not waiter.done():
                    waiter.set_exception(ConnectFailed("the client is closed"))
        self._pools.clear()


def decode_body(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo Content-Encoding with the output bounded (a small bomb must not become 10 GB)."""
    out = body
    for coding in reversed([c.strip() for c in encoding.split(",") if c.strip()]):
        if coding in ("gzip", "x-gzip", "deflate"):
            out = _inflate(out, coding, limit)
        elif coding == "br":
            try:
                dec = brotli.Decompressor()
                out = dec.process(out, output_buffer_limit=limit + 1)
                if len(out) <= limit and not dec.is_finished():
                    raise brotli.error("truncated")
            except brotli.error:
                raise Malformed("the upstream's brotli body is corrupt") from None
        elif coding == "identity":
            continue
        else:
            raise Malformed(f"the upstream used an unsupported content encoding {coding!r}")
        if len(out) > limit:
            raise TooLarge("the upstream answer is too large once decompressed")
    return out


def _inflate(data: bytes, coding: str, limit: int) -> bytes:
    # gzip: wbits 31; "deflate" means zlib-wrapped (15), but raw deflate (-15) is common too
    for wbits in ((31,) if coding != "deflate" else (15, -15)):
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(data, limit + 1)
        except zlib.error:
            continue
        if d.unconsumed_tail or len(out) > limit:
            raise TooLarge("the upstream answer is too large once decompressed")
        if not d.eof:
            raise Malformed(f"the upstream's {coding} body is truncated")
        return out
    raise Malformed(f"the upstream's {coding} body is corrupt")
