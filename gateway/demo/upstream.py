"""The demo government data APIs: a plain ASGI app over :mod:`ztgw.gateway.demo.data`.

It plays the upstream behind the gateway and the baseline of proxy benchmarks, so it does
as little per request as it can: every record is serialised once (JSON and CSV), filters
are precomputed indexes, and rendered pages are kept in a small LRU cache.

Routes (INTERFACES.md, "HTTP" → data plane)::

    GET /api/population/persons[?page=&size=&district=&district_code=]
    GET /api/population/persons/{id_number}
    GET /api/enterprise/companies[?page=&size=&district=&district_code=]
    GET /api/enterprise/companies/{uscc}
    GET /api/social-security/contributions[?page=&size=&id_number=&employer_uscc=&month=]
    GET /api/social-security/contributions/{record_id}
    GET /healthz

Lists answer ``{"items": [...], "page": n, "size": n, "total": n}``, or CSV (RFC 4180:
header row, CRLF, minimal quoting, UTF-8) when ``Accept`` prefers ``text/csv``. ``HEAD`` is
served like ``GET`` without a body (RFC 9110 §9.3.2); other methods get 405.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ztgw.gateway.demo.data import (
    COMPANIES,
    CONTRIBUTIONS,
    DATASET_FIELDS,
    DATASET_KEYS,
    PERSONS,
    DemoData,
    Record,
    default_data,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "ROUTES",
    "UpstreamApp",
    "create_upstream_app",
    "serve_upstream",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000  # bounds one response to ~0.5 MB of JSON
_MAX_INT_DIGITS = 9  # page/size longer than this are rejected before int() parses them
_MAX_REQUEST_ID = 128  # an echoed X-Request-ID longer than this is replaced
_PAGE_CACHE_SIZE = 4096  # rendered pages kept (benchmarks replay a small set of URLs)

ROUTES: dict[str, str] = {
    "/api/population/persons": PERSONS,
    "/api/enterprise/companies": COMPANIES,
    "/api/social-security/contributions": CONTRIBUTIONS,
}

# Row filters each dataset supports (query parameter -> indexed field). ``district``
# matches a district's name, or its six-digit code. A filter that a dataset does not
# support is a 400, never silently ignored: the gateway's row filters rely on them.
_FILTERS: dict[str, dict[str, str]] = {
    PERSONS: {"district": "district", "district_code": "district_code"},
    COMPANIES: {"district": "district", "district_code": "district_code"},
    CONTRIBUTIONS: {"id_number": "id_number", "employer_uscc": "employer_uscc", "month": "month"},
}
_ALL_FILTERS = frozenset(name for f in _FILTERS.values() for name in f)

_JSON = b"application/json"
_CSV = b"text/csv; charset=utf-8"
_ALLOW = b"GET, HEAD"


class _HTTPError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _LineSink:
    """A file for :func:`csv.writer` that keeps each written row as its own line."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []

    def write(self, line: str) -> int:
        self.lines.append(line.encode("utf-8"))
        return len(line)


