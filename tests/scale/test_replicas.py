"""Two ``ztgw serve`` replicas on different ports sharing one PostgreSQL and one redis-server
(both started here on loopback): what one replica decides, the other enforces.

- an access token revoked on A is refused by B within 1 s;
- an SSO session started on A is valid on B (the same host cookie, another port);
- a global rate limit holds across both (admitted ≤ burst + rate × elapsed);
- a daily record quota is shared;
- a policy bundle installed with A's CLI is enforced by B.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e.conftest import RunningGateway, stop_processes
from identity.browser import Browser, Callback, exchange

from scale.replicas import start_replicas
from scale.services import Postgres, Redis

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PERSONS = "/api/population/persons"
PORTAL_REDIRECT = "http://127.0.0.1:8090/callback"
RATE, BURST = 2.0, 6.0
LIMITS = json.dumps([{"client": "demo-hrss", "dataset": "*", "rate": RATE, "burst": BURST}])


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory, postgres: Postgres,
             redis_server: Redis) -> Iterator[list[RunningGateway]]:
    gws, procs = start_replicas(tmp_path_factory.mktemp("replicas"), postgres, redis_server,
                                extra_env={"ZTGW_RATE_LIMITS": LIMITS})
    try:
        yield gws
    finally:
        stop_processes(procs)


def _get(gw: RunningGateway, token: str, path: str = PERSONS, **params: str) -> httpx.Response:
    return httpx.get(f"{gw.base}{path}", params={"size": "1", **params},
                     headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_both_replicas_serve_and_report_shared_state(replicas: list[RunningGateway]) -> None:
    a, b = replicas
    for gw in replicas:
        ready = httpx.get(f"{gw.base}/readyz", timeout=10).json()
        assert ready["status"] == "ready" and ready["checks"]["shared_state"] is True
    token = a.token("demo-police")  # issued by A …
    assert _get(b, token).status_code == 200  # … accepted by B: same keys, same issuer
    # serving made no key of its own: watermarks, pseudonyms and the upstream identity header
    # are the same whichever replica answers
    keys_a = {p.name: p.read_bytes() for p in (a.home / "keys").iterdir()}
    keys_b = {p.name: p.read_bytes() for p in (b.home / "keys").iterdir()}
    assert keys_a == keys_b and {"protection.key", "upstream-identity.key"} <= set(keys_a)


def test_token_revoked_on_a_is_refused_by_b_within_one_second(replicas: list[RunningGateway]) -> None:
    a, b = replicas
    token = a.token("demo-police")
    assert _get(b, token).status_code == 200
    r = httpx.post(f"{a.base}/oauth2/revoke", data={"token": token},
                   auth=("demo-police", a.secret("demo-police")), timeout=10)
    assert r.status_code == 200
    revoked_at = time.monotonic()
    status = _get(b, token).status_code
    while status != 401 and time.monotonic() - revoked_at < 5:
        time.sleep(0.02)
        status = _get(b, token).status_code
    elapsed = time.monotonic() - revoked_at
    assert status == 401 and elapsed < 1.0, (status, elapsed)
    assert _get(a, token).status_code == 401


def test_sso_session_started_on_a_is_valid_on_b(replicas: list[RunningGateway]) -> None:
    a, b = replicas
    lina = next(u["password"] for u in a.accounts["users"] if u["username"] == "lina")
    on_a = Browser(a.base)
    cb, _ = on_a.sign_in("demo-portal", PORTAL_REDIRECT, "lina", lina)
    assert "code" in cb.params
    on_b = Browser(b.base)
    on_b.client.cookies = on_a.client.cookies  # a browser sends 127.0.0.1's cookie to any port
    result, req = on_b.authorize("demo-portal", PORTAL_REDIRECT)
    assert isinstance(result, Callback), "B asked for a login: the session is not shared"
    assert result.url.startswith(PORTAL_REDIRECT) and "code" in result.params
    tok = exchange(b.base, req, result.params["code"])  # and B redeems its own code
    assert tok.status_code == 200 and tok.json()["id_token"]
    # without the cookie, B asks for a login
    page, _ = Browser(b.base).authorize("demo-portal", PORTAL_REDIRECT)
    assert not isinstance(page, Callback) and 'name="password"' in page.text


def test_global_rate_limit_holds_across_both_replicas(replicas: list[RunningGateway]) -> None:
    token = replicas[0].token("demo-hrss")
    path = "/api/social-security/contributions"
    statuses = []
    start = time.monotonic()
    for i in range(40):  # alternate, as a load balancer would
        statuses.append(_get(replicas[i % 2], token, path).status_code)
    elapsed = time.monotonic() - start
    admitted = statuses.count(200)
    assert set(statuses) <= {200, 429}, statuses
    # one bucket for both: never more than the burst plus what the rate refilled meanwhile
    assert admitted <= BURST + RATE * elapsed + 1, (admitted, elapsed)
    assert statuses.count(429) > 0
    assert 200 in statuses[0::2] and 200 in statuses[1::2]  # both replicas did serve


def test_policy_installed_with_a_cli_is_enforced_by_b(replicas: list[RunningGateway],
                                                      tmp_path: Path) -> None:
    a, b = replicas
    token = a.token("demo-police")
    assert _get(b, token).status_code == 200
    active = Path(a.env["ZTGW_POLICY_BUNDLE"])
    original = tmp_path / "original"
    shutil.copytree(active, original)
    deny_all = tmp_path / "deny-all"
    deny_all.mkdir()
    (deny_all / "policy.yaml").write_text('bundle: deny-all\nversion: "99"\nrules: []\n',
                                          encoding="utf-8")
    out = a.cli_json("policy", "install", str(deny_all), "--skip-tests", "--json")
    assert out["bundle"] == "deny-all" and out["redis_notified"] is True
    try:
        deadline = time.monotonic() + 10
        status = _get(b, token).status_code
        while status != 403 and time.monotonic() < deadline:
            time.sleep(0.05)
            status = _get(b, token).status_code
        assert status == 403
        [worker] = b.cli_json("policy", "status", "--json")["workers"]
        assert worker["bundle"] == "deny-all" and worker["replica_watcher"] == "redis"
    finally:
        a.cli_json("policy", "install", str(original), "--skip-tests", "--json")
    deadline = time.monotonic() + 10
    while _get(b, token).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _get(b, token).status_code == 200


def _user_token(gw: RunningGateway, username: str, password: str) -> str:
    browser = Browser(gw.base)
    cb, req = browser.sign_in("demo-portal", PORTAL_REDIRECT, username, password,
                              scope="openid profile data.read")
    r = exchange(gw.base, req, cb.params["code"])
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def test_grant_revoked_on_a_is_enforced_by_b_within_one_second(replicas: list[RunningGateway]) -> None:
    a, b = replicas
    owner = _user_token(a, "zhouqiang", "Demo-Owner-2026!")  # 市场监管局: owns enterprise data
    app = a.token("demo-research")
    companies = "/api/enterprise/companies"
    assert _get(b, app, companies).status_code == 403  # no grant yet

    def admin(path: str, token: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(f"{a.base}/admin/v1{path}", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {token}"})

    req = admin("/access-requests", app, {"dataset": "enterprise.companies",
                                          "fields": ["uscc", "name"], "purpose": "跨副本测试",
                                          "days": 1})
    assert req.status_code == 201, req.text
    ok = admin(f"/access-requests/{req.json()['id']}/approve", owner, {"reason": "用途明确"})
    assert ok.status_code == 200, ok.text
    deadline = time.monotonic() + 10
    while _get(b, app, companies).status_code != 200:  # B learns the grant from the database
        assert time.monotonic() < deadline, "B never saw the grant"
        time.sleep(0.05)
    r = admin(f"/grants/{ok.json()['grant_id']}/revoke", owner, {"reason": "测试结束"})
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    revoked_at = time.monotonic()
    status = _get(b, app, companies).status_code
    while status != 403 and time.monotonic() - revoked_at < 5:
        time.sleep(0.02)
        status = _get(b, app, companies).status_code
    elapsed = time.monotonic() - revoked_at
    assert status == 403 and elapsed < 1.0, (status, elapsed)


def test_session_ended_with_a_cli_is_refused_by_b(replicas: list[RunningGateway]) -> None:
    """An administrator ends a user's sessions from A's machine: B no longer honours the SSO
    cookie, and the user's access tokens are refused by B within 1 s."""
    a, b = replicas
    password = next(u["password"] for u in a.accounts["users"] if u["username"] == "zhangwei")
    on_a = Browser(a.base)
    cb, req = on_a.sign_in("demo-portal", PORTAL_REDIRECT, "zhangwei", password,
                           scope="openid profile data.read")
    token = exchange(a.base, req, cb.params["code"]).json()["access_token"]
    assert _get(b, token).status_code == 200
    out = a.cli("sessions", "end", "--user", "zhangwei")
    assert out.returncode == 0, out.stderr
    ended_at = time.monotonic()
    status = _get(b, token).status_code
    while status != 401 and time.monotonic() - ended_at < 5:
        time.sleep(0.02)
        status = _get(b, token).status_code
    elapsed = time.monotonic() - ended_at
    assert status == 401 and elapsed < 1.0, (status, elapsed)
    on_b = Browser(b.base)
    on_b.client.cookies = on_a.client.cookies
    page, _ = on_b.authorize("demo-portal", PORTAL_REDIRECT)
    assert not isinstance(page, Callback), "B still honours an ended session"


