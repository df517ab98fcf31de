"""``ztgw audit verify`` against each kind of tampering, done the way an attacker with write access
to the SQLite file would do it.  Each case must be found, with the first bad position named,
and the CLI must exit 1 (0 on an intact trail)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from ztgw.audit.chain import canonical, link, seal
from ztgw.audit.checkpoint import PUBLIC_KEY_FILE
from ztgw.audit.config import AuditSettings
from ztgw.audit.log import AuditLog
from ztgw.audit.store import AuditStore
from ztgw.audit.verify import Report, verify

from .conftest import make_event

N = 60  # events; checkpoints cover 1..25, 26..50, 51..60


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("home")
    conf = settings(home)
    log = AuditLog.from_settings(conf)
    log.start()
    for i in range(1, N + 1):
        log.emit(make_event(f"r{i}", user=f"user{i % 7}")).result(timeout=10)
        if i in (25, 50):
            assert log.flush(10)
            log._checkpoint()  # deterministic checkpoint boundaries for the test
    log.close()
    return home


def settings(home: Path) -> AuditSettings:
    return AuditSettings(db_path=home / "audit" / "audit.db", keys_dir=home / "keys",
                         witness_dirs=(home / "witness",), checkpoint_seconds=3600,
                         checkpoint_every=10_000)


@pytest.fixture
def home(pristine: Path, tmp_path: Path) -> Path:
    target = tmp_path / "home"
    shutil.copytree(pristine, target)
    return target


def run_verify(home: Path) -> Report:
    conf = settings(home)
    store = AuditStore(conf.db_path)
    try:
        return verify(store, conf.effective_checkpoint_path,
                      conf.effective_keys_dir / PUBLIC_KEY_FILE, list(conf.witness_dirs))
    finally:
        store.close()


def db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(home / "audit" / "audit.db", isolation_level=None)


def doc_at(conn: sqlite3.Connection, seq: int) -> dict:
    return orjson.loads(conn.execute("SELECT doc FROM events WHERE seq=?", (seq,)).fetchone()[0])


def put(conn: sqlite3.Connection, seq: int, doc: dict) -> None:
    conn.execute("UPDATE events SET doc=?, id=? WHERE seq=?",
                 (orjson.dumps(doc).decode(), doc["event"]["id"] + "", seq))


def kinds(report: Report) -> set[str]:
    return {f.kind for f in report.findings}


def test_intact_trail_verifies(pristine: Path) -> None:
    report = run_verify(pristine)
    assert report.ok, report.to_dict()
    assert report.events == N and report.checkpoints == 3 and report.checkpointed_to == N


def test_altered_event(home: Path) -> None:
    conn = db(home)
    doc = doc_at(conn, 30)
    doc["user"]["name"] = "someone-else"
    put(conn, 30, doc)
    report = run_verify(home)
    assert kinds(report) == {"altered"} and report.first_bad_position == 30


def test_deleted_event(home: Path) -> None:
    db(home).execute("DELETE FROM events WHERE seq=30")
    report = run_verify(home)
    assert "missing" in kinds(report) and report.first_bad_position == 30


def test_inserted_event_with_a_correct_local_link(home: Path) -> None:
    conn = db(home)
    # make room at 30 (renumber 30.. up by one), then insert a forged event that links to 29
    conn.execute("UPDATE events SET seq = -seq WHERE seq >= 30")
    conn.execute("UPDATE events SET seq = 1 - seq WHERE seq < 0")
    prev = bytes.fromhex(doc_at(conn, 29)["event"]["hash"])
    forged = make_event("forged", user="intruder")
    seal(forged, 30, prev)
    conn.execute("INSERT INTO events (seq, id, ts, doc) VALUES (30, ?, ?, ?)",
                 (forged["event"]["id"], forged["@timestamp"], orjson.dumps(forged).decode()))
    report = run_verify(home)
    assert not report.ok and report.first_bad_position == 30, report.to_dict()


def test_reordered_events(home: Path) -> None:
    conn = db(home)
    a, b = doc_at(conn, 30), doc_at(conn, 31)
    conn.execute("UPDATE events SET id = 'tmp' WHERE seq=30")
    put(conn, 31, a)
    put(conn, 30, b)
    report = run_verify(home)
    assert "moved" in kinds(report) and report.first_bad_position == 30


def test_truncated_tail_before_the_last_checkpoint(home: Path) -> None:
    db(home).execute("DELETE FROM events WHERE seq > 40")
    report = run_verify(home)
    assert kinds(report) == {"truncated"} and report.first_bad_position == 41


def test_chain_recomputed_after_a_change_is_caught_by_the_checkpoint(home: Path) -> None:
    conn = db(home)
    # an attacker who knows SM3 rewrites event 30 and re-chains everything after it
    prev = bytes.fromhex(doc_at(conn, 29)["event"]["hash"])
    for seq in range(30, N + 1):
        doc = doc_at(conn, seq)
        if seq == 30:
            doc["ztgw"]["data"]["records"] = 0
        prev = seal(doc, seq, prev)
        put(conn, seq, doc)
    report = run_verify(home)
    assert kinds(report) == {"rewritten"}
    assert report.first_bad_position == 26  # the signed range that holds the change: 26..50


def test_rollback_of_store_and_checkpoint_file_is_caught_by_the_witness(home: Path) -> None:
    db(home).execute("DELETE FROM events WHERE seq > 50")
    primary = home / "audit" / "checkpoints.jsonl"
    primary.write_bytes(b"".join(primary.read_bytes().splitlines(keepends=True)[:2]))
    report = run_verify(home)
    assert {"truncated", "checkpoint"} <= kinds(report)
    assert report.first_bad_position == 51


def test_forged_checkpoint_signature(home: Path) -> None:
    for path in (home / "audit" / "checkpoints.jsonl", home / "witness" / "checkpoints.jsonl"):
        lines = path.read_bytes().splitlines()
        cp = json.loads(lines[1])
        cp["head"] = "00" * 32
        lines[1] = json.dumps(cp).encode()
        path.write_bytes(b"\n".join(lines) + b"\n")
    report = run_verify(home)
    assert "checkpoint" in kinds(report) and report.first_bad_position == 26


def test_the_chain_value_is_recomputable_from_the_document(pristine: Path) -> None:
    doc = doc_at(db(pristine), 10)
    prev = bytes.fromhex(doc["ztgw"]["chain"]["prev_hash"])
    assert link(prev, 10, canonical(doc)).hex() == doc["event"]["hash"]


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "ZTGW_HOME": str(home),
           "ZTGW_AUDIT_WITNESS_DIRS": json.dumps([str(home / "witness")])}
    return subprocess.run([sys.executable, "-m", "ztgw.gateway", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_exit_codes(home: Path) -> None:
    ok = cli(home, "audit", "verify", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    db(home).execute("DELETE FROM events WHERE seq=7")
    bad = cli(home, "audit", "verify", "--json")
    assert bad.returncode == 1
    out = json.loads(bad.stdout)
    assert out["ok"] is False and out["first_bad_position"] == 7
    human = cli(home, "audit", "verify")
    assert human.returncode == 1 and "first bad position 7" in human.stdout


def test_deleted_witness_copy_is_reported(home: Path) -> None:
    (home / "witness" / "checkpoints.jsonl").unlink()
    report = run_verify(home)
    assert kinds(report) == {"checkpoint"} and not report.ok


def test_fresh_home_with_a_witness_verifies(tmp_path: Path) -> None:
    conf = settings(tmp_path)
    AuditStore(conf.db_path).close()
    log = AuditLog.from_settings(conf)
    log.start()
    log.close()  # no events, no checkpoint yet: nothing to hold against
    assert run_verify(tmp_path).ok
