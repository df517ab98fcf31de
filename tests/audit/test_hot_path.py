"""The writer's fast paths give the same answers as their plain definitions: the byte scans
that decide whether an event needs sanitising, the one-pass chain + spool serialisation, the
Merkle root and the writer's hand-off queue."""

from __future__ import annotations

import random
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from ztgw.audit.chain import canonical, link, merkle_root
from ztgw.audit.config import AuditSettings
from ztgw.audit.errors import AuditUnavailable, InvalidEvent
from ztgw.audit.events import (
    _CONTROL_JSON,
    _SECRET_JSON,
    MAX_FIELD_CHARS,
    SECRET_KEYS,
    _has_long_run,
    fingerprint,
    needs_sanitize,
    sanitize,
)
from ztgw.audit.handoff import STOP, HandOff
from ztgw.audit.log import AuditLog
from ztgw.audit.query import AuditQuery
from ztgw.audit.store import AuditStore
from ztgw.crypto import sm3

from .conftest import make_event, with_

KEYS = [*sorted(SECRET_KEYS), "event", "user", "name", "tokens", "xtoken", "token_x", "secrets",
        "id", "a\"token", "api-key", "pass word", "Σ", "值"]
STRINGS = ["plain", "核心", "x\ny", "\x1b[31m", "a\x7fb", "line\u2028sep", "para\u2029", "“quoted”",
           "…", "back\\slash", 'say "token":', "\"password\":", "\t", "\x00", "é", ""]


def _case(rng: random.Random, key: str) -> str:
    return "".join(c.upper() if rng.random() < 0.3 else c for c in key)