QUOTA_BUNDLE = """\
bundle: quota-test
version: "1"
rules:
  - id: officer-read-with-daily-quota
    effect: allow
    subjects: [role:population-officer]
    datasets: [population.persons]
    actions: [read]
    obligations:
      - type: max_rows
        limit: 7
        per: day
"""


def _wait_bundle(gws: list[RunningGateway], name: str) -> None:
    deadline = time.monotonic() + 15
    for gw in gws:
        while True:
            workers = gw.cli_json("policy", "status", "--json")["workers"]
            if workers and all(w["bundle"] == name for w in workers):
                break
            assert time.monotonic() < deadline, f"{gw.base} never loaded {name}"
            time.sleep(0.1)


def test_daily_record_quota_is_shared_by_both_replicas(replicas: list[RunningGateway],
                                                       tmp_path: Path) -> None:
    a, b = replicas
    original = tmp_path / "original"
    shutil.copytree(Path(a.env["ZTGW_POLICY_BUNDLE"]), original)
    original_name = a.cli_json("policy", "status", "--json")["workers"][0]["bundle"]
    quota = tmp_path / "quota"
    quota.mkdir()
    (quota / "policy.yaml").write_text(QUOTA_BUNDLE, encoding="utf-8")
    a.cli_json("policy", "install", str(quota), "--skip-tests", "--json")
    try:
        _wait_bundle(replicas, "quota-test")
        token = a.token("demo-police")
        first = _get(a, token, size="5")
        assert first.status_code == 200 and len(first.json()["items"]) == 5
        second = _get(b, token, size="5")  # B knows A already returned 5 of the 7
        assert second.status_code == 200 and len(second.json()["items"]) == 2
        third = _get(a, token, size="5")
        assert third.status_code == 429 and third.json()["error"] == "quota_exceeded"
    finally:
        a.cli_json("policy", "install", str(original), "--skip-tests", "--json")
        _wait_bundle(replicas, original_name)
