"""Identity and the audit trail, against a real ``ztgw serve``: every administrator's action on
users, clients, sessions and keys is an audit event (never with a secret), and a sign-in or a
token is refused — not released unrecorded — when the audit trail is unavailable."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from identity.browser import Browser, Page, exchange

from .conftest import ZTGW, RunningGateway, start_processes, stop_processes

pytestmark = pytest.mark.e2e
PORTAL = "demo-portal"
PORTAL_REDIRECT = "http://127.0.0.1:8090/callback"


def _admin_events(gw: RunningGateway, action: str, target: str, timeout: float = 10) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        out = gw.cli_json("audit", "search", "--json", "--since", "1h", "--limit", "1000")
        found = [e for e in out["events"] if e["event"].get("action") == action
                 and e.get("user", {}).get("target", {}).get("name") == target]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def test_admin_actions_are_audited_without_secrets(gateway: RunningGateway) -> None:
    name, password = "aud" + secrets.token_hex(4), "Pw-" + secrets.token_urlsafe(12)
    out = subprocess.run([*ZTGW, "users", "add", name, "--password-stdin", "--attr",
                          "display_name=审计测试", "--attr", "department=市公安局", "--json"],
                         env=gateway.env, input=password + "\n", capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    totp = gateway.cli_json("users", "totp-enrol", name, "--json")
    client = gateway.cli_json("clients", "add", "--name", "审计应用", "--json")
    assert gateway.cli("users", "disable", name).returncode == 0
    assert gateway.cli("users", "enable", name).returncode == 0

    for action, target in [("user-added", name), ("totp-enrolled", name),
                           ("client-added", client["client_id"]), ("user-disabled", name),
                           ("user-enabled", name)]:
        events = _admin_events(gateway, action, target)
        assert events, f"no {action} event for {target}"
        ev = events[0]
        assert ev["event"]["dataset"] == "ztgw.admin" and ev["event"]["outcome"] == "success"
        assert ev["user"]["name"].startswith("os:")  # who
        text = str(ev)
        for secret in (password, totp["secret"], client["client_secret"], "审计测试"):
            assert secret not in text, f"{action} event leaks a secret or personal data"


def test_admin_ending_sessions_is_audited(gateway: RunningGateway) -> None:
    name, password = "aue" + secrets.token_hex(4), "Pw-" + secrets.token_urlsafe(12)
    out = subprocess.run([*ZTGW, "users", "add", name, "--password-stdin"], env=gateway.env,
                         input=password + "\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    browser = Browser(gateway.base)
    browser.sign_in(PORTAL, PORTAL_REDIRECT, name, password)
    sid = gateway.cli_json("sessions", "list", "--user", name, "--json")["sessions"][0]["sid"]
    assert gateway.cli("sessions", "end", sid).returncode == 0
    events = _admin_events(gateway, "session-ended", name)
    assert events and events[0]["ztgw"]["identity"]["sid"] == sid
    assert events[0]["event"]["reason"] == "admin"


@pytest.fixture(scope="module")
def starved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """A gateway whose audit spool quota is the smallest allowed (1 MiB) and fills up."""
    gw, procs = start_processes(tmp_path_factory.mktemp("ztgw-starved"),
                                {"ZTGW_AUDIT_SPOOL_QUOTA_MB": "1"})
    try:
        yield gw
    finally:
        stop_processes(procs)


def _fill_spool(gw: RunningGateway, home: Path) -> None:
    """Fill the spool with failed-token events (each ~1 KiB; the current segment is never
    collected) until the trail reports itself unavailable."""
    junk = "x" * 120
    with httpx.Client(base_url=gw.base, timeout=10) as c:
        for i in range(20_000):
            c.post("/oauth2/token", data={"grant_type": "client_credentials", "scope": junk},
                   auth=(f"no-such-client-{junk}"[:120], "wrong"))
            if i % 100 == 99 and not c.get("/readyz").json()["checks"]["audit"]:
                return
    raise AssertionError(f"the audit spool under {home} never filled")


@pytest.mark.slow
def test_no_audit_no_token_no_login(starved: RunningGateway) -> None:
    gw = starved
    user = gw.accounts["users"][0]
    # while the trail works, tokens and sign-ins work
    assert gw.token("demo-hrss")
    signed_in = Browser(gw.base)
    cb, code_req = signed_in.sign_in(PORTAL, PORTAL_REDIRECT, user["username"], user["password"])
    browser = Browser(gw.base)
    res, _req = browser.authorize(PORTAL, PORTAL_REDIRECT)
    assert isinstance(res, Page)

    _fill_spool(gw, gw.home)
    r = httpx.post(f"{gw.base}/oauth2/token", data={"grant_type": "client_credentials"},
                   auth=("demo-hrss", gw.secret("demo-hrss")), timeout=10)
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "temporarily_unavailable" and "access_token" not in r.text
    assert r.headers["cache-control"] == "no-store"

    # a code obtained before is not redeemed (and stays unconsumed); an SSO session gets no code
    r = exchange(gw.base, code_req, cb.params["code"])
    assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable"
    again, _ = signed_in.authorize(PORTAL, PORTAL_REDIRECT)
    assert isinstance(again, Page) and again.status == 503 and "code=" not in again.text
    # the login form: right password, no session cookie, a clear page
    r2 = browser.client.post("/login", data={**res.fields, "username": user["username"],
                                             "password": user["password"]})
    assert r2.status_code == 503 and "ztgw_sso" not in r2.cookies
    assert "审计" in r2.text
