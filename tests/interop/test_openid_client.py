"""npm ``openid-client`` (a certified relying-party library) against a real ``ztgw serve``:
code + PKCE, ID token validation, userinfo, refresh rotation and reuse, SSO across two
applications, introspection, revocation, RP-initiated logout with back-channel logout."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from e2e.conftest import ZTGW, RunningGateway, free_port
from joserfc import jwt
from joserfc.jwk import KeySet

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HERE = Path(__file__).parent


class LogoutReceiver(BaseHTTPRequestHandler):
    received: list[str] = []  # noqa: RUF012

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append(parse_qs(body.decode())["logout_token"][0])
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


def register(gw: RunningGateway, *args: str) -> dict[str, Any]:
    out = subprocess.run([*ZTGW, "clients", "add", *args, "--json"], env=gw.env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_openid_client_code_pkce_sso_refresh_introspect_revoke_logout(
        interop_gateway: RunningGateway) -> None:
    gw = interop_gateway
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), LogoutReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        a_cb, b_cb = "http://127.0.0.1:9/a/cb", "http://127.0.0.1:9/b/cb"
        a = register(gw, "--name", "应用A", "--redirect-uri", a_cb, "--grant-type", "authorization_code",
                     "--grant-type", "refresh_token", "--scope", "openid profile offline_access",
                     "--id-token-alg", "ES256", "--post-logout-redirect-uri", "http://127.0.0.1:9/a/bye")
        b = register(gw, "--name", "应用B", "--public", "--redirect-uri", b_cb,
                     "--scope", "openid profile offline_access", "--id-token-alg", "RS256",
                     "--backchannel-logout-uri", f"http://127.0.0.1:{port}/backchannel")
        user = next(u for u in gw.accounts["users"] if u["username"] == "zhangwei")
        cfg = {
            "issuer": gw.base, "username": user["username"], "password": user["password"],
            "scope": "openid profile offline_access",
            "clients": [
                {"client_id": a["client_id"], "secret": a["client_secret"], "redirect_uri": a_cb,
                 "post_logout_redirect_uri": "http://127.0.0.1:9/a/bye"},
                {"client_id": b["client_id"], "redirect_uri": b_cb},
            ],
        }
        run = subprocess.run(["node", str(HERE / "rp_flow.mjs"), json.dumps(cfg)], cwd=HERE,
                             capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert out["ok"], out
        # A: password asked, ID token accepted by openid-client (signature, nonce, iss, aud …)
        assert out["a"]["asked_password"] is True and out["a"]["sub"] == "zhangwei"
        assert out["a"]["acr"] == "urn:ztgw:acr:pwd" and out["a"]["amr"] == ["pwd"]
        assert out["a"]["userinfo"]["sub"] == "zhangwei" and out["a"]["userinfo"]["name"] == "张伟"
        assert out["a"]["rotated"] and out["a"]["reuse_refused"] and out["a"]["family_dead"]
        # B: single sign-on — no second password, same SSO session
        assert out["b"]["asked_password"] is False and out["b"]["sid"] == out["a"]["sid"]
        assert out["b"]["introspection"] == {"active": True, "client_id": b["client_id"],
                                             "username": "zhangwei"}
        assert out["b"]["introspection_after_revoke"] is False
        r = httpx.get(f"{gw.base}/api/population/persons?size=1",
                      headers={"Authorization": f"Bearer {out['b']['access_token_revoked']}"})
        assert r.status_code == 401
        # logout: back to the registered URI with state, refresh tokens dead, password asked again
        assert out["logout"]["redirected_to"] == "http://127.0.0.1:9/a/bye?state=bye"
        assert out["logout"]["refresh_after"] == "invalid_grant"
        assert out["logout"]["asked_password_again"] is True
        # B was told over the back channel (OIDC Back-Channel Logout 1.0)
        deadline = time.monotonic() + 15
        while not LogoutReceiver.received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert LogoutReceiver.received, "no back-channel logout arrived"
        keys = KeySet.import_key_set(httpx.get(f"{gw.base}/oauth2/jwks").json())
        lt = jwt.decode(LogoutReceiver.received[0], keys, algorithms=["RS256"])
        assert lt.header["typ"] == "logout+jwt"
        assert lt.claims["aud"] == b["client_id"] and lt.claims["sub"] == "zhangwei"
        assert lt.claims["sid"] == out["a"]["sid"] and "nonce" not in lt.claims
        assert "http://schemas.openid.net/event/backchannel-logout" in lt.claims["events"]
    finally:
        server.shutdown()
