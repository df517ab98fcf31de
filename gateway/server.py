"""Running the gateway under uvicorn, with the request deadline uvicorn lacks.

uvicorn times out idle keep-alive connections but not a client that sends its request slowly
(slowloris: headers or body dribbled a byte at a time hold a connection and a task for as long
as the client likes).  :class:`DeadlineProtocol` arms a timer when a request begins and cancels
it when the whole request (headers and body) has arrived; if it fires first, the client gets a
408 JSON error and the connection is closed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """Writes of one event-loop step leave in one ``send``: uvicorn writes a response's head
    and its body separately, and on these machines a loopback ``send`` costs as much as the
    rest of a small request's handling.  Everything else is the real transport's."""

    __slots__ = ("_buf", "_loop", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._buf: list[bytes] = []
        self._scheduled = False

    def write(self, data: bytes) -> None:
        if not data:
            return
        self._buf.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._buf:
            return
        data = self._buf[0] if len(self._buf) == 1 else b"".join(self._buf)
        self._buf.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def peer_certificate_sha256(transport: asyncio.BaseTransport) -> str | None:
    """SHA-256 of the DER client certificate the TLS layer verified, as base64url (RFC 8705
    ``x5t#S256``); ``None`` without TLS or without a client certificate."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


DEFAULT_REQUEST_DEADLINE = 10.0  # seconds to receive a whole request once it has begun


class DeadlineProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, request_deadline: float = DEFAULT_REQUEST_DEADLINE,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline = request_deadline
        self._peer_cert_sha256: str | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._deadline_timer = self.loop.call_later(self._deadline, self._request_timed_out)

    def _disarm(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._peer_cert_sha256 = peer_certificate_sha256(transport)
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
        self._arm()  # the first request must begin *and* complete within the deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._peer_cert_sha256 is not None:  # a verified TLS client certificate (mTLS)
            self.scope["ztgw.peer_cert_sha256"] = self._peer_cert_sha256  # type: ignore[typeddict-unknown-key]
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # idle time until the next request is the keep-alive timer's business
        if not self.pipeline:
            self._disarm()

    def _request_timed_out(self) -> None:
        self._deadline_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            rid = secrets.token_hex(12)
            body = orjson.dumps({"error": "request_timeout",
                                 "message": "the request was not received in time",
                                 "request_id": rid})
            head = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                    b"connection: close\r\nx-request-id: " + rid.encode() +
                    b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n")
            self.transport.write(head + body)
        if cycle is not None:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()
