"""A tiny Elasticsearch on 127.0.0.1 that records every request and answers with the documented
shapes (Bulk API: 200 with ``errors`` and one result per item; create on an existing ``_id``
is a 409 item).  Behaviour is scripted per test; nothing here is a mock of our own code."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PRODUCT_HEADERS = {
    "X-Elastic-Product": "Elasticsearch",
    "Content-Type": "application/vnd.elasticsearch+json;compatible-with=9",
}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeES:
    requests: list[Request] = field(default_factory=list)
    docs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # per bulk call: None = behave like Elasticsearch; else (status, body) for the whole call
    bulk_script: list[tuple[int, dict[str, Any]] | None] = field(default_factory=list)
    # per item: a function (index, id) -> (status, error) or None to store normally
    item_rule: Callable[[str, str], tuple[int, dict[str, Any]] | None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bulk(self, body: bytes) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if self.bulk_script:
                scripted = self.bulk_script.pop(0)
                if scripted is not None:
                    return scripted
            lines = body.splitlines()
            items = []
            for action_line, source_line in zip(lines[0::2], lines[1::2], strict=True):
                (op, meta), = json.loads(action_line).items()
                index, doc_id = meta["_index"], meta["_id"]
                rule = self.item_rule(index, doc_id) if self.item_rule else None
                if op != "create":
                    items.append({op: {"_index": index, "_id": doc_id, "status": 400, "error": {
                        "type": "illegal_argument_exception",
                        "reason": "only write ops with an op_type of create are allowed in data streams"}}})
                elif rule is not None:
                    status, error = rule
                    items.append({op: {"_index": index, "_id": doc_id, "status": status,
                                       "error": error}})
                elif (index, doc_id) in self.docs:
                    items.append({op: {"_index": index, "_id": doc_id, "status": 409, "error": {
                        "type": "version_conflict_engine_exception",
                        "reason": f"[{doc_id}]: version conflict, document already exists "
                                  "(current version [1])"}}})
                else:
                    self.docs[(index, doc_id)] = json.loads(source_line)
                    items.append({op: {"_index": f".ds-{index}-2026.11.22-000001", "_id": doc_id,
                                       "_version": 1, "result": "created", "status": 201,
                                       "_shards": {"total": 1, "successful": 1, "failed": 0}}})
            errors = any(next(iter(i.values()))["status"] >= 300 for i in items)
            return 200, {"took": 3, "errors": errors, "items": items}


def serve(fake: FakeES) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for k, v in PRODUCT_HEADERS.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fake.requests.append(Request(self.command, self.path,
                                         {k.lower(): v for k, v in self.headers.items()}, body))
            if self.command in ("POST", "PUT") and self.path.split("?")[0] == "/_bulk":
                self._answer(*fake.bulk(body))
            elif self.command == "PUT":
                self._answer(200, {"acknowledged": True})
            else:
                self._answer(404, {"error": {"type": "resource_not_found_exception"}, "status": 404})

        do_GET = do_POST = do_PUT = _handle

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
