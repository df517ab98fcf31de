"""Posture scanners against things the test creates itself on loopback: a listening port, a
TLS server with its own certificate, password verifiers."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ztgw.crypto.passwords import PBKDF2_MIN_ITERATIONS, hash_password
from ztgw.scanners.errors import BadInput, TargetNotAllowed
from ztgw.scanners.passwords import Credential, scan_credentials
from ztgw.scanners.ports import parse_ports, scan_ports
from ztgw.scanners.targets import check_target
from ztgw.scanners.tls import scan_tls


@pytest.fixture
def listener() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    try:
        yield int(s.getsockname()[1])
    finally:
        s.close()


def test_port_scan_finds_the_open_port_only(listener: int) -> None:
    closed = listener + 1 if listener < 65535 else listener - 1
    report = scan_ports(["127.0.0.1"], [listener, closed])
    assert [f["port"] for f in report["open"]] == [listener]
    assert report["open"][0]["service"] == "unknown" and report["high_risk_open"] == 0


def test_default_port_list_is_the_high_risk_one() -> None:
    ports = parse_ports(None)
    for p in (21, 22, 23, 135, 139, 445, 1433, 1521, 2375, 3306, 3389, 5432, 5900, 6379, 9200,
              11211, 27017):
        assert p in ports
    assert parse_ports("22,8000-8002") == [22, 8000, 8001, 8002]
    for bad in ("0", "70000", "a-b", "10-5"):
        with pytest.raises(BadInput):
            parse_ports(bad)


def test_only_loopback_or_listed_hosts() -> None:
    assert check_target("127.0.0.1") == "127.0.0.1"
    assert check_target("localhost") in ("127.0.0.1", "::1")
    for host in ("192.0.2.10", "10.0.0.1", "8.8.8.8"):
        with pytest.raises(TargetNotAllowed):
            check_target(host)
        with pytest.raises(TargetNotAllowed):
            scan_ports([host], [80])
    assert check_target("192.0.2.10", ["192.0.2.10"]) == "192.0.2.10"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[int]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=10))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True) as s:
                    s.settimeout(1)
                    s.recv(1)
            except OSError:
                pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield int(srv.getsockname()[1])
    finally:
        stop.set()
        t.join(2)
        srv.close()


def test_tls_scan_reports_protocols_certificate_and_findings(tls_server: int, tmp_path: Path) -> None:
    report = scan_tls(f"https://localhost:{tls_server}/")
    assert report["protocols"]["TLSv1.3"]["negotiated"] is True
    assert report["protocols"]["TLSv1.0"]["negotiated"] is False
    cert = report["certificate"]
    assert cert["key"] == "EC-secp256r1" and cert["sm2"] is False and 8 <= cert["days_left"] <= 10
    words = " ".join(f["finding"] for f in report["findings"])
    assert "not trusted" in words and "expires in" in words
    trusted = scan_tls(f"https://localhost:{tls_server}/", ca=str(tmp_path / "c.pem"))
    assert trusted["trusted"] is True


def test_tls_scan_refuses_other_hosts() -> None:
    with pytest.raises(TargetNotAllowed):
        scan_tls("https://192.0.2.1/")
    with pytest.raises(BadInput):
        scan_tls("http://127.0.0.1/")


@pytest.mark.slow  # PBKDF2 at its minimum work factor is still ~0.5 s a guess here
def test_password_scan_finds_weak_and_reused_without_plaintext() -> None:
    h = lambda p: hash_password(p, iterations=PBKDF2_MIN_ITERATIONS)  # noqa: E731
    creds = [
        Credential("user", "alice", h("123456")),
        Credential("user", "bob", h("123456")),
        Credential("user", "carol", h("carol123")),
        Credential("user", "dave", h("correct horse battery staple 2026")),
        Credential("user", "erin", None),
        Credential("client", "svc", None, public=False),
        Credential("client", "portal", None, public=True),
    ]
    report = scan_credentials(creds, max_guesses=12)
    by = {(f["account"], f["finding"].split(" (")[0]) for f in report["findings"]}
    assert ("user:alice", "weak password") in by and ("user:bob", "weak password") in by
    assert ("user:carol", "weak password") in by
    assert not any(a == "user:dave" and "weak password" in f for a, f in by)
    assert any("same weak password" in f["finding"] for f in report["findings"])
    assert any(f["account"] == "client:svc" for f in report["findings"])
    assert not any(f["account"] == "client:portal" for f in report["findings"])
    text = str(report)
    assert "123456" not in text.replace("entry", "") and "carol123" not in text
    assert report["weak"] == 3


def test_coverage_finds_unowned_unclassified_uncovered_and_idle(tmp_path: Path) -> None:
    import time as _time

    from ztgw.audit.events import access_event
    from ztgw.audit.store import AuditStore
    from ztgw.policies.bundle import load_bundle
    from ztgw.scanners.coverage import DatasetInfo, scan_coverage

    bundle = load_bundle(Path(__file__).parents[2] / "policies" / "bundles" / "demo")
    db = tmp_path / "audit.db"
    store = AuditStore(db)
    now = _time.time_ns()
    ev = access_event(request_id="r", method="GET", path="/api/population/persons", query_keys=[],
                      status=200, outcome="success", source_ip="10.0.0.1", user_agent="x",
                      started_ns=now, ended_ns=now, subject=None, decision=None,
                      data={"dataset": "population.persons", "classification": "核心"})
    store.append([ev])
    store.close()
    report = scan_coverage([
        DatasetInfo("population.persons", "/api/population/persons", "公安局", "核心"),
        DatasetInfo("tax.records", "/api/tax/records", None, None),
    ], bundle, db, idle_days=30)
    found = {(f["dataset"], f["finding"].split(" (")[0].split(":")[0]) for f in report["findings"]}
    assert ("tax.records", "route without an allow policy") in found
    assert ("tax.records", "dataset without owner") in found
    assert ("tax.records", "dataset without classification") in found
    assert ("tax.records", "no traffic for 30 days") in found
    assert not any(d == "population.persons" for d, _ in found)
    rows = {r["dataset"]: r for r in report["datasets"]}
    assert rows["population.persons"]["requests"] == 1
    assert "population-officer-read" in rows["population.persons"]["allow_rules"]


def test_coverage_grants_expired_and_expiring() -> None:
    from ztgw.scanners.coverage import DatasetInfo, GrantInfo, scan_coverage

    now = 1_800_000_000.0
    grants = [
        GrantInfo("g-old", "grant", "population.persons", "client:demo-research", "active", now - 3 * 86400),
        GrantInfo("g-soon", "grant", "population.persons", "client:demo-research", "active", now + 2 * 86400),
        GrantInfo("g-later", "grant", "population.persons", "client:demo-x", "active", now + 60 * 86400),
        GrantInfo("g-revoked", "grant", "population.persons", "client:x", "revoked", now - 86400),
        GrantInfo("c-soon", "consent", "population.persons", "demo-fintech", "active", now + 3600),
    ]
    report = scan_coverage([DatasetInfo("population.persons", "/api/population/persons", "公安局", "核心")],
                           None, None, grants=grants, expiring_days=7, now=now)
    by_id = {f.get("grant") or f.get("consent"): f for f in report["findings"]
             if f.get("grant") or f.get("consent")}
    assert set(by_id) == {"g-old", "g-soon", "c-soon"}
    assert by_id["g-old"]["finding"].startswith("expired grant") and by_id["g-old"]["severity"] == "low"
    assert "expires within 7 days" in by_id["g-soon"]["finding"]
    assert by_id["c-soon"]["holder"] == "demo-fintech" and by_id["c-soon"]["severity"] == "info"
    assert report["grants_checked"] == 5
    none = scan_coverage([], None, None, now=now)
    assert none["grants_checked"] is None  # no grants provider: said, not silently "0 findings"


def test_coverage_sampled_personal_data_above_the_catalogue() -> None:
    from ztgw.scanners.coverage import DatasetInfo, scan_coverage

    d = DatasetInfo("population.persons", "/api/population/persons", "公安局", "核心",
                    fields={"id_number": "核心", "name": "重要", "mobile": "一般", "note": "一般",
                            "district": "一般"},
                    pi={"id_number": "sensitive", "name": "personal", "mobile": "personal"})
    sampled = [{"dataset": "population.persons", "fields": [
        {"field": "id_number", "type": "cn_id_number", "matches": 9, "rows": 9},  # flagged right
        {"field": "name", "type": "cn_name", "matches": 9, "rows": 9},  # flagged right
        {"field": "note", "type": "cn_mobile", "matches": 3, "rows": 3},  # not flagged
        {"field": "mobile", "type": "bank_card", "matches": 2, "rows": 2},  # flagged lower, 一般
        {"field": "extra.contact", "type": "email", "matches": 1, "rows": 1},  # not in the catalogue
    ]}, {"dataset": "unknown.ds", "fields": [{"field": "x", "type": "email", "matches": 1, "rows": 1}]}]
    report = scan_coverage([d], None, None, sampled=sampled)
    got = {(f["field"], f["severity"], f["finding"].split(" ")[0] + " " + f["finding"].split(" ")[1])
           for f in report["findings"] if f.get("field")}
    assert ("note", "high", "field not") in got
    assert ("mobile", "medium", "field flagged") in got
    assert ("mobile", "medium", "field classified") in got
    assert ("extra", "high", "field not") in got
    assert not any(f.get("field") in ("id_number", "name") for f in report["findings"])
    assert report["datasets"][0]["sampled_pi_fields"] == ["extra", "mobile", "note"]


def test_coverage_traffic_older_than_the_window_is_idle(tmp_path: Path) -> None:
    import time as _time
    from datetime import UTC, datetime, timedelta

    from ztgw.audit.events import access_event
    from ztgw.audit.store import AuditStore
    from ztgw.scanners.coverage import DatasetInfo, scan_coverage

    db = tmp_path / "audit.db"
    store = AuditStore(db)
    now = _time.time_ns()
    for days, ds in ((40, "tax.records"), (1, "population.persons")):
        ev = access_event(request_id="r", method="GET", path="/api/x", query_keys=[], status=200,
                          outcome="success", source_ip="10.0.0.1", user_agent="x", started_ns=now,
                          ended_ns=now, subject=None, decision=None,
                          data={"dataset": ds, "classification": "一般"})
        ev["@timestamp"] = (datetime.now(UTC) - timedelta(days=days)).isoformat().replace("+00:00", "Z")
        store.append([ev])
    store.close()
    report = scan_coverage([DatasetInfo("tax.records", "/api/tax/records", "税务局", "一般"),
                            DatasetInfo("population.persons", "/api/population/persons", "公安局", "核心")],
                           None, db, idle_days=30)
    idle = {f["dataset"] for f in report["findings"] if f["finding"].startswith("no traffic")}
    assert idle == {"tax.records"}
    assert {r["dataset"]: r["requests"] for r in report["datasets"]} == {"tax.records": 0,
                                                                        "population.persons": 1}
