"""The Elasticsearch sink at the wire level (the exact ``_bulk`` and template requests the
official client sends) against a local HTTP server answering like Elasticsearch; and a live
test against a real cluster when ``ZTGW_TEST_ES_URL`` is set."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ztgw.audit.config import AuditSettings
from ztgw.audit.errors import SinkError
from ztgw.audit.es import sink as es_sink
from ztgw.audit.es.sink import ElasticsearchSink, install, make_client, stream_name
from ztgw.audit.log import AuditLog
from ztgw.audit.query import AuditQuery, to_es_dsl

from .conftest import make_event, with_
from .fake_es import FakeES, serve

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[tuple[FakeES, str]]:
    es = FakeES()
    server, url = serve(es)
    yield es, url
    server.shutdown()
    server.server_close()


def sink_for(url: str, tmp_path: Path) -> ElasticsearchSink:
    conf = AuditSettings(db_path=tmp_path / "audit" / "audit.db", sinks=("elasticsearch",),
                         es_url=url, es_api_key="test-key-not-secret")
    return ElasticsearchSink.from_settings(conf)


def test_bulk_request_is_create_with_event_id_into_the_data_stream(
        fake: tuple[FakeES, str], tmp_path: Path) -> None:
    es, url = fake
    docs = [make_event(f"r{i}") for i in range(3)]
    sink_for(url, tmp_path).send(docs)
    (req,) = es.requests
    assert (req.method, req.path) == ("PUT", "/_bulk")  # what elasticsearch-py 9 sends
    assert req.headers["content-type"] == "application/vnd.elasticsearch+x-ndjson; compatible-with=9"
    assert req.headers["accept"] == "application/vnd.elasticsearch+json; compatible-with=9"
    assert req.headers["authorization"] == "ApiKey test-key-not-secret"
    lines = req.body.splitlines()
    assert len(lines) == 6 and req.body.endswith(b"\n")
    for i, doc in enumerate(docs):
        assert json.loads(lines[2 * i]) == {
            "create": {"_index": "logs-ztgw.access-default", "_id": doc["event"]["id"]}}
        assert json.loads(lines[2 * i + 1]) == doc
    assert len(es.docs) == 3


def test_item_409_is_a_duplicate_and_counts_as_delivered(
        fake: tuple[FakeES, str], tmp_path: Path) -> None:
    es, url = fake
    sink = sink_for(url, tmp_path)
    docs = [make_event(f"r{i}") for i in range(4)]
    sink.send(docs[:2])
    sink.send(docs)  # a re-send after a crash: two items answer 409
    assert len(es.docs) == 4
    assert sink.dead == 0


def test_item_429_fails_the_batch_so_it_is_sent_again(
        fake: tuple[FakeES, str], tmp_path: Path) -> None:
    es, url = fake
    docs = [make_event(f"r{i}") for i in range(3)]
    rejected = docs[1]["event"]["id"]
    es.item_rule = lambda index, doc_id: (429, {
        "type": "es_rejected_execution_exception", "reason": "rejected execution"}
    ) if doc_id == rejected else None
    with pytest.raises(SinkError, match="429"):
        sink_for(url, tmp_path).send(docs)  # the HTTP answer was 200: every item was checked
    es.item_rule = None
    sink_for(url, tmp_path).send(docs)
    assert {k[1] for k in es.docs} == {d["event"]["id"] for d in docs}


def test_item_400_goes_to_the_dead_letter_file(fake: tuple[FakeES, str], tmp_path: Path) -> None:
    es, url = fake
    docs = [make_event(f"r{i}") for i in range(3)]
    bad = docs[2]["event"]["id"]
    es.item_rule = lambda index, doc_id: (400, {
        "type": "document_parsing_exception", "reason": "failed to parse field [source.ip]"}
    ) if doc_id == bad else None
    sink = sink_for(url, tmp_path)
    sink.send(docs)
    assert sink.dead == 1
    (line,) = (tmp_path / "audit" / "spool" / "dead-letter" / "elasticsearch.jsonl").read_bytes().splitlines()
    kept = json.loads(line)
    assert kept["status"] == 400 and kept["doc"]["event"]["id"] == bad
    assert kept["error"]["type"] == "document_parsing_exception"


def test_whole_bulk_error_and_connection_refused_raise(
        fake: tuple[FakeES, str], tmp_path: Path) -> None:
    es, url = fake
    es.bulk_script = [(503, {"error": {"type": "unavailable_shards_exception"}, "status": 503})]
    with pytest.raises(SinkError):
        sink_for(url, tmp_path).send([make_event("r1")])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(SinkError):
        sink_for(closed, tmp_path).send([make_event("r1")])


def test_outage_of_elasticsearch_loses_nothing_and_duplicates_nothing(
        fake: tuple[FakeES, str], tmp_path: Path) -> None:
    es, url = fake
    es.bulk_script = [(503, {"status": 503, "error": {"type": "cluster_block_exception"}})] * 4
    conf = AuditSettings(db_path=tmp_path / "audit" / "audit.db", keys_dir=tmp_path / "keys",
                         sinks=("store", "elasticsearch"), es_url=url)
    log = AuditLog.from_settings(conf)
    log.start()
    ids = []
    for i in range(200):
        ev = make_event(f"r{i}")
        ids.append(ev["event"]["id"])
        log.emit(ev).result(timeout=10)
    assert log.flush(60)
    log.close()
    assert sorted(k[1] for k in es.docs) == sorted(ids)
    # a restart with lost cursors re-sends everything: 409s, still one document per event
    for cursor in (tmp_path / "audit" / "spool" / "cursors").glob("*.json"):
        cursor.unlink()
    calls = len(es.requests)
    log = AuditLog.from_settings(with_(conf, checkpoint_seconds=3600))
    log.start()
    assert log.flush(30)
    log.close()
    assert len(es.requests) > calls and len(es.docs) == 200


def test_install_sends_the_exact_assets(fake: tuple[FakeES, str]) -> None:
    es, url = fake
    client = make_client(AuditSettings(db_path=Path("/nonexistent/a.db"), es_url=url))
    install(client)
    got = [(r.method, r.path.split("?")[0], json.loads(r.body)) for r in es.requests]
    assert got == [
        ("PUT", "/_ilm/policy/ztgw-audit", es_sink.asset("ilm-policy.json")),
        ("PUT", "/_ingest/pipeline/ztgw-audit", es_sink.asset("ingest-pipeline.json")),
        ("PUT", "/_component_template/ztgw%40mappings", es_sink.asset("component-template.json")),
        ("PUT", "/_index_template/logs-ztgw", es_sink.asset("index-template.json")),
    ]
    template = es_sink.asset("index-template.json")
    assert template["data_stream"] == {} and "logs-ztgw.*-*" in template["index_patterns"]
    assert template["composed_of"][-1] in template["ignore_missing_component_templates"]
    phases = es_sink.asset("ilm-policy.json")["policy"]["phases"]
    assert int(phases["delete"]["min_age"].rstrip("d")) >= 180  # CSL art. 21: six months


@pytest.mark.parametrize("name", es_sink.ASSETS)
def test_deploy_copies_match_the_packaged_assets(name: str) -> None:
    assert json.loads((ROOT / "deploy" / "elasticsearch" / name).read_text()) == es_sink.asset(name)


def test_stream_names_cannot_be_injected() -> None:
    ev = make_event("r1")
    assert stream_name(ev) == "logs-ztgw.access-default"
    ev["data_stream"]["dataset"] = "x/../../_all"
    assert stream_name(ev) == "logs-ztgw.audit-default"


def test_query_model_translates_to_dsl() -> None:
    dsl = to_es_dsl(AuditQuery(user="bob", decision="deny", text="population", limit=5))
    assert dsl["size"] == 5 and dsl["sort"] == [{"@timestamp": "desc"}]
    assert {"term": {"user.name": "bob"}} in dsl["query"]["bool"]["filter"]
    assert {"term": {"ztgw.decision.effect": "deny"}} in dsl["query"]["bool"]["filter"]


@pytest.mark.skipif(not os.environ.get("ZTGW_TEST_ES_URL"), reason="set ZTGW_TEST_ES_URL to a 9.x cluster")
def test_live_elasticsearch(tmp_path: Path) -> None:
    conf = AuditSettings(db_path=tmp_path / "audit" / "audit.db", keys_dir=tmp_path / "keys",
                         sinks=("elasticsearch",), es_url=os.environ["ZTGW_TEST_ES_URL"],
                         es_api_key=os.environ.get("ZTGW_TEST_ES_API_KEY"))
    client = make_client(conf)
    install(client)
    docs = [make_event(f"live-{time.time_ns()}-{i}") for i in range(5)]
    sink = ElasticsearchSink.from_settings(conf)
    sink.send(docs)
    sink.send(docs)  # the re-send answers 409s: no duplicates
    client.indices.refresh(index="logs-ztgw.access-default")
    ids = [d["event"]["id"] for d in docs]
    found = client.search(index="logs-ztgw.access-default", query={"ids": {"values": ids}}, size=10)
    assert found["hits"]["total"]["value"] == 5
    dsl = to_es_dsl(AuditQuery(request_id=docs[0]["http"]["request"]["id"]))
    hits = client.search(index="logs-ztgw.*", body=dsl)["hits"]["hits"]
    assert [h["_source"]["event"]["id"] for h in hits] == [ids[0]]
