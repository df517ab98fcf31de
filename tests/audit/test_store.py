"""The embedded audit store and writer: dedupe by event id, search, aggregation, durability
acknowledgement, and log-injection safety."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ztgw.audit.errors import AuditUnavailable, InvalidEvent, QueryError
from ztgw.audit.events import access_event, clean
from ztgw.audit.log import AuditLog
from ztgw.audit.query import AuditQuery, parse_time, to_es_dsl
from ztgw.audit.store import AuditStore


def event(rid: str, user: str = "alice", effect: str = "allow", path: str = "/api/x",
          ip: str = "127.0.0.1") -> dict:
    return access_event(
        request_id=rid, method="GET", path=path, query_keys=["page"], status=200,
        outcome="success", source_ip=ip, user_agent="ua", started_ns=1, ended_ns=2,
        subject={"id": f"user:{user}", "name": user, "roles": [], "client_id": "app"},
        decision={"effect": effect, "reason": "r", "rule_id": "rule-1", "ruleset": "t"},
        data={"dataset": "population.persons"},
    )


def test_resent_event_is_stored_once(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "a.db")
    e = event("r1")
    assert store.append([e]) == 1
    assert store.append([e, event("r2")]) == 1
    assert store.count() == 2


def test_search_filters_and_top(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "a.db")
    store.append([event("r1"), event("r2", user="bob", effect="deny"),
                  event("r3", user="bob", ip="10.0.0.9")])
    assert [e["http"]["request"]["id"] for e in store.search(AuditQuery(user="bob"))] == ["r3", "r2"]
    assert store.count(AuditQuery(decision="deny")) == 1
    assert store.count(AuditQuery(source_ip="10.0.0.9")) == 1
    assert store.count(AuditQuery(dataset="population.persons", user="alice")) == 1
    assert store.top(AuditQuery(), "user.name") == [("bob", 2), ("alice", 1)]
    assert store.count(AuditQuery(text="rule-1")) == 3
    assert store.count(AuditQuery(text="100%_")) == 0  # LIKE metacharacters are literal
    with pytest.raises(QueryError):
        store.top(AuditQuery(), "doc; drop table events")


def test_query_validation_and_time() -> None:
    with pytest.raises(QueryError):
        AuditQuery(limit=0)
    with pytest.raises(QueryError):
        AuditQuery(decision="maybe")
    with pytest.raises(QueryError):
        parse_time("yesterday")
    assert parse_time("2026-01-01T08:00:00+08:00") == "2026-01-01T00:00:00.000000Z"
    dsl = to_es_dsl(AuditQuery(user="bob", since="2026-01-01T00:00:00.000000Z"))
    assert {"term": {"user.name": "bob"}} in dsl["query"]["bool"]["filter"]


def test_log_injection_is_escaped(tmp_path: Path) -> None:
    forged = "/api/x\r\n{\"event\":{\"action\":\"forged\"}}\x1b[31m"
    e = event("r1", path=forged)
    assert "\n" not in e["url"]["path"] and "\r" not in e["url"]["path"]
    assert "\x1b" not in e["url"]["path"]
    assert clean("a\u2028b") == "a\\u2028b"
    store = AuditStore(tmp_path / "a.db")
    store.append([e])
    (doc,) = store.search(AuditQuery())
    assert doc["url"]["path"].startswith("/api/x\\u000d\\u000a")


def test_query_values_never_stored(tmp_path: Path) -> None:
    e = access_event(
        request_id="r", method="GET", path="/p", query_keys=["id_number"], status=200,
        outcome="success", source_ip=None, user_agent=None, started_ns=0, ended_ns=0,
        subject=None, decision=None, data=None,
    )
    assert e["url"]["query"] == "id_number="


def test_writer_acknowledges_after_spooling(tmp_path: Path) -> None:
    log = AuditLog(AuditStore(tmp_path / "a.db"))
    log.start()
    futures = [log.emit(event(f"r{i}")) for i in range(500)]
    for f in futures:
        f.result(timeout=10)
    # every acknowledged event is in the spool on disk, read through a separate file handle
    lines = b"".join(p.read_bytes() for p in sorted((tmp_path / "spool").glob("seg-*.ndjson")))
    assert len(lines.splitlines()) == 500
    assert log.flush(10)
    conn = sqlite3.connect(tmp_path / "a.db")
    assert conn.execute("select count(*) from events").fetchone()[0] == 500
    log.close()
    with pytest.raises(AuditUnavailable):
        log.emit(event("late"))


def test_event_without_timestamp_is_refused(tmp_path: Path) -> None:
    log = AuditLog(AuditStore(tmp_path / "a.db"))
    log.start()
    bad = event("r1")
    bad["@timestamp"] = None
    with pytest.raises(InvalidEvent):
        log.emit(bad)
    assert issubclass(InvalidEvent, AuditUnavailable)  # the data plane answers 503
    log.emit(event("r2")).result(timeout=10)
    log.close()
