"""The admin API over HTTP: OpenAPI document, bearer authentication, authorisation by the
policy engine itself (admin areas are resources), audit search, and an audit event per call."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .conftest import RunningGateway, start_processes, stop_processes

pytestmark = pytest.mark.e2e

BUNDLE = """
bundle: admin-test
version: "1"
rules:
  - id: secops-reads-audit
    effect: allow
    subjects: [role:security-auditor]
    datasets: [ztgw.admin.audit]
    actions: [read]
  - id: analytics-reads-persons
    effect: allow
    subjects: [client:demo-analytics]
    datasets: [population.persons]
    actions: [read]
"""


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, str]]:
    bundle = tmp_path_factory.mktemp("admin-bundle")
    (bundle / "policy.yaml").write_text(BUNDLE, encoding="utf-8")
    gw, procs = start_processes(tmp_path_factory.mktemp("admin"), {"ZTGW_POLICY_BUNDLE": str(bundle)})
    try:
        out = gw.cli_json("clients", "add", "--name", "安全运营中心", "--role", "security-auditor",
                          "--scope", "ztgw.audit.read", "--client-id", "secops", "--json")
        r = httpx.post(f"{gw.base}/oauth2/token", data={"grant_type": "client_credentials"},
                       auth=("secops", out["client_secret"]))
        assert r.status_code == 200, r.text
        yield gw, r.json()["access_token"]
    finally:
        stop_processes(procs)


def test_openapi_document(admin: tuple[RunningGateway, str]) -> None:
    gw, _ = admin
    doc = httpx.get(f"{gw.base}/admin/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert "/audit/events" in doc["paths"] and "/datasets" in doc["paths"]
    ops = {op["operationId"] for p in doc["paths"].values() for op in p.values()}
    assert "audit_events" in ops


def test_audit_search_for_the_auditor(admin: tuple[RunningGateway, str]) -> None:
    gw, token = admin
    data = httpx.get(f"{gw.base}/api/population/persons",
                     headers={"Authorization": f"Bearer {gw.token('demo-analytics')}"})
    assert data.status_code == 200
    rid = data.headers["x-request-id"]
    r = httpx.get(f"{gw.base}/admin/v1/audit/events", params={"request_id": rid},
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 1
    assert r.json()["events"][0]["ztgw"]["decision"]["effect"] == "allow"
    top = httpx.get(f"{gw.base}/admin/v1/audit/top", params={"field": "ztgw.oidc.client_id"},
                    headers={"Authorization": f"Bearer {token}"}).json()
    assert any(b["value"] == "demo-analytics" for b in top["buckets"])
    # the admin call itself is audited
    mine = httpx.get(f"{gw.base}/admin/v1/audit/events", params={"client": "secops", "limit": 5},
                     headers={"Authorization": f"Bearer {token}"}).json()
    assert any(e["event"]["action"] == "admin-audit-read" for e in mine["events"])


def test_bad_queries_are_400(admin: tuple[RunningGateway, str]) -> None:
    gw, token = admin
    h = {"Authorization": f"Bearer {token}"}
    for params in ({"since": "yesterday"}, {"limit": "0"}, {"decision": "maybe"}):
        r = httpx.get(f"{gw.base}/admin/v1/audit/events", params=params, headers=h)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["error"] in ("invalid_query", "invalid_request")
    r = httpx.get(f"{gw.base}/admin/v1/audit/top", params={"field": "doc"}, headers=h)
    assert r.status_code == 400


def test_function_level_authorisation(admin: tuple[RunningGateway, str]) -> None:
    gw, token = admin
    assert httpx.get(f"{gw.base}/admin/v1/audit/events").status_code == 401
    other = gw.token("demo-analytics")  # a data client is not an auditor
    r = httpx.get(f"{gw.base}/admin/v1/audit/events", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 403 and r.json()["error"] == "access_denied"
    # the auditor may search the trail but not read the directory (no rule grants it)
    r = httpx.get(f"{gw.base}/admin/v1/clients", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    who = httpx.get(f"{gw.base}/admin/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert who.json()["roles"] == ["security-auditor"]
