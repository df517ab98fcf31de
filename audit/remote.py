"""The audit trail of a home shared by several gateway processes: one writer, many emitters.

A home's SM3 chain has exactly one writer (:class:`.log.AuditLog`).  When ``ztgw serve`` runs
several worker processes, that writer lives in one *audit daemon* process (``gateway/auditd.py``)
and every worker talks to it through :class:`RemoteAuditLog` over a Unix socket in the home
(directory 0700, socket 0600: only the gateway's own user can put events in the trail).  The
contract is :class:`AuditLog`'s: ``emit`` / ``emit_async`` return a future that completes once
the event is in the spool (durable under the fsync policy) and raise :class:`AuditUnavailable`
when the trail cannot take it — so "no audit, no access" holds across processes, and a dead
daemon means refusals, never unaudited answers.

Wire format (both directions, big-endian): a request frame is ``length:u32 id:u64 flags:u8``
followed by ``length`` bytes of the event's JSON; ``flags & 1`` asks for an acknowledgement.
The daemon answers ``id:u64 status:u8`` per acknowledged event (0 spooled, 1 unavailable, 2
invalid) and pushes ``0:u64 9:u8 length:u32 json`` state frames (healthy, queue depth, …)
twice a second.  Frames of one event-loop step leave in one ``send`` on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson

from .errors import AuditUnavailable, InvalidEvent
from .events import iso_now, new_event_id

REQUEST = struct.Struct(">IQB")  # length, id, flags
ACK = struct.Struct(">QB")  # id, status
STATE_LEN = struct.Struct(">I")
WANT_ACK = 1
OK, UNAVAILABLE, INVALID, STATE = 0, 1, 2, 9
MAX_EVENT_BYTES = 256 * 1024
MAX_PENDING = 50_000
RECONNECT_EVERY = 0.2


def socket_path(home: Path) -> Path:
    """``HOME/run/audit.sock``; when that is longer than a Unix socket path may be (108 bytes),
    a private per-user folder under /tmp named after the home's absolute path."""
    path = home.resolve() / "run" / "audit.sock"
    if len(os.fsencode(path)) <= 100:
        return path
    import hashlib

    tag = hashlib.sha256(os.fsencode(home.resolve())).hexdigest()[:20]
    return Path(f"/tmp/ztgw-{os.getuid()}") / f"{tag}.sock"  # noqa: S108 - 0700, per user


class FrameProtocol(asyncio.Protocol):
    """Both ends of the socket: frames written in one event-loop step leave in one ``send``."""

    transport: asyncio.Transport | None
    out: list[bytes]
    flush_scheduled: bool

    def write(self, frame: bytes) -> None:
        self.out.append(frame)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(self.out))
        self.out.clear()


class _Client(FrameProtocol):
    def __init__(self, owner: RemoteAuditLog) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        owner = self.owner
        buf = self.buf
        pos = 0
        while len(buf) - pos >= ACK.size:
            ident, status = ACK.unpack_from(buf, pos)
            if status == STATE:
                if len(buf) - pos < ACK.size + STATE_LEN.size:
                    break
                (n,) = STATE_LEN.unpack_from(buf, pos + ACK.size)
                end = pos + ACK.size + STATE_LEN.size + n
                if len(buf) < end:
                    break
                with contextlib.suppress(orjson.JSONDecodeError):
                    owner.state = orjson.loads(bytes(buf[end - n:end]))
                pos = end
                continue
            pos += ACK.size
            owner._settle(ident, status)
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.owner._lost(self)



Waiter = asyncio.Future[None] | Future[None]


