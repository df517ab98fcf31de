"""``POST /oauth2/authorize`` (OIDC Core §3.1.2.1: an authorization server must support GET
and POST) against a real ``ztgw serve``: the same flow and the same refusals as GET."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from identity.browser import Browser, Callback, Page, exchange, pkce_pair

from .conftest import RunningGateway

pytestmark = pytest.mark.e2e
PORTAL = "demo-portal"
PORTAL_REDIRECT = "http://127.0.0.1:8090/callback"


def request_params(**extra: str) -> dict[str, str]:
    verifier, challenge = pkce_pair()
    params = {"response_type": "code", "client_id": PORTAL, "redirect_uri": PORTAL_REDIRECT,
              "scope": "openid profile", "state": "st-" + verifier[:8], "nonce": "n-" + verifier[8:16],
              "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    return {**{k: v for k, v in params.items() if v != ""}, "code_verifier": verifier}


def post_authorize(browser: Browser, params: dict[str, str]) -> Page | Callback:
    body = {k: v for k, v in params.items() if k != "code_verifier"}
    return browser._follow(browser.client.post("/oauth2/authorize", data=body))


def demo_user(gw: RunningGateway) -> dict[str, Any]:
    return next(u for u in gw.accounts["users"] if u["username"] == "lina")


def test_post_authorize_code_flow_and_sso(gateway: RunningGateway) -> None:
    user = demo_user(gateway)
    browser = Browser(gateway.base)
    req = request_params()
    page = post_authorize(browser, req)
    assert isinstance(page, Page) and 'name="password"' in page.text  # the same login page
    cb = browser.login(page, user["username"], user["password"])
    assert isinstance(cb, Callback), getattr(cb, "text", "")[:300]
    assert cb.params["state"] == req["state"] and cb.params["iss"] == gateway.base
    r = exchange(gateway.base, req, cb.params["code"])
    assert r.status_code == 200 and "id_token" in r.json()
    # signed in now: a second POST request is answered by the SSO session, no password
    req2 = request_params()
    cb2 = post_authorize(browser, req2)
    assert isinstance(cb2, Callback) and "code" in cb2.params
    assert cb2.params["state"] == req2["state"]


def test_post_authorize_refuses_what_get_refuses(gateway: RunningGateway) -> None:
    user = demo_user(gateway)
    browser = Browser(gateway.base)
    browser.sign_in(PORTAL, PORTAL_REDIRECT, user["username"], user["password"])
    # wrong redirect URI: an error page, never a redirect
    res = post_authorize(browser, request_params(redirect_uri="http://127.0.0.1:8090/callbackx"))
    assert isinstance(res, Page) and res.status == 400 and "回调地址" in res.text
    # PKCE downgrade, plain, missing state, missing nonce: an error back to the application
    for extra in ({"code_challenge": "", "code_challenge_method": ""},
                  {"code_challenge_method": "plain", "code_challenge": "a" * 43},
                  {"state": ""}, {"nonce": ""}):
        res = post_authorize(browser, request_params(**extra))
        assert isinstance(res, Callback), extra
        assert res.params.get("error") == "invalid_request" and "code" not in res.params, extra


def test_post_authorize_needs_one_unambiguous_form(gateway: RunningGateway) -> None:
    body = {k: v for k, v in request_params().items() if k != "code_verifier"}
    with httpx.Client(base_url=gateway.base, timeout=10) as c:
        # repeated parameter
        r = c.post("/oauth2/authorize", content=httpx.QueryParams(
            [*body.items(), ("redirect_uri", "http://evil.example/cb")]).__str__(),
            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 400 and "location" not in r.headers
        # parameters in the query and the body
        r = c.post("/oauth2/authorize?client_id=other", data=body)
        assert r.status_code == 400 and "location" not in r.headers
        # not a form
        r = c.post("/oauth2/authorize", json=body)
        assert r.status_code == 400 and "location" not in r.headers
