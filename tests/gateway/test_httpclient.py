"""The upstream HTTP/1.1 client against real loopback servers that answer byte for byte as a
test says: framing (length, chunked, close-delimited), encodings and bombs, garbage, timeouts,
keep-alive reuse and the connection cap, request-line and header injection."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import Awaitable, Callable

import brotli
import pytest

from ztgw.gateway.dataplane.httpclient import (
    ConnectFailed,
    HttpClient,
    Malformed,
    ReadTimeout,
    TooLarge,
    decode_body,
)

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.AbstractServer, str, list[int]]:
    """A server reading one request head at a time; ``accepted`` counts connections."""
    accepted: list[int] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await handler(head, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}", accepted


def _answer(body: bytes, extra: bytes = b"", status: bytes = b"200 OK") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def _run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))  # type: ignore[arg-type]


def _client(**kw: float) -> HttpClient:
    return HttpClient(connect_timeout=kw.get("connect", 2.0), read_timeout=kw.get("read", 2.0))


def test_keep_alive_reuses_one_connection_and_sends_a_clean_request() -> None:
    seen: list[bytes] = []

    async def handler(head: bytes, w: asyncio.StreamWriter) -> None:
        seen.append(head)
        w.write(_answer(b'{"ok":true}'))

    async def main() -> None:
        server, base, accepted = await _serve(handler)
        client = _client()
        for _ in range(5):
            resp = await client.request(base, "GET", "/a?x=1", {"accept": "application/json"},
                                        max_body=1024)
            assert (resp.status, resp.body) == (200, b'{"ok":true}')
            assert resp.headers["content-type"] == "application/json"
        assert len(accepted) == 1, "keep-alive connections must be reused"
        assert seen[0].startswith(b"GET /a?x=1 HTTP/1.1\r\n")
        assert b"\r\nhost: 127.0.0.1:" in seen[0] and b"\r\naccept: application/json\r\n" in seen[0]
        await client.close()
        server.close()

    _run(main())


def test_chunked_and_close_delimited_bodies() -> None:
    async def chunked(head: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")

    async def until_close(head: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await w.drain()
        w.close()

    async def main() -> None:
        for handler, expected in ((chunked, b"hello world"), (until_close, b"all of it")):
            server, base, _ = await _serve(handler)
            client = _client()
            resp = await client.request(base, "GET", "/", {}, max_body=1024)
            assert resp.body == expected
            await client.close()
            server.close()

    _run(main())


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_encodings_are_decoded_and_bombs_refused(coding: str) -> None:
    plain = b'{"items": []}' * 50
    bomb = b"0" * 5_000_000
    pack = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress}[coding]
    assert decode_body(pack(plain), coding, 10_000) == plain
    with pytest.raises(TooLarge):
        decode_body(pack(bomb), coding, 100_000)  # 5 MB from a few KB: refused at the limit
    with pytest.raises(Malformed):
        decode_body(pack(plain)[:-8], coding, 10_000)  # truncated
    with pytest.raises(Malformed):
        decode_body(b"not compressed at all", coding, 10_000)


def test_unknown_encoding_is_malformed() -> None:
    with pytest.raises(Malformed):
        decode_body(b"x", "compress", 100)


def test_oversized_bodies_are_refused_declared_or_not() -> None:
    async def declared(head: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 999999999\r\n\r\n")

    async def streamed(head: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(100):
            w.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
            await w.drain()

    async def main() -> None:
        for handler in (declared, streamed):
            server, base, _ = await _serve(handler)
            client = _client()
            with pytest.raises(TooLarge):
                await client.request(base, "GET", "/", {}, max_body=10_000)
            await client.close()
            server.close()

    _run(main())


def test_garbage_timeouts_and_refused_connections() -> None:
    async def garbage(head: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    async def silent(head: bytes, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def dribble(head: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")  # then nothing
        await asyncio.sleep(5)

    async def main() -> None:
        server, base, _ = await _serve(garbage)
        client = _client(read=0.5)
        with pytest.raises(Malformed):
            await client.request(base, "GET", "/", {}, max_body=1000)
        server.close()
        for handler in (silent, dribble):
            server, base, _ = await _serve(handler)
            with pytest.raises(ReadTimeout):
                await client.request(base, "GET", "/", {}, max_body=1000)
            server.close()
        server, base, _ = await _serve(garbage)
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectFailed):  # nothing listens there any more
            await client.request(base, "GET", "/", {}, max_body=1000)
        await client.close()

    _run(main())


def test_injection_in_target_or_headers_is_refused() -> None:
    async def handler(head: bytes, w: asyncio.StreamWriter) -> None:
        raise AssertionError("nothing may be sent")

    async def main() -> None:
        server, base, accepted = await _serve(handler)
        client = _client()
        for target, headers in (("/a HTTP/1.1\r\nx: y", {}), ("/a", {"x": "1\r\nevil: 1"}),
                                ("/a", {"evil\r\nx": "1"}), ("a", {})):
            with pytest.raises(ValueError):
                await client.request(base, "GET", target, headers, max_body=100)
        assert accepted == []
        await client.close()
        server.close()

    _run(main())


def test_head_answers_complete_without_a_body() -> None:
    async def handler(head: bytes, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n")

    async def main() -> None:
        server, base, _ = await _serve(handler)
        client = _client(read=1.0)
        resp = await client.request(base, "HEAD", "/", {}, max_body=100_000)
        assert (resp.status, resp.body) == (200, b"")
        await client.close()
        server.close()

    _run(main())


def test_connection_cap_queues_callers_instead_of_opening_more() -> None:
    async def handler(head: bytes, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        w.write(_answer(b"{}"))

    async def main() -> None:
        server, base, accepted = await _serve(handler)
        client = HttpClient(connect_timeout=2, read_timeout=2, max_connections_per_origin=3)
        results = await asyncio.gather(*(client.request(base, "GET", f"/{i}", {}, max_body=100)
                                         for i in range(12)))
        assert all(r.status == 200 for r in results)
        assert len(accepted) == 3
        await client.close()
        server.close()

    _run(main())


def test_unsolicited_bytes_poison_the_connection() -> None:
    """A server that sends two answers to one request must not have the second read as the
    answer to the next request (response splitting / desync)."""
    async def handler(head: bytes, w: asyncio.StreamWriter) -> None:
        w.write(_answer(b'{"n":1}') + _answer(b'{"smuggled":true}'))

    async def main() -> None:
        server, base, accepted = await _serve(handler)
        client = _client()
        first = await client.request(base, "GET", "/", {}, max_body=100)
        assert first.body == b'{"n":1}'
        await asyncio.sleep(0.1)
        second = await client.request(base, "GET", "/", {}, max_body=100)
        assert second.body == b'{"n":1}', "the smuggled answer was served"
        assert len(accepted) == 2
        await client.close()
        server.close()

    _run(main())
