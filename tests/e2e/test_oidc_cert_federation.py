"""SM2 certificate login and federation to a third-party OpenID provider, end to end.

A ztgw of its own is started with a certificate-login CA and an upstream provider: the npm
``oidc-provider`` library on loopback (tests/interop/op_server.mjs) plays the provincial
identity platform.  Everything goes over HTTP; the browser is scripted (no JavaScript)."""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from identity.browser import Browser, Callback, Page, exchange, hidden_fields
from joserfc import jwt
from joserfc.jwk import KeySet

from ztgw.crypto import sm2, x509

from .conftest import ZTGW, RunningGateway, free_port, start_processes, stop_processes, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
INTEROP = Path(__file__).resolve().parent.parent / "interop"
PORTAL, PORTAL_REDIRECT = "demo-portal", "http://127.0.0.1:8090/callback"
SUBJECT = "C=CN,O=市公安局,CN=王警官"
UPSTREAM_ACCOUNTS = {
    "p-alice": {"name": "省平台用户甲", "preferred_username": "alice", "department": "省数据局",
                "email": "shared@example.gov.cn", "email_verified": False},
    "p-lina": {"name": "李娜（省平台）", "department": "市大数据中心"},
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("pki")
    ca_key = sm2.SM2PrivateKey.generate()
    ca = x509.create_ca(x509.Name.of(CN="政务数字证书测试CA", O="市大数据中心", C="CN"), ca_key)
    user_key = sm2.SM2PrivateKey.generate()
    user_cert = x509.issue_certificate(ca, ca_key, x509.Name.of(CN="王警官", O="市公安局", C="CN"),
                                       user_key.public_key())
    rogue_key = sm2.SM2PrivateKey.generate()
    rogue_ca = x509.create_ca(x509.Name.of(CN="政务数字证书测试CA", O="市大数据中心", C="CN"), rogue_key)
    rogue_cert = x509.issue_certificate(rogue_ca, rogue_key,
                                        x509.Name.of(CN="王警官", O="市公安局", C="CN"),
                                        user_key.public_key())
    (d / "ca.pem").write_bytes(ca.to_pem())
    return {"ca_path": d / "ca.pem", "key": user_key, "cert": user_cert, "rogue": rogue_cert}


@pytest.fixture(scope="module")
def fed_gateway(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Any]
                ) -> Iterator[tuple[RunningGateway, str]]:
    if shutil.which("node") is None or not (INTEROP / "node_modules" / "oidc-provider").is_dir():
        pytest.skip("node and tests/interop/node_modules are needed (scripts/ensure_node_deps.sh)")
    op_port = free_port()
    op_issuer = f"http://127.0.0.1:{op_port}"
    secret = secrets.token_urlsafe(24)
    gw, procs = start_processes(tmp_path_factory.mktemp("ztgw-fed"), {
        "ZTGW_CERT_LOGIN_CA": str(pki["ca_path"]),
        "ZTGW_FEDERATION_ISSUER": op_issuer, "ZTGW_FEDERATION_CLIENT_ID": "ztgw",
        "ZTGW_FEDERATION_CLIENT_SECRET": secret, "ZTGW_FEDERATION_NAME": "province",
        "ZTGW_FEDERATION_TITLE": "省统一身份认证平台", "ZTGW_FEDERATION_SCOPE": "openid profile gov",
    })
    cfg = {"port": op_port, "accounts": UPSTREAM_ACCOUNTS, "clients": [{
        "client_id": "ztgw", "client_secret": secret, "grant_types": ["authorization_code"],
        "response_types": ["code"], "redirect_uris": [f"{gw.base}/login/federated/province/callback"],
        "token_endpoint_auth_method": "client_secret_basic", "id_token_signed_response_alg": "ES256"}]}
    op = subprocess.Popen(["node", str(INTEROP / "op_server.mjs"), json.dumps(cfg)], cwd=INTEROP,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(op)  # type: ignore[arg-type]
    try:
        wait_http(f"{op_issuer}/.well-known/openid-configuration", op)  # type: ignore[arg-type]
        yield gw, op_issuer
    finally:
        stop_processes(procs)


# --- certificate login -------------------------------------------------------------------------
def cert_form(browser: Browser, page_path: str) -> Page:
    page = browser.get(page_path)
    assert isinstance(page, Page) and page.status == 200 and "数字证书" in page.text
    return page


def sign_in_with_certificate(gw: RunningGateway, browser: Browser, cert: x509.Certificate,
                             key: sm2.SM2PrivateKey, tamper: bool = False,
                             reuse: dict[str, str] | None = None) -> tuple[Page | Callback, dict[str, str],
                                                                          dict[str, str]]:
    res, req = browser.authorize(PORTAL, PORTAL_REDIRECT)
    assert isinstance(res, Page) and "/login/certificate" in res.text
    authz = res.fields["authz"]
    page = cert_form(browser, "/login/certificate?" + httpx.QueryParams({"authz": authz}).__str__())
    fields = page.fields
    challenge = fields["challenge"] + ("x" if tamper else "")
    sig = base64.b64encode(key.sign(challenge.encode("utf-8"))).decode()
    values = {"certificate": cert.to_pem().decode(), "signature": sig}
    if reuse:
        values.update(reuse)
    return browser.submit(page, "/login/certificate", **values), req, {**fields, **values}


def test_sm2_certificate_login(fed_gateway: tuple[RunningGateway, str], pki: dict[str, Any]) -> None:
    gw, _ = fed_gateway
    out = subprocess.run([*ZTGW, "users", "add", "wangjg", "--no-password", "--attr",
                          f"cert_subject={SUBJECT}", "--attr", "department=市公安局", "--json"],
                         env=gw.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    browser = Browser(gw.base)
    res, req, used = sign_in_with_certificate(gw, browser, pki["cert"], pki["key"])
    assert isinstance(res, Callback), getattr(res, "text", "")[:400]
    tok = exchange(gw.base, req, res.params["code"]).json()
    keys = KeySet.import_key_set(httpx.get(f"{gw.base}/oauth2/jwks").json())
    claims = jwt.decode(tok["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["sub"] == "wangjg" and claims["acr"] == "urn:ztgw:acr:cert"
    assert claims["amr"] == ["hwk"]
    # the same signed challenge cannot be replayed, even from another browser
    thief = Browser(gw.base)
    page = cert_form(thief, "/login/certificate")
    replay = thief.submit(page, "/login/certificate", challenge=used["challenge"],
                          ticket=used["ticket"], certificate=used["certificate"],
                          signature=used["signature"])
    assert isinstance(replay, Page) and replay.status == 401 and "ztgw_sso" not in thief.client.cookies


def test_certificate_login_refuses_bad_inputs(fed_gateway: tuple[RunningGateway, str],
                                              pki: dict[str, Any]) -> None:
    gw, _ = fed_gateway
    # a signature over something else
    res, _, _ = sign_in_with_certificate(gw, Browser(gw.base), pki["cert"], pki["key"], tamper=True)
    assert isinstance(res, Page) and res.status == 401
    # the same subject and key, but issued by a CA we do not trust
    res, _, _ = sign_in_with_certificate(gw, Browser(gw.base), pki["rogue"], pki["key"])
    assert isinstance(res, Page) and res.status == 401
    # a key that does not match the certificate
    res, _, _ = sign_in_with_certificate(gw, Browser(gw.base), pki["cert"], sm2.SM2PrivateKey.generate())
    assert isinstance(res, Page) and res.status == 401
    # garbage
    b = Browser(gw.base)
    page = cert_form(b, "/login/certificate")
    res2 = b.submit(page, "/login/certificate", certificate="-----BEGIN CERTIFICATE-----\nAAAA\n"
                    "-----END CERTIFICATE-----", signature="!!notbase64")
    assert isinstance(res2, Page) and res2.status == 401


# --- federation ---------------------------------------------------------------------------------
def federated_sign_in(gw: RunningGateway, op_issuer: str, account: str, browser: Browser | None = None,
                      start: str | None = None) -> tuple[httpx.Client, str, dict[str, str]]:
    """Drive the whole front channel across both providers; return the final URL."""
    browser = browser or Browser(gw.base)
    c = browser.client
    req: dict[str, str] = {}
    if start is None:
        res, req = browser.authorize(PORTAL, PORTAL_REDIRECT)
        assert isinstance(res, Page) and "/login/federated/province" in res.text
        link = re.search(r'href="(/login/federated/province\?[^"]+)"', res.text)
        assert link is not None
        start = link.group(1).replace("&amp;", "&")
    url = urljoin(gw.base, start)
    r = c.get(url)
    for _ in range(20):
        if r.status_code in (301, 302, 303, 307, 308):
            url = urljoin(url, r.headers["location"])
            if url.startswith(PORTAL_REDIRECT) or url.startswith("http://127.0.0.1:9/"):
                return c, url, req
            r = c.get(url)
            continue
        if r.status_code == 200 and 'name="login"' in r.text:  # the upstream's login form
            action = re.search(r'action="([^"]+)"', r.text)
            assert action is not None
            url = urljoin(url, action.group(1))
            r = c.post(url, data={"prompt": "login", "login": account, "password": "any"})
            continue
        if r.status_code == 200 and 'name="prompt" value="consent"' in r.text:
            action = re.search(r'action="([^"]+)"', r.text)
            assert action is not None
            url = urljoin(url, action.group(1))
            r = c.post(url, data={"prompt": "consent"})
            continue
        return c, f"PAGE {r.status_code} {url} {r.text}", req
    raise AssertionError("too many steps")


def test_federated_login_provisions_and_links_by_subject(fed_gateway: tuple[RunningGateway, str]) -> None:
    gw, op = fed_gateway
    _, final, req = federated_sign_in(gw, op, "p-alice")
    assert final.startswith(PORTAL_REDIRECT + "?"), final
    code = dict(httpx.URL(final).params)["code"]
    tok = exchange(gw.base, req, code).json()
    keys = KeySet.import_key_set(httpx.get(f"{gw.base}/oauth2/jwks").json())
    claims = jwt.decode(tok["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["sub"].startswith("province.") and claims["acr"] == "urn:ztgw:acr:fed"
    info = httpx.get(f"{gw.base}/oauth2/userinfo",
                     headers={"Authorization": f"Bearer {tok['access_token']}"}).json()
    assert info["department"] == "省数据局" and info["name"] == "省平台用户甲"
    assert info["clearance"] == "一般"  # never taken from the upstream
    # a second sign-in (new browser) lands on the same local account
    _, final2, req2 = federated_sign_in(gw, op, "p-alice")
    tok2 = exchange(gw.base, req2, dict(httpx.URL(final2).params)["code"]).json()
    assert jwt.decode(tok2["id_token"], keys, algorithms=["RS256"]).claims["sub"] == claims["sub"]


def test_no_linking_by_email(fed_gateway: tuple[RunningGateway, str]) -> None:
    gw, op = fed_gateway
    out = subprocess.run([*ZTGW, "users", "add", "shared-mail", "--password-stdin", "--attr",
                          "email=shared@example.gov.cn", "--json"], env=gw.env,
                         input="Blue-Lantern-Quay-77\n", capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    _, final, req = federated_sign_in(gw, op, "p-alice")
    tok = exchange(gw.base, req, dict(httpx.URL(final).params)["code"]).json()
    info = httpx.get(f"{gw.base}/oauth2/userinfo",
                     headers={"Authorization": f"Bearer {tok['access_token']}"}).json()
    assert info["sub"] != "shared-mail"


def test_signed_in_user_links_upstream_identity(fed_gateway: tuple[RunningGateway, str]) -> None:
    gw, op = fed_gateway
    lina = next(u for u in gw.accounts["users"] if u["username"] == "lina")
    browser = Browser(gw.base)
    browser.sign_in(PORTAL, PORTAL_REDIRECT, "lina", lina["password"])
    _c, final, _ = federated_sign_in(gw, op, "p-lina", browser=browser,
                                    start="/login/federated/province?link=1")
    assert final.startswith("PAGE 200") and "我的账号：lina" in final, final[:400]
    # from now on the upstream identity signs in as lina, in a fresh browser
    _, final2, req2 = federated_sign_in(gw, op, "p-lina")
    tok = exchange(gw.base, req2, dict(httpx.URL(final2).params)["code"]).json()
    info = httpx.get(f"{gw.base}/oauth2/userinfo",
                     headers={"Authorization": f"Bearer {tok['access_token']}"}).json()
    assert info["sub"] == "lina"


def test_callback_with_forged_state_is_refused(fed_gateway: tuple[RunningGateway, str]) -> None:
    gw, _ = fed_gateway
    r = httpx.get(f"{gw.base}/login/federated/province/callback",
                  params={"code": "x", "state": "forged"})
    assert r.status_code == 400 and "ztgw_sso" not in r.cookies
    assert hidden_fields(r.text) == {}