class RemoteAuditLog:
    """:class:`AuditLog`'s emitting side, talking to the home's audit daemon."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: _Client | None = None
        self._pending: dict[int, tuple[Waiter, asyncio.AbstractEventLoop | None]] = {}
        self._next = 1
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.written = 0

    # --- life cycle (on the gateway's event loop) -------------------------------------------
    async def start_async(self, timeout: float = 10.0) -> None:
        self._loop = asyncio.get_running_loop()
        deadline = self._loop.time() + timeout
        while True:
            try:
                await self._connect()
                break
            except OSError as exc:
                if self._loop.time() >= deadline:
                    raise AuditUnavailable(f"the audit daemon at {self.path} is not reachable: "
                                           f"{exc.strerror or exc}") from exc
                await asyncio.sleep(RECONNECT_EVERY)
        for _ in range(50):  # the first state frame says whether the trail is healthy
            if self.state:
                break
            await asyncio.sleep(0.02)
        self._task = self._loop.create_task(self._keep_connected())

    def start(self) -> None:
        """Nothing to do synchronously: :meth:`start_async` runs on the event loop."""

    async def _connect(self) -> None:
        assert self._loop is not None
        _, client = await self._loop.create_unix_connection(lambda: _Client(self), str(self.path))
        self._client = client

    async def _keep_connected(self) -> None:
        while not self._closed:
            await asyncio.sleep(RECONNECT_EVERY)
            if self._client is None and not self._closed:
                with contextlib.suppress(OSError):
                    await self._connect()

    def _lost(self, client: _Client) -> None:
        if self._client is client:
            self._client = None
        self.state = {}
        failed = AuditUnavailable("the audit daemon connection was lost")
        with self._lock:
            pending, self._pending = self._pending, {}
        for waiter, loop in pending.values():
            _resolve(waiter, loop, failed)

    def close(self, timeout: float = 10.0) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        client = self._client
        if client is not None and client.transport is not None:
            client.flush()
            client.transport.close()

    async def close_async(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for outstanding acknowledgements, then disconnect."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._pending and loop.time() < deadline and self._client is not None:
            await asyncio.sleep(0.02)
        self.close(timeout)

    # --- state ------------------------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return self._client is not None and bool(self.state.get("healthy"))

    @property
    def depth(self) -> int:
        return int(self.state.get("queued", 0)) + len(self._pending)

    def status(self) -> dict[str, Any]:
        return {**self.state, "remote": str(self.path), "connected": self._client is not None,
                "pending": len(self._pending)}

    def flush(self, timeout: float = 10.0) -> bool:
        return True  # shipping is the daemon's business

    # --- emitting ---------------------------------------------------------------------------
    def _frame(self, event: dict[str, Any], ident: int, want_ack: bool) -> bytes:
        ev = event.get("event")
        if not isinstance(ev, dict) or not isinstance(event.get("@timestamp"), str):
            raise InvalidEvent("an audit event needs an `event` object and an `@timestamp` string")
        ev.setdefault("id", new_event_id())
        try:
            body = orjson.dumps(event)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise InvalidEvent(f"the event cannot be serialised: {exc}") from exc
        if len(body) > MAX_EVENT_BYTES:
            raise InvalidEvent(f"the event is larger than {MAX_EVENT_BYTES} bytes")
        return REQUEST.pack(len(body), ident, WANT_ACK if want_ack else 0) + body

    def _check(self) -> None:
        if not self.healthy:
            raise AuditUnavailable("the audit trail is unavailable" if self._client is not None
                                   else "the audit daemon is not connected")
        if len(self._pending) >= MAX_PENDING:
            raise AuditUnavailable("the audit queue is full")

    def _ident(self) -> int:
        with self._lock:
            ident = self._next
            self._next += 1
        return ident

    def emit_async(self, event: dict[str, Any], *, wait: bool = True) -> asyncio.Future[None] | None:
        """On the gateway's event loop: queue the event; with ``wait`` an asyncio future that
        completes once the daemon has it in the spool."""
        self._check()
        ident = self._ident()
        frame = self._frame(event, ident, wait)
        fut: asyncio.Future[None] | None = None
        if wait:
            fut = asyncio.get_running_loop().create_future()
            with self._lock:
                self._pending[ident] = (fut, None)
        assert self._client is not None
        self._client.write(frame)
        self.written += 1
        return fut

    def emit(self, event: dict[str, Any]) -> Future[None]:
        """From any thread: a concurrent future, as :meth:`AuditLog.emit` returns."""
        self._check()
        loop = self._loop
        if loop is None or loop.is_closed():
            raise AuditUnavailable("the audit daemon is not connected")
        ident = self._ident()
        frame = self._frame(event, ident, True)
        fut: Future[None] = Future()
        with self._lock:
            self._pending[ident] = (fut, None)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._send(frame, ident)
        else:
            loop.call_soon_threadsafe(self._send, frame, ident)
        self.written += 1
        return fut

    def _send(self, frame: bytes, ident: int) -> None:
        client = self._client
        if client is None:
            self._settle(ident, UNAVAILABLE)
            return
        client.write(frame)

    def _settle(self, ident: int, status: int) -> None:
        with self._lock:
            item = self._pending.pop(ident, None)
        if item is None:
            return
        waiter, loop = item
        exc: BaseException | None = None
        if status == UNAVAILABLE:
            exc = AuditUnavailable("the audit trail refused the event")
        elif status != OK:
            exc = InvalidEvent("the audit trail refused the event as invalid")
        _resolve(waiter, loop, exc)


def _resolve(waiter: Waiter, _loop: asyncio.AbstractEventLoop | None, exc: BaseException | None) -> None:
    if waiter.done():
        return
    if exc is None:
        waiter.set_result(None)
    else:
        waiter.set_exception(exc)


def prepare_socket_dir(path: Path) -> None:
    """The socket's folder, private to this user (0700); a stale socket file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


__all__ = ["RemoteAuditLog", "iso_now", "prepare_socket_dir", "socket_path"]
