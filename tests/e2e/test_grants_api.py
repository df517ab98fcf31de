"""Grants and consent through a real gateway over HTTP: the admin API's own authorisation (an
owner of dataset A cannot decide for dataset B), the two-approver rule for 核心 data, no
self-approval, narrowing never widens, expiry, revocation on the next request and on a second
gateway process sharing the database, consent that opens only the citizen's own records, the
SM2 receipt verified offline by the CLI, and CSRF on the console's forms."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from identity.browser import Browser, exchange

from ztgw.gateway.demo.realm import demo_citizen_record

from .conftest import ZTGW, RunningGateway, free_port, start_processes, stop_processes, wait_http

pytestmark = pytest.mark.e2e

PORTAL_REDIRECT = "http://127.0.0.1:8090/callback"
OWNER_PASSWORD = "Demo-Owner-2026!"  # demo realm password (README)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, str]]:
    """Gateway 1 (its own home) and gateway 2: another process, another home, the same database."""
    home1 = tmp_path_factory.mktemp("grants-gw1")
    gw, procs = start_processes(home1)
    try:
        home2 = tmp_path_factory.mktemp("grants-gw2")
        # the first gateway's database: its PostgreSQL database and Redis key prefix (gw.env
        # carries them with ZTGW_TEST_BACKEND=postgres), else its SQLite file
        shared_db = gw.env.get("ZTGW_DIRECTORY_URL") or f"sqlite:///{home1 / 'ztgw.db'}"
        env2 = {**gw.env, "ZTGW_HOME": str(home2), "ZTGW_DIRECTORY_URL": shared_db,
                "ZTGW_POLICY_BUNDLE": str(home1 / "policies" / "active"),
                "ZTGW_ISSUER": gw.base}  # one issuer for the replicas behind one name
        subprocess.run([*ZTGW, "init"], env=env2, check=True, capture_output=True, timeout=120)
        shutil.rmtree(home2 / "keys")
        shutil.copytree(home1 / "keys", home2 / "keys")  # the same token-signing keys
        port2 = free_port()
        procs.append(subprocess.Popen([*ZTGW, "serve", "--port", str(port2)], env=env2))
        base2 = f"http://127.0.0.1:{port2}"
        wait_http(f"{base2}/readyz", procs[-1], timeout=90)
        yield gw, base2
    finally:
        stop_processes(procs)


def user_token(gw: RunningGateway, username: str, password: str = OWNER_PASSWORD) -> str:
    browser = Browser(gw.base)
    try:
        cb, req = browser.sign_in("demo-portal", PORTAL_REDIRECT, username, password,
                                  scope="openid profile data.read")
        r = exchange(gw.base, req, cb.params["code"])
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])
    finally:
        browser.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def admin(gw: RunningGateway, method: str, path: str, token: str,
          body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.request(method, f"{gw.base}/admin/v1{path}", headers=bearer(token), json=body,
                         timeout=30)


def data(base: str, token: str, path: str) -> httpx.Response:
    return httpx.get(f"{base}{path}", headers=bearer(token), timeout=30)


def file_request(gw: RunningGateway, token: str, **over: Any) -> dict[str, Any]:
    body = {"dataset": "enterprise.companies", "fields": ["uscc", "name", "industry"],
            "purpose": "产业布局研究", "days": 30, **over}
    r = admin(gw, "POST", "/access-requests", token, body)
    assert r.status_code == 201, r.text
    return dict(r.json())


@pytest.fixture(scope="module")
def tokens(pair: tuple[RunningGateway, str]) -> dict[str, str]:
    gw, _ = pair
    out = {name: user_token(gw, name) for name in ("zhouqiang", "zhaolei", "sunli")}
    out["citizen"] = user_token(gw, "citizen", "Demo-Citizen-2026!")
    return out


def test_openapi_lists_the_grant_routes(pair: tuple[RunningGateway, str]) -> None:
    gw, _ = pair
    paths = httpx.get(f"{gw.base}/admin/v1/openapi.json", timeout=30).json()["paths"]
    for p in ("/access-requests", "/access-requests/{request_id}/approve", "/grants/{grant_id}/revoke",
              "/grants/{grant_id}/narrow", "/consent-requests", "/consents/{consent_id}/revoke"):
        assert p in paths


def test_request_approve_read_revoke_on_both_replicas(pair: tuple[RunningGateway, str],
                                                      tokens: dict[str, str]) -> None:
    gw, base2 = pair
    app = gw.token("demo-research")
    assert data(gw.base, app, "/api/enterprise/companies?size=5").status_code == 403
    req = file_request(gw, app)
    assert req["status"] == "pending" and req["required_approvals"] == 1
    assert data(gw.base, app, "/api/enterprise/companies?size=5").status_code == 403
    r = admin(gw, "POST", f"/access-requests/{req['id']}/approve", tokens["zhouqiang"],
              {"reason": "用途明确"})
    assert r.status_code == 200, r.text
    grant_id = r.json()["grant_id"]
    got = data(gw.base, app, "/api/enterprise/companies?size=5")
    assert got.status_code == 200, got.text
    items = got.json()["items"]
    assert items and all(set(i) == {"uscc", "name", "industry"} for i in items)
    # the second replica learns the grant from the shared database (bounded wait: a safety net)
    end = time.monotonic() + 15
    while data(base2, app, "/api/enterprise/companies?size=1").status_code != 200:
        assert time.monotonic() < end, "replica 2 never saw the grant"
        time.sleep(0.05)
    r = admin(gw, "POST", f"/grants/{grant_id}/revoke", tokens["zhouqiang"], {"reason": "项目结束"})
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    revoked_at = time.monotonic()
    # the very next request on the replica that took the change is refused
    assert data(gw.base, app, "/api/enterprise/companies?size=1").status_code == 403
    # replica 2 refuses after its next poll (docs/benchmarks.md measures the delay)
    status = data(base2, app, "/api/enterprise/companies?size=1").status_code
    while status != 403 and time.monotonic() - revoked_at < 15:
        time.sleep(0.02)
        status = data(base2, app, "/api/enterprise/companies?size=1").status_code
    assert status == 403


def test_owner_of_another_department_cannot_decide(pair: tuple[RunningGateway, str],
                                                   tokens: dict[str, str]) -> None:
    gw, _ = pair
    req = file_request(gw, gw.token("demo-research"), purpose="其他部门试图审批")
    for how in ("approve", "reject"):
        r = admin(gw, "POST", f"/access-requests/{req['id']}/{how}", tokens["zhaolei"],
                  {"reason": "越权"})
        assert r.status_code == 403 and r.json()["error"] == "access_denied", r.text
    # neither a citizen nor an application may decide
    for token in (tokens["citizen"], gw.token("demo-research"), gw.token("demo-police")):
        r = admin(gw, "POST", f"/access-requests/{req['id']}/approve", token, {"reason": "x"})
        assert r.status_code == 403
    # and the police approver does not even see the market's requests
    r = admin(gw, "GET", "/access-requests?status=pending", tokens["zhaolei"])
    assert r.status_code == 200 and req["id"] not in {x["id"] for x in r.json()["requests"]}
    r = admin(gw, "GET", f"/access-requests/{req['id']}", tokens["zhaolei"])
    assert r.status_code == 403
    assert admin(gw, "GET", f"/access-requests/{req['id']}", tokens["zhouqiang"]).status_code == 200
    assert httpx.post(f"{gw.base}/admin/v1/access-requests/{req['id']}/approve",
                      json={"reason": "x"}, timeout=30).status_code == 401


def test_core_data_needs_two_distinct_approvers(pair: tuple[RunningGateway, str],
                                                tokens: dict[str, str]) -> None:
    gw, _ = pair
    app = gw.token("demo-research")
    req = file_request(gw, app, dataset="population.persons", fields=["id_number", "district"],
                       purpose="人口普查核对")
    assert req["required_approvals"] == 2
    url = f"/access-requests/{req['id']}/approve"
    r = admin(gw, "POST", url, tokens["zhaolei"], {"reason": "同意"})
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert data(gw.base, app, "/api/population/persons?size=1").status_code == 403
    r = admin(gw, "POST", url, tokens["zhaolei"], {"reason": "再同意一次"})
    assert r.status_code == 409 and r.json()["error"] == "already_approved"
    r = admin(gw, "POST", url, tokens["sunli"], {"reason": "复核同意"})
    assert r.status_code == 200 and r.json()["status"] == "approved", r.text
    got = data(gw.base, app, "/api/population/persons?size=3")
    assert got.status_code == 200
    assert all(set(i) == {"id_number", "district"} for i in got.json()["items"])
    # approval time (request → decision) is exported
    metrics = httpx.get(f"{gw.base}/metrics", timeout=30).text
    assert 'ztgw_grant_approval_seconds_count{outcome="approved"}' in metrics


def test_requester_cannot_approve_their_own_request(pair: tuple[RunningGateway, str],
                                                    tokens: dict[str, str]) -> None:
    gw, _ = pair
    req = file_request(gw, tokens["zhouqiang"], purpose="本部门自用")
    r = admin(gw, "POST", f"/access-requests/{req['id']}/approve", tokens["zhouqiang"],
              {"reason": "自批"})
    assert r.status_code == 403 and r.json()["error"] == "self_approval"


def test_narrowing_never_widens_and_bites(pair: tuple[RunningGateway, str],
                                          tokens: dict[str, str]) -> None:
    gw, _ = pair
    app = gw.token("demo-research")
    req = file_request(gw, app, purpose="收窄测试")
    grant_id = admin(gw, "POST", f"/access-requests/{req['id']}/approve", tokens["zhouqiang"],
                     {"reason": "同意"}).json()["grant_id"]
    for body in ({"fields": ["uscc", "contact_phone"]}, {"rows_per_day": 10, "fields": ["bogus"]},
                 {"expires_at": int(time.time()) + 400 * 86400}):
        r = admin(gw, "POST", f"/grants/{grant_id}/narrow", tokens["zhouqiang"],
                  {"reason": "扩大", **body})
        assert r.status_code == 400 and r.json()["error"] == "would_widen", r.text
    r = admin(gw, "POST", f"/grants/{grant_id}/narrow", tokens["zhouqiang"],
              {"reason": "最小必要", "fields": ["uscc"]})
    assert r.status_code == 200 and r.json()["fields"] == ["uscc"]
    items = data(gw.base, app, "/api/enterprise/companies?size=3").json()["items"]
    assert items and all(set(i) == {"uscc"} for i in items)
    admin(gw, "POST", f"/grants/{grant_id}/revoke", tokens["zhouqiang"], {"reason": "清理"})


def test_a_grant_expires(pair: tuple[RunningGateway, str], tokens: dict[str, str]) -> None:
    gw, _ = pair
    app = gw.token("demo-research")
    req = file_request(gw, app, days=None, expires_at=int(time.time()) + 4, purpose="短期核验")
    r = admin(gw, "POST", f"/access-requests/{req['id']}/approve", tokens["zhouqiang"],
              {"reason": "同意"})
    assert r.status_code == 200
    if time.time() < req["expires_at"] - 0.5:  # a slow machine may already be past it
        assert data(gw.base, app, "/api/enterprise/companies?size=1").status_code == 200
    time.sleep(max(0.0, req["expires_at"] - time.time()) + 0.2)
    assert data(gw.base, app, "/api/enterprise/companies?size=1").status_code == 403


def test_consent_opens_only_the_citizens_own_records(pair: tuple[RunningGateway, str],
                                                     tokens: dict[str, str],
                                                     tmp_path: Path) -> None:
    gw, _ = pair
    me = demo_citizen_record()["id_number"]
    app = gw.token("demo-fintech")
    assert data(gw.base, app, f"/api/population/persons/{me}").status_code == 403
    r = admin(gw, "POST", "/consent-requests", app,
              {"dataset": "social-security.contributions", "purpose": "贷款资格核验", "days": 30,
               "citizen": "citizen"})
    assert r.status_code == 201, r.text
    creq = r.json()
    # another application cannot look at it, nor can it answer for the citizen
    assert admin(gw, "GET", f"/consent-requests/{creq['id']}", gw.token("demo-research")).status_code == 404
    assert admin(gw, "POST", f"/consent-requests/{creq['id']}/consent", app, {}).status_code == 403
    r = admin(gw, "POST", f"/consent-requests/{creq['id']}/consent", tokens["citizen"], {"days": 7})
    assert r.status_code == 201, r.text
    consent = r.json()
    got = data(gw.base, app, "/api/social-security/contributions?size=50")
    assert got.status_code == 200, got.text
    items = got.json()["items"]
    assert items and {i["id_number"] for i in items} == {me}
    # asking for someone else's records gets nothing of theirs
    other = data(gw.base, app, "/api/social-security/contributions?id_number=110101199003077777")
    assert other.status_code == 403
    # the receipt verifies offline with the home's public key; a tampered one does not
    receipt = tmp_path / "receipt.json"
    receipt.write_text(consent["receipt"], encoding="utf-8")
    ok = gw.cli("consent", "verify", str(receipt), "--json")
    assert ok.returncode == 0, ok.stderr
    assert '"consent_id"' in ok.stdout and me not in ok.stdout
    receipt.write_text(consent["receipt"].replace("贷款资格核验", "任意用途"), encoding="utf-8")
    assert gw.cli("consent", "verify", str(receipt)).returncode == 1
    r = admin(gw, "POST", f"/consents/{consent['id']}/revoke", tokens["citizen"])
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    assert data(gw.base, app, "/api/social-security/contributions?size=5").status_code == 403


def test_console_forms_refuse_a_missing_or_forged_csrf_token(pair: tuple[RunningGateway, str]) -> None:
    gw, _ = pair
    req = file_request(gw, gw.token("demo-research"), purpose="CSRF 测试")
    with httpx.Client(base_url=gw.base, timeout=30, follow_redirects=False) as anon:
        r = anon.get("/console/requests")
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    browser = Browser(gw.base)
    try:
        page = browser.get("/login")
        browser.login(page, "zhouqiang", OWNER_PASSWORD)  # type: ignore[arg-type]
        detail = browser.client.get(f"/console/requests/{req['id']}")
        assert detail.status_code == 200 and "同意" in detail.text
        assert "script" not in detail.headers["content-security-policy"]
        token = re.search(r'name="csrf_token" value="([^"]+)"', detail.text)
        assert token
        for form in ({"reason": "无令牌"}, {"reason": "伪造", "csrf_token": "0" * 64}):
            r = browser.client.post(f"/console/requests/{req['id']}/approve", data=form)
            assert r.status_code == 400
        assert "待审批" in browser.client.get(f"/console/requests/{req['id']}").text
        r = browser.client.post(f"/console/requests/{req['id']}/approve",
                                data={"reason": "同意", "csrf_token": token.group(1)})
        assert r.status_code == 200 and "已批准" in r.text
    finally:
        browser.close()


def test_a_user_files_a_request_in_the_console(pair: tuple[RunningGateway, str],
                                               tokens: dict[str, str]) -> None:
    gw, _ = pair
    browser = Browser(gw.base)
    try:
        page = browser.get("/login")
        browser.login(page, "lina", "Demo-Analyst-2026!")  # type: ignore[arg-type]
        home = browser.client.get("/console/")
        assert home.status_code == 303 and home.headers["location"] == "/console/mine"
        form = browser.client.get("/console/apply/enterprise.companies")
        assert form.status_code == 200
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        r = browser.client.post("/console/apply/enterprise.companies", data={
            "csrf_token": token.group(1), "fields": ["uscc", "industry"], "purpose": "行业分析报告",
            "days": "14", "row_field": "", "row_values": "", "rows_per_day": ""})
        assert r.status_code == 200 and "已提交申请" in r.text, r.text[-800:]
    finally:
        browser.close()
    pending = admin(gw, "GET", "/access-requests?status=pending", tokens["zhouqiang"]).json()
    mine = [x for x in pending["requests"] if x["requested_by"] == "user:lina"]
    assert mine and mine[0]["fields"] == ["industry", "uscc"] and mine[0]["purpose"] == "行业分析报告"
