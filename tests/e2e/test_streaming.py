"""Large list answers stream through the obligations (bounded memory) in a real `ztgw serve`:
masked record by record, sent chunked as whole records arrive; the decision is audited
before the first byte and a completion event says how many records left; an answer that
breaks half-way is cut off (never a truncated body that looks whole)."""

from __future__ import annotations

import gzip
import http.server
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from scale.services import backend_env

from .conftest import ZTGW, RunningGateway, start_processes, stop_processes

N = 6000  # ~1.3 MB of JSON: above the 1 MB streaming threshold


def _records() -> list[dict[str, Any]]:
    return [{"id": str(i), "id_number": f"11010119900307{i:04d}"[:18], "note": "x" * 150}
            for i in range(N)]


class _Big(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        items = _records()
        if "/broken" in self.path:
            body = json.dumps({"items": items}).encode()[:1_100_000]  # ends inside a record
        else:
            body = json.dumps({"items": items, "page": 1, "size": N, "total": N}).encode()
        gz = "/gzip" in self.path
        chunked = "/chunked" in self.path or gz  # a gzip body is small: no length, so it streams
        if gz:
            body = gzip.compress(body)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        if gz:
            self.send_header("content-encoding", "gzip")
        if chunked:
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 65536):
                piece = body[i:i + 65536]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


BUNDLE = """\
bundle: streaming-test
version: "1"
rules:
  - id: big-read
    effect: allow
    subjects: ["*"]
    datasets: [big.plain, big.chunked, big.gzip, big.broken]
    actions: [read]
    obligations:
      - type: mask
        fields:
          id_number: {strategy: keep, first: 6, last: 4}
"""


@pytest.fixture(scope="module")
def streaming(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Big)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    up = f"http://127.0.0.1:{server.server_address[1]}"
    tmp = tmp_path_factory.mktemp("ztgw-streaming")
    home, bundle = tmp / "home", tmp / "bundle"
    bundle.mkdir()
    (bundle / "policy.yaml").write_text(BUNDLE, encoding="utf-8")
    backend = backend_env()  # ZTGW_TEST_BACKEND: the datasets go where the gateway reads
    env = {**{k: v for k, v in os.environ.items() if k != "ZTGW_CONFIG"}, "ZTGW_HOME": str(home),
           **backend}
    subprocess.run([*ZTGW, "init"], env=env, check=True, capture_output=True, timeout=60)
    for name in ("plain", "chunked", "gzip", "broken"):
        doc = {"dataset": f"big.{name}", "title": name, "route_prefix": f"/api/big/{name}",
               "upstream_url": up, "owner_department": "市大数据中心",
               "fields": {"id": {"classification": "一般"}, "id_number": {"classification": "核心"},
                          "note": {"classification": "一般"}}}
        path = Path(tmp / f"{name}.json")
        path.write_text(json.dumps(doc), encoding="utf-8")
        subprocess.run([*ZTGW, "datasets", "register", str(path)], env=env, check=True,
                       capture_output=True, timeout=60)
    gw, procs = start_processes(home, {**backend, "ZTGW_POLICY_BUNDLE": str(bundle)})
    try:
        yield gw
    finally:
        stop_processes(procs)
        server.shutdown()


def _events(gw: RunningGateway, rid: str, n: int) -> list[dict[str, Any]]:
    for _ in range(100):
        events = gw.cli_json("audit", "search", "--request-id", rid, "--json")["events"]
        if len(events) >= n:
            return events
        time.sleep(0.1)
    raise AssertionError(f"fewer than {n} events for {rid}")


@pytest.mark.parametrize("name", ["plain", "chunked", "gzip"])
def test_a_large_answer_streams_masked_with_a_completion_event(streaming: RunningGateway,
                                                               name: str) -> None:
    gw = streaming
    with httpx.stream("GET", f"{gw.base}/api/big/{name}", timeout=60,
                      headers={"Authorization": f"Bearer {gw.token('demo-police')}"}) as r:
        assert r.status_code == 200
        assert "content-length" not in r.headers  # sent as it was protected, chunk by chunk
        body = r.read()
        rid = r.headers["x-request-id"]
    doc = json.loads(body)
    assert len(doc["items"]) == N
    assert all(item["id_number"].startswith("110101") and "*" in item["id_number"]
               for item in doc["items"])
    events = _events(gw, rid, 2)
    done = [e for e in events if e["event"]["action"] == "data-api-stream-completed"]
    assert len(done) == 1
    data = done[0]["ztgw"]["data"]
    assert (data["records"], data["masked_fields"], data["streamed"]) == (N, ["id_number"], True)
    assert done[0]["event"]["outcome"] == "success"


def test_an_answer_that_breaks_half_way_is_cut_off(streaming: RunningGateway) -> None:
    gw = streaming
    with pytest.raises(httpx.HTTPError), httpx.stream(
            "GET", f"{gw.base}/api/big/broken", timeout=60,
            headers={"Authorization": f"Bearer {gw.token('demo-police')}"}) as r:
        rid = r.headers["x-request-id"]
        r.read()
    events = _events(gw, rid, 2)
    done = [e for e in events if e["event"]["action"] == "data-api-stream-completed"]
    assert done and done[0]["event"]["outcome"] == "failure"
    assert done[0]["error"]["code"] == "stream_aborted"
    # nothing unmasked left: the records that were sent before the break were protected
    assert "11010119900307" not in json.dumps(done[0], ensure_ascii=False)
