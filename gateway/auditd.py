"""The audit daemon: the single writer of a home's audit trail when ``ztgw serve`` runs several
worker processes (``--workers N``).

It runs :class:`ztgw.audit.log.AuditLog` (chain, spool, fsync, checkpoints, shippers) and the
detection engine fed by it, and serves the workers' :class:`ztgw.audit.remote.RemoteAuditLog`
over a Unix socket in the home (folder 0700, socket 0600).  Acknowledgements go back only once
the event is in the spool, so a worker holding a 重要/核心 response waits exactly as it would
for an in-process writer.  ``ztgw serve`` starts it before the workers, restarts it if it dies
(the workers meanwhile refuse — fail closed) and stops it last, so the final checkpoint covers
every event the workers had acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

import orjson

from ztgw.audit.errors import AuditUnavailable, InvalidEvent
from ztgw.audit.log import AuditLog
from ztgw.audit.remote import (
    ACK,
    INVALID,
    OK,
    REQUEST,
    STATE,
    STATE_LEN,
    UNAVAILABLE,
    WANT_ACK,
    FrameProtocol,
    prepare_socket_dir,
    socket_path,
)

from .settings import Settings

STATE_EVERY = 0.5  # seconds between state frames to every worker
MAX_FRAME = 512 * 1024


class _Worker(FrameProtocol):
    def __init__(self, daemon: AuditDaemon) -> None:
        self.daemon = daemon
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.daemon.workers.add(self)
        self.send_state()

    def connection_lost(self, exc: Exception | None) -> None:
        self.daemon.workers.discard(self)
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        buf, pos = self.buf, 0
        while len(buf) - pos >= REQUEST.size:
            n, ident, flags = REQUEST.unpack_from(buf, pos)
            if n > MAX_FRAME:  # not a gateway talking: drop the connection
                if self.transport is not None:
                    self.transport.close()
                return
            end = pos + REQUEST.size + n
            if len(buf) < end:
                break
            self.daemon.take(self, ident, flags, bytes(buf[pos + REQUEST.size:end]))
            pos = end
        del buf[:pos]


    def ack(self, ident: int, status: int) -> None:
        self.write(ACK.pack(ident, status))

    def send_state(self) -> None:
        body = orjson.dumps(self.daemon.state())
        self.write(ACK.pack(0, STATE) + STATE_LEN.pack(len(body)) + body)


class AuditDaemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.audit = AuditLog.from_settings(settings.audit_settings())
        from ztgw.scanners.engine import build_service

        self.detection, _book = build_service(settings, self._emit)
        self.detection.attach(self.audit)
        self.workers: set[_Worker] = set()
        self.refused = 0

    def _emit(self, event: dict[str, Any]) -> None:
        with contextlib.suppress(AuditUnavailable):
            self.audit.emit(event)

    def state(self) -> dict[str, Any]:
        st = self.audit.status()
        return {"healthy": st["healthy"], "queued": st["queued"], "written": st["written"],
                "seq": st["seq"], "spool_bytes": st["spool_bytes"],
                "spool_quota_bytes": st["spool_quota_bytes"], "refused": self.refused,
                "sinks": st["sinks"], "pid": os.getpid()}

    def take(self, worker: _Worker, ident: int, flags: int, body: bytes) -> None:
        want = bool(flags & WANT_ACK)
        try:
            doc = orjson.loads(body)
            if not isinstance(doc, dict):
                raise InvalidEvent("an audit event is a JSON object")
            fut = self.audit.emit_async(doc, wait=want)
        except (InvalidEvent, orjson.JSONDecodeError):
            self.refused += 1
            if want:
                worker.ack(ident, INVALID)
            return
        except AuditUnavailable:
            self.refused += 1
            if want:
                worker.ack(ident, UNAVAILABLE)
            return
        if fut is not None:
            fut.add_done_callback(lambda f: worker.ack(
                ident, OK if not f.cancelled() and f.exception() is None else UNAVAILABLE))

    async def run(self) -> None:
        path = socket_path(self.settings.home)
        prepare_socket_dir(path)
        self.audit.start()
        if self.settings.detect_enabled:
            self.detection.start()
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(lambda: _Worker(self), str(path))
        os.chmod(path, 0o600)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        parent = os.getppid()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), STATE_EVERY)
                for w in list(self.workers):
                    w.send_state()
                if os.getppid() != parent:  # `ztgw serve` is gone (even SIGKILL): close cleanly
                    stop.set()
        finally:
            server.close()
            for w in list(self.workers):
                w.flush()
            await asyncio.sleep(0.05)
            self.detection.stop()
            await asyncio.to_thread(self.audit.close)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def run_daemon(settings: Settings) -> None:
    import uvloop

    uvloop.run(AuditDaemon(settings).run())
