"""OpenTelemetry traces through a real `ztgw serve`: each data-plane request becomes one
SERVER span exported over OTLP/HTTP (protobuf) to a collector on loopback, the upstream sees a
W3C traceparent naming that span, and no personal data is in the span."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from scale.services import backend_env

from .conftest import ZTGW, RunningGateway, start_processes, stop_processes


class _Recorder(http.server.ThreadingHTTPServer):
    spans: list[dict[str, Any]]
    traceparents: list[str]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Recorder

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        for rs in req.resource_spans:
            service = {a.key: a.value.string_value for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    attrs = {}
                    for a in sp.attributes:
                        v = a.value
                        attrs[a.key] = v.string_value if v.HasField("string_value") else v.int_value
                    self.server.spans.append({"name": sp.name, "trace_id": sp.trace_id.hex(),
                                              "span_id": sp.span_id.hex(), "kind": sp.kind,
                                              "attrs": attrs, "service": service})
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.server.traceparents.append(self.headers.get("traceparent", ""))
        body = json.dumps({"items": [{"id": "1", "title": "公告"}], "page": 1, "size": 1,
                           "total": 1}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return


BUNDLE = """\
bundle: tracing-test
version: "1"
rules:
  - id: open-data
    effect: allow
    subjects: ["*"]
    datasets: [open.notices]
    actions: [read]
  - id: persons
    effect: allow
    subjects: [role:population-officer]
    datasets: [population.persons]
    actions: [read]
"""


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, _Recorder]]:
    rec = _Recorder(("127.0.0.1", 0), _Handler)
    rec.spans, rec.traceparents = [], []
    threading.Thread(target=rec.serve_forever, daemon=True).start()
    port = rec.server_address[1]
    tmp = tmp_path_factory.mktemp("ztgw-traced")
    home, bundle = tmp / "home", tmp / "bundle"
    bundle.mkdir()
    (bundle / "policy.yaml").write_text(BUNDLE, encoding="utf-8")
    backend = backend_env()  # ZTGW_TEST_BACKEND: the dataset goes where the gateway reads
    env = {**{k: v for k, v in os.environ.items() if k != "ZTGW_CONFIG"}, "ZTGW_HOME": str(home),
           **backend}
    subprocess.run([*ZTGW, "init"], env=env, check=True, capture_output=True, timeout=60)
    doc = {"dataset": "open.notices", "title": "公告", "route_prefix": "/api/open/notices",
           "upstream_url": f"http://127.0.0.1:{port}", "owner_department": "市政务服务中心",
           "fields": {"id": {"classification": "一般"}, "title": {"classification": "一般"}}}
    (tmp / "ds.json").write_text(json.dumps(doc), encoding="utf-8")
    subprocess.run([*ZTGW, "datasets", "register", str(tmp / "ds.json")], env=env, check=True,
                   capture_output=True, timeout=60)
    gw, procs = start_processes(home, {
        **backend,
        "ZTGW_OTEL_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces", "ZTGW_OTEL_EXPORT_DELAY": "0.2",
        "ZTGW_POLICY_BUNDLE": str(bundle)})
    try:
        yield gw, rec
    finally:
        stop_processes(procs)
        rec.shutdown()


def _span_for(rec: _Recorder, request_id: str) -> dict[str, Any]:
    for _ in range(100):
        for sp in rec.spans:
            if sp["attrs"].get("ztgw.request_id") == request_id:
                return sp
        time.sleep(0.1)
    raise AssertionError(f"no span for {request_id}; got {len(rec.spans)} spans")


def test_a_request_is_one_span_and_the_upstream_gets_its_traceparent(
        traced: tuple[RunningGateway, _Recorder]) -> None:
    gw, rec = traced
    r = httpx.get(gw.base + "/api/open/notices", timeout=10,
                  headers={"Authorization": f"Bearer {gw.token('demo-police')}"})
    assert r.status_code == 200
    sp = _span_for(rec, r.headers["x-request-id"])
    assert sp["name"] == "GET /api/open/notices" and sp["kind"] == 2  # SPAN_KIND_SERVER
    a = sp["attrs"]
    assert (a["http.response.status_code"], a["ztgw.dataset"], a["ztgw.decision"],
            a["ztgw.rule_id"], a["ztgw.client_id"]) == (200, "open.notices", "allow", "open-data",
                                                         "demo-police")
    assert sp["service"]["service.name"] == "ztgw"
    assert f"00-{sp['trace_id']}-{sp['span_id']}-01" in rec.traceparents


def test_spans_hold_no_personal_data_and_refusals_are_traced(
        traced: tuple[RunningGateway, _Recorder]) -> None:
    gw, rec = traced
    id_number = "110101199003074258"
    r = httpx.get(f"{gw.base}/api/population/persons/{id_number}", timeout=10,
                  headers={"Authorization": f"Bearer {gw.token('demo-police')}"})
    sp = _span_for(rec, r.headers["x-request-id"])
    assert sp["attrs"]["http.route"] == "/api/population/persons/{id}"
    assert id_number not in json.dumps(sp, ensure_ascii=False)
    denied = httpx.get(gw.base + "/api/population/persons", timeout=10,
                       headers={"Authorization": f"Bearer {gw.token('demo-analytics')}"})
    assert denied.status_code == 403
    sp = _span_for(rec, denied.headers["x-request-id"])
    assert (sp["attrs"]["ztgw.decision"], sp["attrs"]["error.type"]) == ("deny", "access_denied")
