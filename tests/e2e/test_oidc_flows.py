"""OpenID Connect end to end, against a real ``ztgw serve`` over HTTP, driven by authlib's
relying-party client and by a scripted browser that fills the HTML login form.

Covers: discovery, authorization code + PKCE, ID token (signature from JWKS, nonce, at_hash,
acr/amr/auth_time), userinfo, refresh rotation with reuse detection, introspection,
revocation honoured by the data plane, and the negative cases (redirect-URI tricks, code
replay, PKCE downgrade, missing state/nonce, ID token as access token)."""

from __future__ import annotations

import subprocess
import time
import warnings
from typing import Any

import httpx
import pytest
from identity.browser import Browser, Callback, Page, exchange
from joserfc import jwt
from joserfc.jwk import KeySet

from .conftest import ZTGW, RunningGateway

pytestmark = pytest.mark.e2e

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import OAuth2Client

REDIRECT = "http://127.0.0.1:9/cb"
PORTAL_REDIRECT = "http://127.0.0.1:8090/callback"


def register(gw: RunningGateway, *args: str) -> dict[str, Any]:
    return gw.cli_json("clients", "add", *args, "--json")


def add_user(gw: RunningGateway, name: str, password: str, *attrs: str) -> None:
    out = subprocess.run([*ZTGW, "users", "add", name, "--password-stdin",
                          *[a for kv in attrs for a in ("--attr", kv)], "--json"],
                         env=gw.env, input=password + "\n", capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr


def demo_password(gw: RunningGateway, username: str) -> str:
    return next(u["password"] for u in gw.accounts["users"] if u["username"] == username)


def discovery(gw: RunningGateway) -> dict[str, Any]:
    return httpx.get(f"{gw.base}/.well-known/openid-configuration", timeout=10).json()


def jwks(gw: RunningGateway) -> KeySet:
    return KeySet.import_key_set(httpx.get(f"{gw.base}/oauth2/jwks", timeout=10).json())


def data_status(gw: RunningGateway, token: str) -> int:
    return httpx.get(f"{gw.base}/api/population/persons?size=1",
                     headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


def wait_refused(gw: RunningGateway, token: str, deadline_s: float = 10.0) -> int:
    """Poll until the data plane answers 401 (the bound is a safety net, not the figure)."""
    end = time.monotonic() + deadline_s
    status = data_status(gw, token)
    while status != 401 and time.monotonic() < end:
        time.sleep(0.1)
        status = data_status(gw, token)
    return status


@pytest.fixture(scope="module")
def rp(gateway: RunningGateway) -> dict[str, Any]:
    """A confidential web application using the code flow, ES256 ID tokens."""
    return register(gateway, "--name", "测试业务系统", "--redirect-uri", REDIRECT,
                    "--grant-type", "authorization_code", "--grant-type", "refresh_token",
                    "--scope", "openid profile offline_access data.read",
                    "--id-token-alg", "ES256", "--role", "population-analyst")


def test_discovery_lists_every_endpoint(gateway: RunningGateway) -> None:
    d = discovery(gateway)
    assert d["issuer"] == gateway.base
    for key in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                "introspection_endpoint", "revocation_endpoint", "end_session_endpoint"):
        assert d[key].startswith(gateway.base + "/"), key
    assert d["code_challenge_methods_supported"] == ["S256"]
    assert "plain" not in d["code_challenge_methods_supported"]
    assert d["response_types_supported"] == ["code"]
    assert "password" not in d["grant_types_supported"]
    assert {"ES256", "RS256"} <= set(d["id_token_signing_alg_values_supported"])


def test_authlib_client_full_code_flow(gateway: RunningGateway, rp: dict[str, Any]) -> None:
    d = discovery(gateway)
    client = OAuth2Client(rp["client_id"], rp["client_secret"], redirect_uri=REDIRECT,
                          scope="openid profile offline_access data.read",
                          code_challenge_method="S256", timeout=30)
    verifier = "v" * 20 + __import__("secrets").token_urlsafe(40)
    url, state = client.create_authorization_url(d["authorization_endpoint"], code_verifier=verifier,
                                                 nonce="nonce-authlib-1")
    browser = Browser(gateway.base)
    page = browser.get(url)
    assert isinstance(page, Page) and page.status == 200
    assert 'name="username"' in page.text and 'name="password"' in page.text
    assert "用户名" in page.text and "密码" in page.text and "<script" not in page.text
    cb = browser.login(page, "lina", demo_password(gateway, "lina"))
    assert isinstance(cb, Callback) and cb.url.startswith(REDIRECT + "?")
    assert cb.params["state"] == state and cb.params["iss"] == gateway.base
    token = client.fetch_token(d["token_endpoint"], authorization_response=cb.url,
                               code_verifier=verifier)
    assert token["token_type"].lower() == "bearer" and token["refresh_token"]

    # the ID token: signature from the published JWKS, audience, nonce, at_hash, acr/amr
    idt = jwt.decode(token["id_token"], jwks(gateway), algorithms=["ES256"])
    assert idt.header["alg"] == "ES256" and idt.header.get("typ") != "at+jwt"
    c = idt.claims
    assert c["iss"] == gateway.base and c["aud"] == rp["client_id"] and c["sub"] == "lina"
    assert c["nonce"] == "nonce-authlib-1" and c["at_hash"]
    assert c["acr"] == "urn:ztgw:acr:pwd" and c["amr"] == ["pwd"]
    assert abs(c["auth_time"] - time.time()) < 600 and c["sid"]
    assert c["name"] == "李娜" and c["department"] == "市大数据中心"

    info = client.get(d["userinfo_endpoint"]).json()
    assert info["sub"] == "lina" and info["preferred_username"] == "lina"

    # the access token works on the data plane as the user
    assert data_status(gateway, token["access_token"]) in (200, 403)

    # refresh rotation: a new refresh token each time
    old_refresh = token["refresh_token"]
    new = client.refresh_token(d["token_endpoint"], refresh_token=old_refresh)
    assert new["refresh_token"] != old_refresh and new["access_token"] != token["access_token"]

    # introspection (RFC 7662)
    intro = client.introspect_token(d["introspection_endpoint"], token=new["access_token"]).json()
    assert intro["active"] is True and intro["client_id"] == rp["client_id"]
    assert intro["username"] == "lina" and "openid" in intro["scope"].split()
    r_intro = client.introspect_token(d["introspection_endpoint"], token=new["refresh_token"],
                                      token_type_hint="refresh_token").json()
    assert r_intro["active"] is True
    assert client.introspect_token(d["introspection_endpoint"], token="garbage").json() == \
        {"active": False}

    # revocation (RFC 7009) of the access token: introspection says inactive at once,
    # the data plane refuses it (within its 0.5 s revocation poll)
    assert client.revoke_token(d["revocation_endpoint"], token=new["access_token"]).status_code == 200
    assert client.introspect_token(d["introspection_endpoint"],
                                   token=new["access_token"]).json()["active"] is False
    assert wait_refused(gateway, new["access_token"]) == 401
    # revoking the refresh token ends the family
    assert client.revoke_token(d["revocation_endpoint"], token=new["refresh_token"],
                               token_type_hint="refresh_token").status_code == 200
    r = httpx.post(d["token_endpoint"], auth=(rp["client_id"], rp["client_secret"]),
                   data={"grant_type": "refresh_token", "refresh_token": new["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    browser.close()


def _portal_tokens(gateway: RunningGateway, browser: Browser | None = None,
                   user: str = "lina") -> tuple[dict[str, Any], dict[str, str], Browser]:
    browser = browser or Browser(gateway.base)
    cb, req = browser.sign_in("demo-portal", PORTAL_REDIRECT, user, demo_password(gateway, user),
                              scope="openid profile offline_access data.read")
    r = exchange(gateway.base, req, cb.params["code"])
    assert r.status_code == 200, r.text
    return r.json(), req, browser


def test_public_client_gets_rs256_id_token(gateway: RunningGateway) -> None:
    tok, req, _ = _portal_tokens(gateway)
    idt = jwt.decode(tok["id_token"], jwks(gateway), algorithms=["RS256"])
    assert idt.claims["aud"] == "demo-portal" and idt.claims["nonce"] == req["nonce"]


def test_refresh_reuse_revokes_the_whole_family(gateway: RunningGateway) -> None:
    tok, _req, _ = _portal_tokens(gateway)
    base = gateway.base

    def refresh(rt: str) -> httpx.Response:
        return httpx.post(f"{base}/oauth2/token", data={
            "grant_type": "refresh_token", "refresh_token": rt, "client_id": "demo-portal"})

    first = refresh(tok["refresh_token"])
    assert first.status_code == 200
    second = first.json()
    # an attacker replays the old refresh token: refused, and the family dies
    replay = refresh(tok["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # ... including the legitimate newest refresh token and its access token
    assert refresh(second["refresh_token"]).status_code == 400
    assert wait_refused(gateway, second["access_token"]) == 401
    assert wait_refused(gateway, tok["access_token"]) == 401


def test_code_replay_is_refused_and_revokes_what_it_gave(gateway: RunningGateway) -> None:
    browser = Browser(gateway.base)
    cb, req = browser.sign_in("demo-portal", PORTAL_REDIRECT, "lina", demo_password(gateway, "lina"))
    r1 = exchange(gateway.base, req, cb.params["code"])
    assert r1.status_code == 200
    r2 = exchange(gateway.base, req, cb.params["code"])
    assert r2.status_code == 400 and r2.json()["error"] == "invalid_grant"
    assert wait_refused(gateway, r1.json()["access_token"]) == 401


def test_pkce_is_required_and_plain_refused(gateway: RunningGateway) -> None:
    browser = Browser(gateway.base)
    # log in once so the provider answers with redirects, not the login page
    browser.sign_in("demo-portal", PORTAL_REDIRECT, "lina", demo_password(gateway, "lina"))
    for extra in ({"code_challenge": "", "code_challenge_method": ""},
                  {"code_challenge_method": "plain", "code_challenge": "a" * 43},
                  {"code_challenge_method": ""}):
        res, _ = browser.authorize("demo-portal", PORTAL_REDIRECT, **extra)
        assert isinstance(res, Callback), extra
        assert res.params["error"] == "invalid_request", res.params
        assert "code" not in res.params
    # a wrong verifier at the token endpoint
    cb, req = browser.sign_in("demo-portal", PORTAL_REDIRECT, "lina", "unused")
    bad = {**req, "code_verifier": "x" * 50}
    r = exchange(gateway.base, bad, cb.params["code"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    # no verifier at all (a downgrade attempt)
    cb, req = browser.sign_in("demo-portal", PORTAL_REDIRECT, "lina", "unused")
    r = httpx.post(f"{gateway.base}/oauth2/token", data={
        "grant_type": "authorization_code", "code": cb.params["code"], "client_id": "demo-portal",
        "redirect_uri": PORTAL_REDIRECT})
    assert r.status_code == 400


@pytest.mark.parametrize("uri", [
    "http://127.0.0.1:8090/callback/../evil",
    "http://127.0.0.1:8090/callback?x=1",
    "http://127.0.0.1:8090/callbackx",
    "http://127.0.0.1:8091/callback",
    "http://127.0.0.1:8090/Callback",
    "http://127.0.0.1:8090/callback#frag",
    "http://evil.example/callback",
    "http://127.0.0.1:8090@evil.example/callback",
    "https://127.0.0.1:8090/callback",
])
def test_redirect_uri_must_match_exactly(gateway: RunningGateway, uri: str) -> None:
    browser = Browser(gateway.base)
    res, _ = browser.authorize("demo-portal", uri)
    assert isinstance(res, Page), f"redirected to {getattr(res, 'url', '')}"
    assert res.status == 400 and "回调地址" in res.text


def test_unknown_client_gets_an_error_page_not_a_redirect(gateway: RunningGateway) -> None:
    res, _ = Browser(gateway.base).authorize("no-such-client", PORTAL_REDIRECT)
    assert isinstance(res, Page) and res.status == 400


def test_missing_state_or_nonce_is_refused(gateway: RunningGateway) -> None:
    browser = Browser(gateway.base)
    browser.sign_in("demo-portal", PORTAL_REDIRECT, "lina", demo_password(gateway, "lina"))
    for missing in ("state", "nonce"):
        res, _ = browser.authorize("demo-portal", PORTAL_REDIRECT, **{missing: ""})
        assert isinstance(res, Callback)
        assert res.params.get("error") == "invalid_request" and "code" not in res.params


def test_id_token_is_not_an_access_token(gateway: RunningGateway) -> None:
    tok, _req, _ = _portal_tokens(gateway)
    assert data_status(gateway, tok["id_token"]) == 401
    r = httpx.get(f"{gateway.base}/oauth2/userinfo",
                  headers={"Authorization": f"Bearer {tok['id_token']}"})
    assert r.status_code == 401


def test_client_credentials_token_cannot_read_userinfo(gateway: RunningGateway) -> None:
    r = httpx.get(f"{gateway.base}/oauth2/userinfo",
                  headers={"Authorization": f"Bearer {gateway.token('demo-analytics')}"})
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"


def test_another_client_cannot_redeem_or_introspect(gateway: RunningGateway, rp: dict[str, Any]) -> None:
    browser = Browser(gateway.base)
    cb, req = browser.sign_in("demo-portal", PORTAL_REDIRECT, "lina", demo_password(gateway, "lina"))
    # the confidential client tries to redeem the portal's code
    stolen = {**req, "client_id": rp["client_id"]}
    r = exchange(gateway.base, stolen, cb.params["code"], auth=(rp["client_id"], rp["client_secret"]))
    assert r.status_code == 400
    tok, _req, _ = _portal_tokens(gateway)
    intro = httpx.post(f"{gateway.base}/oauth2/introspect", data={"token": tok["access_token"]},
                       auth=(rp["client_id"], rp["client_secret"])).json()
    assert intro == {"active": False}
    # and cannot revoke it either
    httpx.post(f"{gateway.base}/oauth2/revoke", data={"token": tok["access_token"]},
               auth=(rp["client_id"], rp["client_secret"]))
    assert data_status(gateway, tok["access_token"]) != 401


def test_government_client_gets_sm2_signed_id_token(gateway: RunningGateway) -> None:
    from ztgw.crypto import jose

    redirect = "http://127.0.0.1:9/gov/cb"
    gov = register(gateway, "--name", "政务协同办公系统", "--public", "--redirect-uri", redirect,
                   "--scope", "openid profile", "--id-token-alg", "SM2")
    browser = Browser(gateway.base)
    cb, req = browser.sign_in(gov["client_id"], redirect, "zhangwei",
                              demo_password(gateway, "zhangwei"))
    tok = exchange(gateway.base, req, cb.params["code"]).json()
    d = discovery(gateway)
    assert "SM2SM3" in d["id_token_signing_alg_values_supported"]
    # the standard JWKS stays readable by generic libraries; SM2 keys are in the full set
    assert all(k.get("crv") != "SM2" for k in httpx.get(d["jwks_uri"]).json()["keys"])
    keys = jose.KeySet.from_jwks(httpx.get(d["ztgw_sm2_jwks_uri"]).json())
    header, payload = jose.verify_jws(keys, tok["id_token"], algorithms=["SM2SM3"])
    import json as _json

    claims = _json.loads(payload)
    assert header["alg"] == "SM2SM3" and claims["aud"] == gov["client_id"]
    assert claims["sub"] == "zhangwei" and claims["nonce"] == req["nonce"]
    # at_hash with SM3, the signature algorithm's hash
    import base64
    import hashlib

    d16 = hashlib.new("sm3", tok["access_token"].encode()).digest()[:16]
    assert claims["at_hash"] == base64.urlsafe_b64encode(d16).rstrip(b"=").decode()
    # and a tampered one does not verify
    head, body, sig = tok["id_token"].split(".")
    forged = ".".join([head, body, sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")])
    from ztgw.crypto.errors import InvalidSignature, MalformedInput

    with pytest.raises((InvalidSignature, MalformedInput)):
        jose.verify_jws(keys, forged, algorithms=["SM2SM3"])
