"""ECS builders, the structlog pipeline into the trail, and the writer's sanitising of every
event (control characters escaped, secret-named fields fingerprinted)."""

from __future__ import annotations

from ztgw.audit.config import AuditSettings
from ztgw.audit.events import alert_event, fingerprint, iam_event, sanitize
from ztgw.audit.log import AuditLog
from ztgw.audit.pipeline import audit_logger
from ztgw.audit.query import AuditQuery
from ztgw.audit.store import AuditStore


def test_sanitize_escapes_and_fingerprints() -> None:
    doc = {"a\nb": "x\x1b[31m", "nested": [{"Authorization": "Bearer abc.def"}],
           "password": "hunter2", "n": 3, "ok": "plain"}
    out = sanitize(doc)
    assert out["a\\u000ab"] == "x\\u001b[31m"
    assert out["nested"][0]["Authorization"] == fingerprint("Bearer abc.def")
    assert out["password"].startswith("sm3:") and "hunter2" not in str(out)
    assert out["n"] == 3 and out["ok"] == "plain"
    assert fingerprint("same") == fingerprint("same") != fingerprint("other")


def test_iam_and_alert_builders_are_ecs() -> None:
    e = iam_event(action="access-grant-revoked", outcome="success", actor="owner\n1",
                  target="demo-analytics", grant={"id": "g1", "dataset": "population.persons"})
    assert e["event"]["category"] == ["iam", "configuration"] and e["event"]["type"] == ["deletion"]
    assert e["user"]["name"] == "owner\\u000a1" and e["user"]["target"]["name"] == "demo-analytics"
    assert iam_event(action="access-request-created", outcome="success",
                     actor="a")["event"]["type"] == ["creation"]
    a = alert_event(rule_id="r1", rule_name="burst of denies", severity=3, message="x",
                    source_ip="10.0.0.1", related_request_ids=["r"])
    assert a["event"]["kind"] == "alert" and a["data_stream"]["dataset"] == "ztgw.alert"


def test_structlog_events_land_in_the_trail_sanitised(conf: AuditSettings) -> None:
    log = AuditLog.from_settings(conf)
    log.start()
    audit = audit_logger(log, dataset="ztgw.iam")
    done = audit.info("grant approved", **{
        "event.action": "access-grant-approved", "user.name": "owner1",
        "user.target.name": "demo-analytics", "http.request.id": "rq-1",
        "ztgw.grant.client_secret": "s3cr3t", "url.path": "/x\r\ny"})
    done.result(timeout=10)
    alert = audit.warning("too many denies", **{"rule.id": "r1", "http.request.id": "rq-2"})
    alert.result(timeout=10)
    assert log.flush(10)
    log.close()
    store = AuditStore(conf.db_path)
    (doc,) = store.search(AuditQuery(request_id="rq-1"))
    assert doc["message"] == "grant approved" and doc["event"]["dataset"] == "ztgw.iam"
    assert doc["user"]["target"]["name"] == "demo-analytics"
    assert doc["ztgw"]["grant"]["client_secret"].startswith("sm3:")
    assert "s3cr3t" not in str(doc) and doc["url"]["path"] == "/x\\u000d\\u000ay"
    (doc2,) = store.search(AuditQuery(request_id="rq-2"))
    assert doc2["event"]["kind"] == "alert"
