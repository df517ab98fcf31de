"""The durable trail: spool before acknowledgement, chain continuity across restarts, torn-tail
recovery, fail-closed spool errors, quota with alert, sink outage and recovery without loss or
duplicates, JSON-lines sink, and log injection in the spool."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import pytest

from ztgw.audit.chain import chain_fields
from ztgw.audit.checkpoint import PUBLIC_KEY_FILE, read_checkpoints
from ztgw.audit.config import AuditSettings
from ztgw.audit.errors import AuditUnavailable
from ztgw.audit.log import AuditLog
from ztgw.audit.query import AuditQuery
from ztgw.audit.spool import SpoolLocked
from ztgw.audit.store import AuditStore
from ztgw.audit.verify import verify
from ztgw.crypto.errors import CryptoError

from .conftest import FlakySink, make_event, with_


def spooled(conf: AuditSettings) -> list[dict]:
    out = []
    for seg in sorted(conf.effective_spool_dir.glob("seg-*.ndjson")):
        out.extend(orjson.loads(line) for line in seg.read_bytes().splitlines())
    return out


def check(conf: AuditSettings) -> None:
    store = AuditStore(conf.db_path)
    report = verify(store, conf.effective_checkpoint_path,
                    conf.effective_keys_dir / PUBLIC_KEY_FILE, list(conf.witness_dirs))
    store.close()
    assert report.ok, report.to_dict()


def test_chain_continues_across_restarts_and_verifies(conf: AuditSettings) -> None:
    for round_ in range(3):
        log = AuditLog.from_settings(conf)
        log.start()
        for f in [log.emit(make_event(f"r{round_}-{i}")) for i in range(40)]:
            f.result(timeout=10)
        log.close()
    store = AuditStore(conf.db_path)
    assert store.count() == 120
    assert [s for s, _ in store.after(0, limit=200)] == list(range(1, 121))
    cps, bad = read_checkpoints(conf.effective_checkpoint_path)
    assert not bad and cps[-1].seq_to == 120  # close() signs a last checkpoint
    assert [c.seq_from for c in cps] == [1] + [c.seq_to + 1 for c in cps[:-1]]
    check(conf)


def test_acknowledged_means_in_the_spool_even_if_no_sink_ran(conf: AuditSettings) -> None:
    log = AuditLog.from_settings(with_(conf, sinks=()))
    log.start()
    for f in [log.emit(make_event(f"r{i}")) for i in range(100)]:
        f.result(timeout=10)
    # read by another handle while the writer is still running: all 100, in chain order
    assert [chain_fields(d)[0] for d in spooled(conf)] == list(range(1, 101))
    log.close()
    # the next start ships the backlog to the store (at least once, stored once)
    log = AuditLog.from_settings(conf)
    log.start()
    assert log.flush(10)
    log.close()
    assert AuditStore(conf.db_path).count() == 100
    check(conf)


def test_torn_tail_is_cut_and_the_chain_goes_on(conf: AuditSettings) -> None:
    log = AuditLog.from_settings(conf)
    log.start()
    for f in [log.emit(make_event(f"r{i}")) for i in range(10)]:
        f.result(timeout=10)
    log.close()
    seg = sorted(conf.effective_spool_dir.glob("seg-*.ndjson"))[-1]
    whole = seg.stat().st_size
    with open(seg, "ab") as f:  # a write the process died in the middle of (never acknowledged)
        f.write(b'{"@timestamp":"2026-01-01T00:00:00Z","event":{"id":"torn')
    log = AuditLog.from_settings(conf)
    log.start()
    assert seg.stat().st_size == whole
    log.emit(make_event("after")).result(timeout=10)
    assert log.flush(10)
    log.close()
    docs = AuditStore(conf.db_path).search(AuditQuery(request_id="after"))
    assert docs[0]["ztgw"]["chain"]["seq"] == 11
    check(conf)


def test_spool_write_error_fails_closed(conf: AuditSettings) -> None:
    log = AuditLog.from_settings(conf)
    log.start()
    # the first segment is opened on the first write: make every write fail with ENOSPC
    (conf.effective_spool_dir / "seg-0000000001.ndjson").symlink_to("/dev/full")
    with pytest.raises(AuditUnavailable):
        log.emit(make_event("r1")).result(timeout=10)
    assert not log.healthy
    with pytest.raises(AuditUnavailable):
        log.emit(make_event("r2"))
    log.close()


def test_sink_outage_then_recovery_loses_nothing_and_duplicates_nothing(
        conf: AuditSettings) -> None:
    flaky = FlakySink()
    flaky.down.set()
    log = AuditLog.from_settings(with_(conf, sinks=("store", "jsonl")), extra_sinks=[flaky])
    log.start()
    ids = []
    for i in range(300):
        ev = make_event(f"r{i}", classification="一般" if i % 2 else "核心")
        ids.append(ev["event"]["id"])
        log.emit(ev)
    while flaky.refused < 3:  # the sink has refused (and been retried) several times
        time.sleep(0.05)
    assert flaky.received == []
    flaky.down.clear()
    assert log.flush(60)
    assert flaky.received == ids  # everything, once, in order
    log.close()
    store = AuditStore(conf.db_path)
    assert store.count() == 300
    lines = conf.effective_jsonl_path.read_bytes().splitlines()
    assert [orjson.loads(x)["event"]["id"] for x in lines] == ids
    # a restart re-reads nothing twice: cursors were persisted
    log = AuditLog.from_settings(with_(conf, sinks=("store", "jsonl")))
    log.start()
    assert log.flush(10)
    log.close()
    assert len(conf.effective_jsonl_path.read_bytes().splitlines()) == 300
    check(conf)


def test_resent_batches_are_not_duplicated(conf: AuditSettings) -> None:
    c = with_(conf, sinks=("store", "jsonl"))
    log = AuditLog.from_settings(c)
    log.start()
    for f in [log.emit(make_event(f"r{i}")) for i in range(50)]:
        f.result(timeout=10)
    assert log.flush(10)
    log.close()
    # a crash between delivery and cursor save: the sinks see the whole spool again
    for cursor in (c.effective_spool_dir / "cursors").glob("*.json"):
        cursor.unlink()
    log = AuditLog.from_settings(c)
    log.start()
    assert log.flush(10)
    log.close()
    assert AuditStore(c.db_path).count() == 50
    assert len(c.effective_jsonl_path.read_bytes().splitlines()) == 50


def test_full_spool_refuses_and_alerts_then_recovers(conf: AuditSettings) -> None:
    flaky = FlakySink()
    flaky.down.set()
    c = with_(conf, sinks=(), spool_quota_bytes=1024 * 1024, segment_bytes=64 * 1024)
    log = AuditLog.from_settings(c, extra_sinks=[flaky])
    log.start()
    refused = None
    for i in range(5000):
        try:
            log.emit(make_event(f"r{i}")).result(timeout=10)
        except AuditUnavailable as exc:
            refused = exc
            break
    assert refused is not None and "full" in str(refused)
    assert log.alerts >= 1 and not log.healthy
    flaky.down.clear()  # the sink comes back: shipped, checkpointed segments are freed
    deadline = time.monotonic() + 30
    while not log.healthy and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log.healthy
    log.emit(make_event("after")).result(timeout=10)
    assert log.flush(20)
    log.close()
    assert len(set(flaky.received)) == len(flaky.received) == i + 2  # alert event + "after"
    assert any(True for _ in c.effective_spool_dir.glob("seg-*.ndjson"))


def test_witness_gets_every_checkpoint(conf: AuditSettings, tmp_path: Path) -> None:
    witness = tmp_path / "witness"
    c = with_(conf, witness_dirs=(witness,))
    log = AuditLog.from_settings(c)
    log.start()
    for f in [log.emit(make_event(f"r{i}")) for i in range(60)]:
        f.result(timeout=10)
    log.close()
    assert (witness / "checkpoints.jsonl").read_bytes() == c.effective_checkpoint_path.read_bytes()
    check(c)


def test_log_injection_stays_one_line_in_spool_and_store(conf: AuditSettings) -> None:
    forged = '/api/x\r\n{"event":{"action":"forged"}}\n\x1b[2J\u2028'
    log = AuditLog.from_settings(with_(conf, sinks=("store", "jsonl")))
    log.start()
    ev = make_event("inj", path=forged)
    ev["user_agent"] = {"original": "curl\nX-Forged: 1"}  # a field the builder did not clean
    log.emit(ev).result(timeout=10)
    assert log.flush(10)
    log.close()
    for raw in (b"".join(p.read_bytes() for p in conf.effective_spool_dir.glob("seg-*")),
                conf.effective_jsonl_path.read_bytes()):
        lines = raw.splitlines()
        assert len(lines) == 1  # JSON escapes every control character: one event, one line
        assert b"\x1b" not in raw and b"\r" not in raw
        assert orjson.loads(lines[0])["event"].get("action") == "data-api-read"
    (doc,) = AuditStore(conf.db_path).search(AuditQuery(request_id="inj"))
    assert "\n" not in doc["url"]["path"] and "\x1b" not in doc["url"]["path"]


def test_signing_key_is_private(conf: AuditSettings) -> None:
    log = AuditLog.from_settings(conf)
    log.start()
    log.close()
    key = conf.effective_keys_dir / "audit-checkpoint-sm2.pem"
    assert key.exists() and (os.stat(key).st_mode & 0o077) == 0


def test_one_writer_per_spool(conf: AuditSettings) -> None:
    first = AuditLog.from_settings(conf)
    first.start()
    second = AuditLog.from_settings(conf)
    with pytest.raises(SpoolLocked):
        second.start()  # e.g. `ztgw serve --workers 2` on one home: refuse, do not fork the chain
    first.close()
    second = AuditLog.from_settings(conf)
    second.start()
    second.emit(make_event("r")).result(timeout=10)
    second.close()


def test_oversized_event_is_refused_and_the_chain_goes_on(conf: AuditSettings) -> None:
    log = AuditLog.from_settings(conf)
    log.start()
    big = make_event("big")
    big["labels"] = {f"k{i}": "v" * 1000 for i in range(400)}
    with pytest.raises(AuditUnavailable):
        log.emit(big).result(timeout=10)
    log.emit(make_event("next")).result(timeout=10)
    assert log.healthy
    log.close()
    check(conf)


def test_a_damaged_spool_line_does_not_stop_shipping(conf: AuditSettings) -> None:
    log = AuditLog.from_settings(with_(conf, sinks=()))
    log.start()
    for f in [log.emit(make_event(f"r{i}")) for i in range(5)]:
        f.result(timeout=10)
    log.close()
    seg = sorted(conf.effective_spool_dir.glob("seg-*.ndjson"))[-1]
    lines = seg.read_bytes().splitlines(keepends=True)
    lines[2] = b"#" * (len(lines[2]) - 1) + b"\n"  # bit rot in the middle of the spool
    seg.write_bytes(b"".join(lines))
    log = AuditLog.from_settings(conf)
    log.start()
    assert log.flush(10)
    assert log.shippers[0].corrupt == 1
    log.close()
    store = AuditStore(conf.db_path)
    assert store.count() == 4
    report = verify(store, conf.effective_checkpoint_path,
                    conf.effective_keys_dir / PUBLIC_KEY_FILE, [])
    assert report.first_bad_position == 3 and {f.kind for f in report.findings} == {"missing"}


def test_a_failed_start_releases_the_spool(conf: AuditSettings) -> None:
    conf.effective_keys_dir.mkdir(parents=True)
    (conf.effective_keys_dir / "audit-checkpoint-sm2.pem").write_text("not a key")
    with pytest.raises(CryptoError):
        AuditLog.from_settings(conf).start()
    (conf.effective_keys_dir / "audit-checkpoint-sm2.pem").unlink()
    log = AuditLog.from_settings(conf)
    log.start()  # not SpoolLocked: the failed attempt let go of the lock
    log.emit(make_event("r")).result(timeout=10)
    log.close()


def test_checkpoints_can_travel_with_the_events_to_every_sink(conf: AuditSettings) -> None:
    c = with_(conf, sinks=("store", "jsonl"), checkpoint_events=True, checkpoint_seconds=0.2)
    log = AuditLog.from_settings(c)
    log.start()
    for f in [log.emit(make_event(f"r{i}")) for i in range(10)]:
        f.result(timeout=10)
    deadline = time.monotonic() + 20
    while log.checkpoints is not None and log.checkpoints.last_seq < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # idle: an announcement alone must not trigger another checkpoint
    assert log.flush(10)
    written = log.written
    log.close()
    store = AuditStore(c.db_path)
    (cp_doc,) = store.search(AuditQuery(event_dataset="ztgw.audit"))
    cps, _ = read_checkpoints(c.effective_checkpoint_path)
    assert cp_doc["ztgw"]["checkpoint"] == {**cp_doc["ztgw"]["checkpoint"], "seq_to": cps[0].seq_to,
                                            "sig": cps[0].sig}
    assert written == 11  # ten events and one announcement, no endless loop
    lines = c.effective_jsonl_path.read_bytes().splitlines()
    assert any(b"audit-checkpoint" in x for x in lines)
    check(c)


def test_a_checkpoint_never_signs_past_what_the_store_holds(conf: AuditSettings) -> None:
    import threading

    c = with_(conf, checkpoint_seconds=3600)
    log = AuditLog.from_settings(c)
    log.start()
    store_shipper = log.shippers[0]
    gate = threading.Event()
    real_send = store_shipper.sink.send_lines  # type: ignore[attr-defined]

    def slow_send(docs, lines):  # the store is slow: nothing reaches it until the gate opens
        gate.wait(30)
        real_send(docs, lines)

    store_shipper.sink.send_lines = slow_send  # type: ignore[attr-defined]
    for f in [log.emit(make_event(f"r{i}")) for i in range(10)]:
        f.result(timeout=10)
    log._checkpoint()
    assert log.checkpoints is not None and log.checkpoints.last_seq == 0  # nothing signed yet
    check(c)  # a verifier meanwhile sees no "truncation"
    gate.set()
    assert log.flush(10)
    log._checkpoint()
    assert log.checkpoints.last_seq == 10
    log.close()
    check(c)
