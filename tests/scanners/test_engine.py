"""The engine and its stateful detections on synthetic ECS events (built with the audit
package's own builders), alerts' shape, grouping, and automatic responses."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ztgw.audit.events import access_event, auth_event
from ztgw.scanners.engine import DetectionEngine, DetectionSettings
from ztgw.scanners.response import Blocklist, ResponseBook
from ztgw.scanners.stateful import Thresholds

T0 = datetime(2026, 11, 18, 2, 0, tzinfo=UTC).timestamp()  # Wed 10:00 in Beijing


def at(ev: dict[str, Any], ts: float) -> dict[str, Any]:
    ev["@timestamp"] = datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    return ev


def login_failed(user: str, ip: str, ts: float) -> dict[str, Any]:
    return at(auth_event(action="login-failed", outcome="failure", request_id="r", client_id="portal",
                         source_ip=ip, user=user, reason="bad_password"), ts)


def read(path: str, *, ip: str = "10.0.0.5", user: str | None = "svc", status: int = 200,
         records: int | None = None, classification: str = "一般", ts: float = T0,
         ua: str = "app/1.0", token: str | None = None) -> dict[str, Any]:
    now = time.time_ns()
    subject = {"id": f"client:{user}", "name": user, "client_id": user} if user else None
    data = {"dataset": "population.persons", "classification": classification}
    if records is not None:
        data["records"] = records
    ev = access_event(request_id="r", method="GET", path=path, query_keys=[], status=status,
                      outcome="success" if status == 200 else "failure", source_ip=ip,
                      user_agent=ua, started_ns=now, ended_ns=now, subject=subject, decision=None,
                      data=data)
    if token:
        ev["ztgw"]["token"] = {"fingerprint": token}
    return at(ev, ts)


def engine(tmp_path: Path | None = None, **kw: Any) -> DetectionEngine:
    s = DetectionSettings(dedup_window=300, responses_enabled=tmp_path is not None, **kw)
    book = ResponseBook(tmp_path / "d.db") if tmp_path else None
    return DetectionEngine(settings=s, responses=book)


def categories(alerts: list[dict[str, Any]]) -> list[str]:
    return [a["rule"]["category"] for a in alerts]


def test_brute_force_needs_the_threshold_within_the_window() -> None:
    e = engine()
    assert e.process(login_failed("lina", "10.9.0.1", T0 + i * 60) for i in range(5)) == []  # 4 min
    out = e.process(login_failed("lina", "10.9.0.1", T0 + 300 + i) for i in range(5))
    assert categories(out) == ["brute-force"]
    a = out[0]
    assert a["event"]["kind"] == "alert" and a["event"]["severity"] == 3
    assert a["user"]["name"] == "lina" and len(a["ztgw"]["alert"]["evidence"]) == 5


def test_unknown_names_do_not_make_brute_force_but_make_stuffing() -> None:
    e = engine()
    out = e.process(login_failed("(unknown)", "10.9.0.2", T0 + i) for i in range(8))
    assert categories(out) == ["credential-stuffing"]
    assert out[0]["source"]["ip"] == "10.9.0.2"


def test_spraying_many_accounts_from_one_address() -> None:
    e = engine()
    out = e.process(login_failed(u, "10.9.0.3", T0 + i) for i, u in enumerate(["a", "b", "c", "d"]))
    assert "password-spraying" in categories(out)
    assert "brute-force" not in categories(out)


def test_token_replay_by_fingerprint_and_not_from_one_address() -> None:
    e = engine()
    assert e.process(read("/api/p", ip="10.0.0.1", token="sm3:aa", ts=T0 + i) for i in range(10)) == []
    out = e.process([read("/api/p", ip="10.0.0.2", token="sm3:aa", ts=T0 + 11)])
    assert categories(out) == ["token-replay"]
    assert out[0]["ztgw"]["alert"]["group"] == "ztgw-token-replay|token:sm3:aa"


def test_enumeration_burst_and_sequential_ids() -> None:
    e = engine()
    out = e.process(read(f"/api/p/{i}", ip="10.0.0.9", user=None, status=404, ts=T0 + i / 10)
                    for i in range(20))
    assert "enumeration" in categories(out)
    e2 = engine()
    ids = [f"/api/population/persons/1101011990030{7000 + i}" for i in range(10)]
    out2 = e2.process(read(p, ts=T0 + i) for i, p in enumerate(ids))
    assert [a["ztgw"]["alert"]["run"] for a in out2] == [10]
    e3 = engine()  # scattered identifiers are ordinary lookups
    scattered = [f"/api/population/persons/{110101199003070000 + i * 7919}" for i in range(12)]
    assert e3.process(read(p, ts=T0 + i) for i, p in enumerate(scattered)) == []


def test_exfiltration_against_baseline() -> None:
    e = engine(thresholds=Thresholds(exfil_min_records=1000, exfil_factor=10))
    # a busy principal reads 300 records per window: 1,500 is ordinary for it (limit 3,000)
    busy = [read("/api/p", user="busy", records=300, ts=T0 + i * 400) for i in range(30)]
    assert e.process(busy) == []
    assert e.process(read("/api/p", user="busy", records=500, ts=T0 + 12_000 + i) for i in range(3)) == []
    # a quiet one (20 per window) reading the same 1,500 is far above its baseline
    quiet = [read("/api/p", user="quiet", records=20, ts=T0 + i * 400) for i in range(30)]
    assert e.process(quiet) == []
    out = e.process(read("/api/p", user="quiet", records=500, ts=T0 + 12_000 + i) for i in range(3))
    assert categories(out) == ["exfiltration"]
    assert out[0]["ztgw"]["alert"]["records"] == 1000 and out[0]["user"]["name"] == "quiet"


def test_off_hours_core_only() -> None:
    e = engine()
    night = datetime(2026, 11, 18, 15, 30, tzinfo=UTC).timestamp()  # 23:30 Beijing
    assert e.process([read("/api/p", classification="核心", ts=T0)]) == []  # working hours
    assert e.process([read("/api/p", classification="重要", ts=night)]) == []
    out = e.process([read("/api/p", classification="核心", ts=night)])
    assert categories(out) == ["off-hours"]


def test_grouping_and_dedup_window() -> None:
    e = engine()
    evs = [read("/api/p/1' or '1'='1", ip="10.7.7.7", ts=T0 + i) for i in range(5)]
    assert len(e.process(evs)) == 1
    assert e.suppressed == 4
    again = e.process([read("/api/p/1' or '1'='1", ip="10.7.7.7", ts=T0 + 400)])
    assert len(again) == 1 and again[0]["ztgw"]["alert"]["count"] == 5
    other = e.process([read("/api/p/1' or '1'='1", ip="10.7.7.8", ts=T0 + 401)])
    assert len(other) == 1


def test_alerts_are_not_re_read_as_events() -> None:
    e = engine()
    alerts = e.process([read("/api/p/<script>", ip="10.7.7.9")])
    assert alerts and e.process(alerts) == [] and e.seen == 1


def test_responses_taken_audited_and_undone(tmp_path: Path) -> None:
    emitted: list[dict[str, Any]] = []
    book = ResponseBook(tmp_path / "d.db", emitted.append)
    e = DetectionEngine(settings=DetectionSettings(responses_enabled=True,
                                                   allowlist_ips=("10.0.0.99",)),
                        responses=book)
    out = e.process(login_failed("lina", "10.9.0.1", T0 + i) for i in range(5))
    kinds = {r["action"] for r in out[0]["ztgw"]["alert"]["responses"]}
    assert kinds == {"lock-account", "block-ip"}
    assert [ev["event"]["action"] for ev in emitted] == ["response-lock-account-taken",
                                                          "response-block-ip-taken"]
    bl = Blocklist(book, refresh=0)
    assert bl.blocked_ip("10.9.0.1") and bl.account_locked("lina")
    assert not bl.blocked_ip("10.9.0.2") and not bl.account_locked("wangfang")
    ip_action = next(a for a in book.active() if a.kind == "block-ip")
    book.undo(ip_action.id, "blue-team")
    assert not bl.blocked_ip("10.9.0.1") and bl.account_locked("lina")
    assert book.audit_undone() == 1 and book.audit_undone() == 0
    assert emitted[-1]["event"]["action"] == "response-block-ip-undone"
    assert emitted[-1]["user"]["name"] == "blue-team"
    # the allow-listed address is never blocked
    e.process(login_failed("wangfang", "10.0.0.99", T0 + 10 + i) for i in range(5))
    assert not bl.blocked_ip("10.0.0.99") and bl.account_locked("wangfang")


def test_responses_expire(tmp_path: Path) -> None:
    book = ResponseBook(tmp_path / "d.db")
    book.raise_risk("lina", 40, 1, reason="t", rule_id="r", alert_id="a")
    book.raise_risk("lina", 80, 3600, reason="t", rule_id="r", alert_id="b")
    bl = Blocklist(book, refresh=0)
    assert bl.risk("lina") == 100.0  # capped
    time.sleep(1.1)
    assert bl.risk("lina") == 80.0


def test_responses_off_by_default(tmp_path: Path) -> None:
    book = ResponseBook(tmp_path / "d.db")
    e = DetectionEngine(responses=book)
    out = e.process(login_failed("lina", "10.9.0.1", T0 + i) for i in range(5))
    assert out and "responses" not in out[0]["ztgw"]["alert"] and book.active() == []


def test_one_follower_per_home_and_acks_audited(tmp_path: Path) -> None:
    from ztgw.audit.store import AuditStore
    from ztgw.scanners.engine import DetectionService

    db = tmp_path / "audit.db"
    AuditStore(db).close()
    lock = tmp_path / "engine.lock"
    first = DetectionService(db, DetectionEngine(), poll_interval=0.05, lock_path=lock)
    second = DetectionService(db, DetectionEngine(), poll_interval=0.05, lock_path=lock)
    first.start()
    second.start()
    try:
        # either thread may win the lock; exactly one follows, the other stands by
        deadline = time.monotonic() + 10
        while not (first.active or second.active) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        assert first.active != second.active
        leader, standby = (first, second) if first.active else (second, first)
        leader.stop()  # releasing the lock lets the standing-by follower take over
        deadline = time.monotonic() + 15
        while not standby.active and time.monotonic() < deadline:
            time.sleep(0.05)
        assert standby.active and not leader.active
    finally:
        first.stop()
        second.stop()
    emitted: list[dict[str, Any]] = []
    book = ResponseBook(tmp_path / "d.db", emitted.append)
    from ztgw.scanners.response import open_db

    conn = open_db(tmp_path / "d.db")
    conn.execute("INSERT INTO alert_ack (alert_id, acked_at, acked_by, note) VALUES ('a1', 0, 'blue', 'ok')")
    conn.close()
    assert book.audit_acks() == 1 and book.audit_acks() == 0
    assert emitted[0]["event"]["action"] == "alert-acknowledged" and emitted[0]["user"]["name"] == "blue"


def test_service_fed_by_the_audit_log_fills_gaps_from_the_store_once(tmp_path: Path) -> None:
    """The audit writer hands its parsed documents to the service (no store re-read); what
    the feed never saw (here: written before the service started) comes from the store, in
    sequence order, and no event is processed twice."""
    from ztgw.audit.config import AuditSettings
    from ztgw.audit.log import AuditLog
    from ztgw.audit.store import AuditStore
    from ztgw.scanners.engine import DetectionService

    home = tmp_path / "home"
    db = home / "audit" / "audit.db"
    db.parent.mkdir(parents=True)
    log = AuditLog(AuditStore(db), config=AuditSettings(db_path=db, fsync="never", batch_delay=0.01))
    log.start()
    svc: DetectionService | None = None
    try:
        now = time.time()
        for i in range(3):  # before the service: only in the store
            log.emit(login_failed("alice", "10.9.9.9", now + i))
        assert log.flush()
        reader = AuditStore(db)
        deadline = time.monotonic() + 10
        while reader.last_seq() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        eng = DetectionEngine(settings=DetectionSettings(dedup_window=300), emit=log.emit)
        svc = DetectionService(db, eng, poll_interval=0.05)
        svc.attach(log)
        svc.start(from_start=True)
        while not svc.active and time.monotonic() < deadline:
            time.sleep(0.02)
        for i in range(3, 6):  # live: through the feed
            log.emit(login_failed("alice", "10.9.9.9", now + i))
        assert log.flush()
        while (eng.seen < 6 or eng.raised < 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert eng.seen == 6 and eng.raised == 1  # six events, each once; one brute-force alert
        status = svc.status()
        assert status["fed"] and status["from_store"] >= 3 and status["skipped"] == 0
        # the alert went back into the trail, and the service did not re-read it as an event
        while not any(d["event"]["dataset"] == "ztgw.alert" for _, d in reader.after(0, 100)) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        alerts = [d for _, d in reader.after(0, 100) if d["event"]["dataset"] == "ztgw.alert"]
        assert [a["rule"]["id"] for a in alerts] == ["ztgw-brute-force"]
        assert eng.seen == 6
        reader.close()
    finally:
        if svc is not None:
            svc.stop()
        log.close()


def test_distinct_counts_forget_what_left_the_window() -> None:
    """Lazy expiry: a value seen only before the window does not count (replay, spraying,
    sequential identifiers)."""
    e = engine()
    assert e.process([read("/api/p/1", ip="10.0.0.1", token="fp1", ts=T0)]) == []
    # 700 s later (window 600 s) a second address is not a replay …
    assert e.process([read("/api/p/1", ip="10.0.0.2", token="fp1", ts=T0 + 700)]) == []
    # … a third one within the window of the second is
    got = e.process([read("/api/p/1", ip="10.0.0.3", token="fp1", ts=T0 + 710)])
    assert categories(got) == ["token-replay"]
    assert got[0]["ztgw"]["alert"]["addresses"] == ["10.0.0.2", "10.0.0.3"]
    # spraying: three accounts long ago and one now are not four within 600 s
    e2 = engine()
    for i, u in enumerate(["a", "b", "c"]):
        e2.process([login_failed(u, "10.5.5.5", T0 + i)])
    assert e2.process([login_failed("d", "10.5.5.5", T0 + 900)]) == []
    # sequential identifiers: 1..5 long ago and 6..10 now are not a run of ten
    e3 = engine()
    for i in range(1, 6):
        e3.process([read(f"/api/population/persons/{1000 + i}", ts=T0 + i)])
    out = []
    for i in range(6, 11):
        out += e3.process([read(f"/api/population/persons/{1000 + i}", ts=T0 + 400 + i)])
    assert "enumeration" not in categories(out)
    for i in range(11, 16):
        out += e3.process([read(f"/api/population/persons/{1000 + i}", ts=T0 + 400 + i)])
    assert "enumeration" in categories(out)


def test_distinct_values_per_key_stay_bounded() -> None:
    from ztgw.scanners.stateful import DistinctWindows

    w = DistinctWindows(600.0, max_values=100)
    for i in range(5_000):
        d = w.add("k", T0 + i * 0.01, f"e{i}", i)
        assert len(d.tally) <= 2 * 100 + 64
    assert d.live(T0) <= 2 * 100 and 4_999 in d.tally  # the newest kept
    for i in range(5_000, 5_300):  # after the window everything old is dropped at the next purge
        d = w.add("k", T0 + 10_000 + i, f"e{i}", i)
    assert all(v >= 5_000 for v in d.tally)
