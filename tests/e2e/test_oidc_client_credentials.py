"""The client-credentials grant (RFC 6749 §4.4) against a real ``ztgw serve``: the common
request is answered by the token endpoint's fast lane, every other shape by authlib — both must
give the same answers.  Scopes never exceed what the client is registered for (RFC 6749 §3.3)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from .conftest import RunningGateway

pytestmark = pytest.mark.e2e
REDIRECT = "http://127.0.0.1:9/cb"


@pytest.fixture(scope="module")
def svc(gateway: RunningGateway) -> dict[str, Any]:
    return dict(gateway.cli_json("clients", "add", "--name", "服务账号", "--scope",
                                 "data.read data.export", "--json"))


def claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "===")))


def post(gw: RunningGateway, data: dict[str, str], auth: Any = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{gw.base}/oauth2/token", data=data, auth=auth, headers=headers, timeout=10)


def test_scope_is_narrowed_to_the_registration(gateway: RunningGateway, svc: dict[str, Any]) -> None:
    auth = (svc["client_id"], svc["client_secret"])
    r = post(gateway, {"grant_type": "client_credentials", "scope": "data.read admin.all openid"}, auth)
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "data.read" and claims(r.json()["access_token"])["scope"] == "data.read"
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    # nothing asked: the registered scope
    r = post(gateway, {"grant_type": "client_credentials"}, auth)
    assert r.json()["scope"] == "data.read data.export"
    assert claims(r.json()["access_token"])["sub"] == f"client:{svc['client_id']}"


def test_basic_credentials_are_form_decoded(gateway: RunningGateway) -> None:
    """RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding."""
    svc = gateway.cli_json("clients", "add", "--name", "x", "--client-id", "svc.with-dot_1",
                           "--json")
    basic = base64.b64encode(f"{quote(svc['client_id'], safe='')}:"
                             f"{quote(svc['client_secret'], safe='')}".encode()).decode()
    r = post(gateway, {"grant_type": "client_credentials"},
             headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("case", ["wrong_secret", "unknown_client", "no_auth", "secret_in_body",
                                  "basic_without_colon", "not_basic"])
def test_bad_client_authentication_is_refused(gateway: RunningGateway, svc: dict[str, Any],
                                              case: str) -> None:
    data = {"grant_type": "client_credentials"}
    auth: Any = None
    headers: dict[str, str] = {}
    if case == "wrong_secret":
        auth = (svc["client_id"], svc["client_secret"][:-1] + "x")
    elif case == "unknown_client":
        auth = ("no-such-client", svc["client_secret"])
    elif case == "secret_in_body":  # client_secret_post is not enabled for this grant
        data |= {"client_id": svc["client_id"], "client_secret": svc["client_secret"]}
    elif case == "basic_without_colon":
        headers["Authorization"] = "Basic " + base64.b64encode(svc["client_id"].encode()).decode()
    elif case == "not_basic":
        headers["Authorization"] = f"Bearer {svc['client_secret']}"
    r = post(gateway, data, auth, headers)
    assert r.status_code in (400, 401), r.text
    assert r.json()["error"] == "invalid_client" and "access_token" not in r.text


def test_a_client_not_registered_for_the_grant_is_refused(gateway: RunningGateway) -> None:
    web = gateway.cli_json("clients", "add", "--name", "网页应用", "--redirect-uri", REDIRECT,
                           "--grant-type", "authorization_code", "--json")
    r = post(gateway, {"grant_type": "client_credentials"}, (web["client_id"], web["client_secret"]))
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"
    public = gateway.cli_json("clients", "add", "--name", "公开应用", "--public", "--redirect-uri",
                              REDIRECT, "--json")
    r = post(gateway, {"grant_type": "client_credentials", "client_id": public["client_id"]})
    assert r.status_code in (400, 401) and "access_token" not in r.text


def test_malformed_requests_get_json_errors(gateway: RunningGateway, svc: dict[str, Any]) -> None:
    auth = (svc["client_id"], svc["client_secret"])
    r = httpx.post(f"{gateway.base}/oauth2/token", content=b'{"grant_type":"client_credentials"}',
                   headers={"Content-Type": "application/json"}, auth=auth, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = httpx.post(f"{gateway.base}/oauth2/token",
                   content=b"grant_type=client_credentials&grant_type=client_credentials",
                   headers={"Content-Type": "application/x-www-form-urlencoded"}, auth=auth, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = post(gateway, {"grant_type": "client_credentials", "scope": "x" * 20_000}, auth)
    assert r.status_code == 400 and "access_token" not in r.text
    r = httpx.get(f"{gateway.base}/oauth2/token", timeout=10)
    assert r.status_code == 405


def _status_soon(gw: RunningGateway, auth: tuple[str, str], want: int, bound: float = 10.0) -> int:
    """Poll until the token endpoint answers ``want`` (the bound is a safety net, not a figure:
    the provider caches client records for 1 s)."""
    end = time.monotonic() + bound
    status = post(gw, {"grant_type": "client_credentials"}, auth).status_code
    while status != want and time.monotonic() < end:
        time.sleep(0.2)
        status = post(gw, {"grant_type": "client_credentials"}, auth).status_code
    return status


def test_client_disable_enable_and_secret_rotation(gateway: RunningGateway) -> None:
    c = gateway.cli_json("clients", "add", "--name", "轮换密钥", "--json")
    auth = (c["client_id"], c["client_secret"])
    assert _status_soon(gateway, auth, 200) == 200
    assert gateway.cli("clients", "disable", c["client_id"]).returncode == 0
    assert _status_soon(gateway, auth, 401) == 401
    assert gateway.cli("clients", "enable", c["client_id"]).returncode == 0
    assert _status_soon(gateway, auth, 200) == 200
    new = gateway.cli_json("clients", "rotate-secret", c["client_id"], "--json")
    assert new["client_secret"] != c["client_secret"]
    assert _status_soon(gateway, auth, 401) == 401
    assert _status_soon(gateway, (c["client_id"], new["client_secret"]), 200) == 200
    assert gateway.cli("clients", "rotate-secret", "no-such-client").returncode == 2
    # audited, without the secrets
    deadline = time.monotonic() + 10
    wanted = {"client-disabled", "client-enabled", "client-secret-rotated"}
    while True:
        events = gateway.cli_json("audit", "search", "--json", "--since", "1h", "--limit", "1000")
        mine = [e for e in events["events"]
                if e.get("user", {}).get("target", {}).get("name") == c["client_id"]]
        if wanted <= {e["event"]["action"] for e in mine} or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert wanted <= {e["event"]["action"] for e in mine}
    assert c["client_secret"] not in str(mine) and new["client_secret"] not in str(mine)
