"""One real request through every layer: token → data plane → decision → upstream → mask →
audit, against a ztgw process over HTTP (issue 2)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from ztgw.gateway.protection.identifiers import is_valid_id_number

from .conftest import RunningGateway

pytestmark = pytest.mark.e2e

PERSONS = "/api/population/persons"
MASKED_ID = re.compile(r"^\d{6}\*{8}\d{3}[\dX]$")
MASKED_MOBILE = re.compile(r"^1\d{2}\*{4}\d{4}$")


def _audit_for(gw: RunningGateway, request_id: str) -> dict:
    # 重要/核心 events are committed before the response; others within one batch delay
    for _ in range(50):
        found = gw.cli_json("audit", "search", "--request-id", request_id, "--json")
        if found["events"]:
            return found["events"][0]
        time.sleep(0.1)
    raise AssertionError(f"no audit event for request {request_id}")


def test_discovery_names_the_token_endpoint(gateway: RunningGateway) -> None:
    r = httpx.get(f"{gateway.base}/.well-known/openid-configuration")
    assert r.status_code == 200
    doc = r.json()
    assert doc["issuer"] == gateway.base
    assert doc["token_endpoint"] == f"{gateway.base}/oauth2/token"
    assert "client_credentials" in doc["grant_types_supported"]
    jwks = httpx.get(doc["jwks_uri"]).json()
    assert {k["alg"] for k in jwks["keys"]} >= {"ES256", "RS256"}
    assert all("d" not in k for k in jwks["keys"]), "private key material in the JWKS"


def test_masked_read_through_every_layer(gateway: RunningGateway) -> None:
    token = gateway.token("demo-analytics")
    r = httpx.get(f"{gateway.base}{PERSONS}", params={"page": 1, "size": 5},
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["page"] == 1 and body["size"] == 5 and body["total"] >= 10_000
    raw = httpx.get(f"{gateway.upstream}{PERSONS}", params={"page": 1, "size": 5}).json()
    for masked, clear in zip(body["items"], raw["items"], strict=True):
        assert MASKED_ID.match(masked["id_number"]), masked["id_number"]
        assert masked["id_number"][:6] == clear["id_number"][:6]
        assert masked["id_number"][-4:] == clear["id_number"][-4:]
        assert masked["mobile"] == clear["mobile"][:3] + "****" + clear["mobile"][-4:]
        assert masked["name"][0] == clear["name"][0] and set(masked["name"][1:]) == {"*"}
        assert masked["gender"] == clear["gender"]  # 一般 fields pass unchanged
        assert masked["district"] == clear["district"]

    event = _audit_for(gateway, r.headers["x-request-id"])
    assert event["event"]["dataset"] == "ztgw.access"
    assert event["ztgw"]["decision"]["effect"] == "allow"
    assert event["rule"]["id"] == "population-analyst-read-masked"
    assert event["ztgw"]["data"]["records"] == 5
    assert "id_number" in event["ztgw"]["data"]["masked_fields"]
    assert event["ztgw"]["oidc"]["client_id"] == "demo-analytics"
    assert token not in str(event), "the bearer token leaked into the audit event"


def test_csv_is_masked_too(gateway: RunningGateway) -> None:
    token = gateway.token("demo-analytics")
    r = httpx.get(f"{gateway.base}{PERSONS}", params={"size": 3},
                  headers={"Authorization": f"Bearer {token}", "Accept": "text/csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    header = lines[0].split(",")
    assert len(lines) == 4
    for line in lines[1:]:
        assert MASKED_ID.match(line.split(",")[header.index("id_number")])


def test_a_lighter_mask_for_the_police_client(gateway: RunningGateway) -> None:
    token = gateway.token("demo-police")
    r = httpx.get(f"{gateway.base}{PERSONS}", params={"size": 3},
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    for rec in r.json()["items"]:
        assert is_valid_id_number(rec["id_number"])  # clear for the police
        assert MASKED_MOBILE.match(rec["mobile"])


def test_detail_route(gateway: RunningGateway) -> None:
    raw = httpx.get(f"{gateway.upstream}{PERSONS}", params={"size": 1}).json()["items"][0]
    token = gateway.token("demo-analytics")
    r = httpx.get(f"{gateway.base}{PERSONS}/{raw['id_number']}",
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert MASKED_ID.match(r.json()["id_number"])


def test_denied_client_gets_403_json_and_an_audit_event(gateway: RunningGateway) -> None:
    token = gateway.token("demo-denied")
    r = httpx.get(f"{gateway.base}{PERSONS}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    body = r.json()
    assert body["error"] == "access_denied" and body["message"]
    assert body["request_id"] == r.headers["x-request-id"]
    assert "items" not in body
    event = _audit_for(gateway, body["request_id"])
    assert event["ztgw"]["decision"]["effect"] == "deny"
    assert event["rule"]["id"] == "deny-suspended"
    assert event["event"]["outcome"] == "failure"


def test_client_without_a_rule_is_denied_by_default(gateway: RunningGateway) -> None:
    token = gateway.token("demo-hrss")  # allowed contributions only
    r = httpx.get(f"{gateway.base}{PERSONS}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    ok = httpx.get(f"{gateway.base}/api/social-security/contributions", params={"size": 2},
                   headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    for rec in ok.json()["items"]:
        assert re.match(r"^62\d{4}\*+\d{4}$", rec["bank_card"]), rec["bank_card"]


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer not-a-jwt"},
    {"Authorization": "Basic ZGVtbzpkZW1v"},
    {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."},
])
def test_no_valid_token_gets_401(gateway: RunningGateway, headers: dict[str, str]) -> None:
    r = httpx.get(f"{gateway.base}{PERSONS}", headers=headers)
    assert r.status_code == 401
    assert r.json()["error"] in ("missing_token", "invalid_token", "invalid_request")
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "items" not in r.text


def test_token_in_query_string_is_refused(gateway: RunningGateway) -> None:
    token = gateway.token("demo-analytics")
    r = httpx.get(f"{gateway.base}{PERSONS}", params={"access_token": token})
    assert r.status_code == 401


def test_wrong_client_secret_is_refused(gateway: RunningGateway) -> None:
    r = httpx.post(f"{gateway.base}/oauth2/token", data={"grant_type": "client_credentials"},
                   auth=("demo-analytics", "wrong"))
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert "access_token" not in r.text


@pytest.mark.parametrize("path", [
    "/api/population/persons/..%2f..%2fhealthz",
    "/api/population/persons/%2e%2e/x",
    "/api/population/persons/%252e",
    "/api/population/persons;jsessionid=1",
    "/api/population//persons",
])
def test_non_canonical_paths_are_rejected(gateway: RunningGateway, path: str) -> None:
    token = gateway.token("demo-police")
    r = httpx.get(gateway.base + path, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_path"


def test_every_response_carries_a_request_id(gateway: RunningGateway) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/nope", "/api/nope", PERSONS):
        r = httpx.get(gateway.base + path)
        assert re.fullmatch(r"[0-9a-f]{24}", r.headers["x-request-id"]), path
    r = httpx.get(gateway.base + "/nope")
    assert r.status_code == 404 and r.json()["request_id"] == r.headers["x-request-id"]


def test_health_and_metrics(gateway: RunningGateway) -> None:
    assert httpx.get(f"{gateway.base}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.base}/readyz").json()
    assert ready["status"] == "ready" and all(ready["checks"].values())
    token = gateway.token("demo-analytics")
    httpx.get(f"{gateway.base}{PERSONS}", headers={"Authorization": f"Bearer {token}"})
    text = httpx.get(f"{gateway.base}/metrics").text
    assert re.search(r'ztgw_policy_decisions_total\{effect="allow",ruleset="demo"\} [1-9]', text)
    assert "ztgw_http_request_duration_seconds_bucket" in text


def test_demo_enterprise_data_is_watermarked_and_traceable(gateway: RunningGateway,
                                                           tmp_path: Path) -> None:
    token = gateway.token("demo-analytics")
    r = httpx.get(f"{gateway.base}/api/enterprise/companies", params={"size": 200},
                  headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    leak = tmp_path / "leak.json"
    leak.write_bytes(r.content)
    out = gateway.cli_json("watermark", "trace", str(leak), "--json")
    assert out["attributed"] and out["recipient"] == "demo-analytics"
    assert out["request_id"] == r.headers["x-request-id"]
