"""Through a real gateway: a record read's access event holds no clear ID number, only the
masked path and a keyed pseudonym that links reads of the same record."""

from __future__ import annotations

import json

import httpx

from .conftest import RunningGateway


def test_record_reads_are_audited_without_the_id_number(gateway: RunningGateway) -> None:
    auth = {"Authorization": f"Bearer {gateway.token('demo-police')}"}
    page = httpx.get(f"{gateway.base}/api/population/persons", params={"size": 2}, headers=auth,
                     timeout=10).json()
    a, b = (p["id_number"] for p in page["items"][:2])
    rids = []
    for pid in (a, a, b):
        r = httpx.get(f"{gateway.base}/api/population/persons/{pid}", headers=auth, timeout=10)
        assert r.status_code == 200, r.text
        rids.append(r.headers["x-request-id"])
    # an attacker's probe with an ID number inside an injection payload
    probe = httpx.get(f"{gateway.base}/api/population/persons/{b}%20AND%201=1", headers=auth,
                      timeout=10)
    events = [gateway.audit_event(rid) for rid in [*rids, probe.headers["x-request-id"]]]
    text = json.dumps(events, ensure_ascii=False)
    assert a not in text and b not in text
    assert events[0]["url"]["path"] == f"/api/population/persons/{a[:6]}{'*' * 8}{a[-4:]}"
    subjects = [e["ztgw"]["data"]["subject"] for e in events[:3]]  # id_number names the person
    assert subjects[0] == subjects[1] != subjects[2] and subjects[0].startswith("hs3:")
    assert [e["ztgw"]["data"]["record"] for e in events[:3]] == subjects