def _csv_lines(rows: Iterable[Sequence[object]]) -> list[bytes]:
    """RFC 4180 lines: CRLF ends, fields quoted only when they hold , " CR or LF."""
    sink = _LineSink()
    csv.writer(sink, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerows(rows)
    return sink.lines


def _csv_line(values: Sequence[object]) -> bytes:
    return _csv_lines([values])[0]


class _Table:
    """One dataset, serialised once, with lookup indexes."""

    def __init__(self, name: str, records: Sequence[Record]) -> None:
        self.name = name
        self.fields = DATASET_FIELDS[name]
        self.key = DATASET_KEYS[name]
        self.json_rows = [orjson.dumps(r) for r in records]
        self.csv_header = _csv_line(self.fields)
        self.csv_rows = _csv_lines([r[f] for f in self.fields] for r in records)
        self.by_key = {str(r[self.key]): i for i, r in enumerate(records)}
        self.all_rows = range(len(records))
        self.indexes: dict[str, dict[str, list[int]]] = {}
        for field in {*_FILTERS[name].values()}:
            index: dict[str, list[int]] = {}
            for i, r in enumerate(records):
                index.setdefault(str(r[field]), []).append(i)
            self.indexes[field] = index

    def select(self, filters: tuple[tuple[str, str], ...]) -> Sequence[int]:
        rows: Sequence[int] = self.all_rows
        for param, value in filters:
            field = _FILTERS[self.name][param]
            if param == "district" and value.isdigit():
                field = "district_code"
            if field in ("id_number", "employer_uscc"):
                value = value.upper()
            hits = self.indexes[field].get(value, [])
            if rows is self.all_rows:
                rows = hits
            else:
                keep = set(hits)
                rows = [i for i in rows if i in keep]
        return rows


def _parse_positive(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name, "")
    if raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > _MAX_INT_DIGITS or int(raw) < 1:
        raise _HTTPError(400, "invalid_parameter", f"{name} must be a positive integer")
    return int(raw)


def _wants_csv(accept: bytes) -> bool:
    """Content negotiation between JSON (default) and CSV: highest q wins, ties go first."""
    if b"text/csv" not in accept.lower():
        return False
    best_q, best_csv = 0.0, False
    for part in accept.decode("latin-1").split(","):
        media, *params = (p.strip() for p in part.split(";"))
        media = media.lower()
        if media == "text/csv":
            is_csv = True
        elif media in ("application/json", "application/*", "*/*"):
            is_csv = False
        else:
            continue
        q = 1.0
        for p in params:
            key, _, val = p.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        if q > best_q:
            best_q, best_csv = q, is_csv
    return best_csv


def _request_id(headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == b"x-request-id":
            if 0 < len(value) <= _MAX_REQUEST_ID and all(0x21 <= b <= 0x7E for b in value):
                return value
            break
    return uuid.uuid4().hex.encode()


class UpstreamApp:
    """The ASGI callable. Build it with :func:`create_upstream_app`."""

    def __init__(self, data: DemoData | None = None) -> None:
        self._data = data
        self._tables: dict[str, _Table] | None = None
        self._render_page = lru_cache(maxsize=_PAGE_CACHE_SIZE)(self._render_page_uncached)

    # -- set-up -------------------------------------------------------------------------

    def warm(self) -> None:
        """Generate and serialise the datasets now instead of on the first request."""
        self._get_tables()

    def _get_tables(self) -> dict[str, _Table]:
        if self._tables is None:
            data = self._data or default_data()
            self._tables = {name: _Table(name, data.dataset(name)) for name in ROUTES.values()}
        return self._tables

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.warm()
                except Exception as exc:  # report to the server, which then exits
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        request_id = _request_id(headers)
        head = scope["method"] == "HEAD"
        try:
            status, content_type, body = self._handle(scope, headers)
            extra: list[tuple[bytes, bytes]] = []
        except _HTTPError as err:
            status, content_type = err.status, _JSON
            body = orjson.dumps(
                {"error": err.code, "message": err.message, "request_id": request_id.decode()}
            )
            extra = [(b"allow", _ALLOW)] if status == 405 else []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if head else body})

    # -- routing ------------------------------------------------------------------------

    def _handle(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes, bytes]:
        path: str = scope["path"]
        if len(path) > 1:
            path = path.rstrip("/")
        if path == "/healthz":
            dataset, item = "", None
        elif path in ROUTES:
            dataset, item = ROUTES[path], None
        else:
            prefix, _, item = path.rpartition("/")
            if prefix not in ROUTES or not item:
                raise _HTTPError(404, "not_found", f"no such resource: {scope['path']}")
            dataset = ROUTES[prefix]
        if scope["method"] not in ("GET", "HEAD"):
            raise _HTTPError(405, "method_not_allowed", "only GET and HEAD are allowed")
        if not dataset:
            return 200, _JSON, b'{"status":"ok"}'
        accept = b""
        for name, value in headers:
            if name == b"accept":
                accept = value
                break
        as_csv = _wants_csv(accept)
        table = self._get_tables()[dataset]
        if item is not None:
            return self._detail(table, item, as_csv)
        return self._list(table, scope["query_string"], as_csv)

    def _detail(self, table: _Table, item: str, as_csv: bool) -> tuple[int, bytes, bytes]:
        index = table.by_key.get(item.upper())
        if index is None:
            raise _HTTPError(404, "not_found", f"no {table.name} record with {table.key} {item}")
        if as_csv:
            return 200, _CSV, table.csv_header + table.csv_rows[index]
        return 200, _JSON, table.json_rows[index]

    def _list(self, table: _Table, query: bytes, as_csv: bool) -> tuple[int, bytes, bytes]:
        params: dict[str, str] = {}
        try:
            pairs = parse_qsl(query.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise _HTTPError(400, "invalid_parameter", "query string is not UTF-8") from None
        for name, value in pairs:
            if name in params and (name in ("page", "size") or name in _ALL_FILTERS):
                raise _HTTPError(400, "invalid_parameter", f"{name} given more than once")
            params[name] = value
        page = _parse_positive(params, "page", 1)
        size = _parse_positive(params, "size", DEFAULT_PAGE_SIZE)
        if size > MAX_PAGE_SIZE:
            raise _HTTPError(400, "invalid_parameter", f"size must be at most {MAX_PAGE_SIZE}")
        filters: list[tuple[str, str]] = []
        for name in sorted(_ALL_FILTERS & params.keys()):
            if name not in _FILTERS[table.name]:
                raise _HTTPError(400, "invalid_parameter", f"{table.name} cannot be filtered by {name}")
            if params[name]:
                filters.append((name, params[name]))
        body = self._render_page(table.name, tuple(filters), page, size, as_csv)
        return 200, (_CSV if as_csv else _JSON), body

    def _render_page_uncached(
        self,
        dataset: str,
        filters: tuple[tuple[str, str], ...],
        page: int,
        size: int,
        as_csv: bool,
    ) -> bytes:
        table = self._get_tables()[dataset]
        rows = table.select(filters)
        start = (page - 1) * size
        chosen = rows[start : start + size]
        if as_csv:
            source = table.csv_rows
            return table.csv_header + b"".join([source[i] for i in chosen])
        items = b",".join([table.json_rows[i] for i in chosen])
        tail = f'],"page":{page},"size":{size},"total":{len(rows)}}}'.encode()
        return b'{"items":[' + items + tail


def create_upstream_app(data: DemoData | None = None) -> UpstreamApp:
    """The demo upstream as an ASGI app; ``data`` defaults to the standard demo datasets."""
    return UpstreamApp(data)


def serve_upstream(host: str = "127.0.0.1", port: int = 8081) -> None:
    """Run the demo upstream with uvicorn until interrupted (``ztgw demo upstream``)."""
    import uvicorn  # imported here: building the app or the data must not need a server

    uvicorn.run(
        create_upstream_app(),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