def _value(rng: random.Random, depth: int) -> Any:
    r = rng.random()
    if depth < 4 and r < 0.25:
        return {_case(rng, rng.choice(KEYS)): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if depth < 4 and r < 0.35:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if r < 0.45:
        return rng.choice([None, 3, 2.5, True])
    if r < 0.5:
        return "x" * rng.choice([MAX_FIELD_CHARS - 1, MAX_FIELD_CHARS, MAX_FIELD_CHARS + 1])
    return rng.choice(STRINGS) + rng.choice(STRINGS)


def _reference(raw: bytes) -> bool:
    """The plain definition: a control escape, a secret-named key, an over-long string."""
    return bool(_CONTROL_JSON.search(raw) or _SECRET_JSON.search(raw.lower())
                or _has_long_run(raw))


def test_needs_sanitize_agrees_with_its_definition_on_random_events() -> None:
    rng = random.Random(9)
    flagged = 0
    for _ in range(3000):
        doc = {"event": {"id": "e"}, "ztgw": _value(rng, 1)}
        raw = canonical(doc)
        expected = _reference(raw)
        assert needs_sanitize(raw) == expected, raw[:300]
        flagged += expected
    assert 300 < flagged < 2900  # both answers were exercised


def test_a_secret_named_key_is_flagged_in_any_case_and_depth() -> None:
    for key in sorted(SECRET_KEYS):
        for shown in (key, key.upper(), key.capitalize()):
            raw = orjson.dumps({"a": [{"b": {shown: "v"}}]})
            assert needs_sanitize(raw), shown
            assert sanitize(orjson.loads(raw))["a"][0]["b"][shown] != "v"
    assert not needs_sanitize(orjson.dumps({"tokens": 1, "xtoken": 2, "token_x": 3, "msg": "token"}))


# --- the chain's pre-absorbed SM3 contexts -------------------------------------------------

def _reference_root(values: list[bytes]) -> bytes:
    """RFC 6962 §2.1 written out with ``sm3.digest``, as the checkpoint format defines it."""
    if not values:
        return sm3.digest(b"")
    if len(values) == 1:
        return sm3.digest(b"\x00" + values[0])
    k = 1
    while k * 2 < len(values):
        k *= 2
    return sm3.digest(b"\x01" + _reference_root(values[:k]) + _reference_root(values[k:]))


def test_merkle_root_and_link_match_their_definitions() -> None:
    rng = random.Random(5)
    values = [rng.randbytes(32) for _ in range(70)]
    for n in [*range(0, 18), 31, 32, 33, 64, 70]:
        assert merkle_root(values[:n]) == _reference_root(values[:n]), n
    body = rng.randbytes(1500)
    assert link(values[0], 7, body) == sm3.digest(values[0] + (7).to_bytes(8, "big") + body)


# --- the hand-off to the writer --------------------------------------------------------------

def test_handoff_bounds_takes_in_order_and_stops_at_the_sentinel() -> None:
    box: HandOff[int] = HandOff(3)
    assert box.put(1) and box.put(2) and box.put(3)
    assert not box.put(4)  # full: refused, not dropped silently
    assert box.put(5, force=True) and len(box) == 4
    got: list[int] = []
    assert not box.take(got, 2) and got == [1, 2]
    box.put(STOP, force=True)
    box.put(6, force=True)
    assert box.take(got, 100) and got == [1, 2, 3, 5]
    assert box.drain() == [6] and len(box) == 0


def test_handoff_wakes_the_consumer_for_every_put() -> None:
    box: HandOff[int] = HandOff(10_000)
    total = 2_000
    got: list[int] = []

    def consume() -> None:
        while len(got) < total:
            box.wait(5.0)
            box.take(got, 10_000)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(total):
        box.put(i)
    t.join(30)
    assert not t.is_alive() and got == list(range(total))


def test_events_queued_behind_the_stop_are_refused_not_left_waiting(conf: AuditSettings) -> None:
    log = AuditLog.from_settings(with_(conf, sinks=()))
    log.start()
    before = log.emit(make_event("before"))
    log._handoff.put(STOP, force=True)  # what close() puts; then an event slips in behind it
    behind: Future[None] = Future()
    log._handoff.put((make_event("behind"), behind), force=True)
    before.result(10)
    with pytest.raises(AuditUnavailable):
        behind.result(10)
    with pytest.raises(AuditUnavailable):  # and the trail refuses from now on
        log.emit(make_event("after"))
    log.close()


@dataclass
class _Login:
    user: str
    password: str


def test_a_secret_inside_a_dataclass_value_is_fingerprinted(conf: AuditSettings) -> None:
    log = AuditLog.from_settings(conf)
    log.start()
    event = make_event("dc")
    event["ztgw"]["login"] = _Login("alice", "hunter2")
    log.emit(event).result(10)
    assert log.flush(10)
    log.close()
    (doc,) = AuditStore(conf.db_path).search(AuditQuery(request_id="dc"))
    assert doc["ztgw"]["login"]["user"] == "alice"
    assert doc["ztgw"]["login"]["password"] == fingerprint("hunter2")
    assert "hunter2" not in orjson.dumps(doc).decode()


# --- the store's line path -------------------------------------------------------------------

def test_store_takes_spool_lines_skips_damaged_ones_and_dedupes(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "a.db")
    docs = [make_event(f"r{i}") for i in range(3)]
    for i, doc in enumerate(docs, 1):
        doc["ztgw"]["chain"] = {"seq": i, "prev_hash": "00"}
    docs[1]["user"]["name"] = {"not": "a scalar"}  # a column that cannot hold it: NULL, not a failure
    lines = [orjson.dumps(d) for d in docs]
    new, last, bad = store.append_lines([lines[0], b'{"torn": ', lines[1], b'{"event": 1}', lines[2]])
    assert (new, last, bad) == (3, 3, 2)
    assert store.append_lines(lines) == (0, 3, 0)  # a re-sent batch: nothing new
    (row,) = store.search(AuditQuery(request_id="r1"))
    assert row == orjson.loads(lines[1]) and row["user"]["name"] == {"not": "a scalar"}
    assert [d["http"]["request"]["id"] for d in store.iter_all()] == ["r0", "r1", "r2"]


def test_every_filter_of_a_search_and_its_total_uses_an_index(tmp_path: Path) -> None:
    """A filter the store would answer by reading every row gets slower with every event kept;
    each one the CLI, the admin API, the console and the scanners use must seek an index."""
    store = AuditStore(tmp_path / "a.db")
    queries = [AuditQuery(user="u"), AuditQuery(client="c"), AuditQuery(source_ip="10.0.0.1"),
               AuditQuery(dataset="population.persons", since="2026-11-01T00:00:00Z"),
               AuditQuery(decision="deny"), AuditQuery(client="c", decision="deny"),
               AuditQuery(outcome="failure"), AuditQuery(event_dataset="ztgw.alert"),
               AuditQuery(request_id="r"), AuditQuery(since="2026-11-01T00:00:00Z")]
    for q in queries:
        where, args = store._where(q)
        for sql, extra in ((f"SELECT doc FROM events{where} ORDER BY ts DESC, seq DESC LIMIT ?", 50),
                           (f"SELECT count(*) FROM (SELECT 1 FROM events{where} LIMIT ?)", 10_000)):
            plan = " / ".join(r[3] for r in store._conn.execute("EXPLAIN QUERY PLAN " + sql, [*args, extra]))
            assert "SEARCH events USING" in plan, (q, plan)


def test_event_id_is_a_string_or_given_one(conf: AuditSettings) -> None:
    """``event.id`` is every sink's document id: a non-string one would fail the store's batch
    on every re-send, so it is refused at the door; a missing or null one is drawn."""
    log = AuditLog.from_settings(conf)
    log.start()
    bad = make_event("bad-id")
    bad["event"]["id"] = {"not": "an id"}
    with pytest.raises(InvalidEvent):
        log.emit(bad)
    null = make_event("null-id")
    null["event"]["id"] = None
    log.emit(null).result(10)
    assert log.flush(10)
    log.close()
    (doc,) = AuditStore(conf.db_path).search(AuditQuery(request_id="null-id"))
    assert isinstance(doc["event"]["id"], str) and len(doc["event"]["id"]) > 20
