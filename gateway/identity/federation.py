"""Federation: "log in with the provincial identity platform" — ztgw as an OpenID Connect
relying party of an upstream provider (authorization code + PKCE S256, state, nonce).

Flow: ``GET /login/federated/<name>`` → the upstream's authorization endpoint →
``GET /login/federated/<name>/callback`` → code exchange (client_secret_basic) → the upstream ID
token is verified (signature from the upstream JWKS, ``iss``, ``aud``, ``exp``, ``nonce``) →
an SSO session here → back to the pending authorization request.

The flow state (state, nonce, PKCE verifier, the pending request) travels in a short-lived
HttpOnly cookie sealed with SM4-GCM under a key derived from the server pepper.

Accounts are linked safely (never by e-mail, verified or not):

- an upstream subject already linked signs in as its local account;
- a person signed in here can link their upstream identity from the account page
  (``/login/federated/<name>?link=1``) — the link is made only with a live local session;
- otherwise a new local account ``<name>.<hash of sub>`` is created with the mapped claims
  (``name`` → display name, ``department`` → department); clearance and roles are never taken
  from the upstream: they stay "一般" and empty until an administrator grants more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import anyio
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import APIRouter, Request
from fastapi.responses import Response
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ztgw.crypto import sm4
from ztgw.crypto.errors import CryptoError
from ztgw.policies.domain import Classification

from .directory import UserRecord
from .sessions import SESSION_COOKIE

if TYPE_CHECKING:
    from .web import IdentityWeb

FLOW_COOKIE = "ztgw_fed"
FLOW_SECONDS = 600
HTTP_TIMEOUT = 10.0
METADATA_SECONDS = 300  # discovery and JWKS are re-read at most this often
ID_TOKEN_ALGS = ["ES256", "RS256", "PS256", "EdDSA"]
AMR_FED = ("fed",)
ACR_FED = "urn:ztgw:acr:fed"


class FederationError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str
    title: str
    issuer: str
    client_id: str
    client_secret: str
    scope: str = "openid profile"


def _get_json(url: str, data: bytes | None = None, headers: dict[str, str] | None = None
              ) -> dict[str, Any]:
    if not url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise FederationError("upstream URLs must be https (or loopback)")
    req = urllib.request.Request(url, data=data, headers=headers or {},  # noqa: S310
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:  # noqa: S310
            body = resp.read(1024 * 1024)
    except urllib.error.HTTPError as exc:
        raise FederationError(f"upstream answered {exc.code}") from None
    except OSError as exc:
        raise FederationError(f"upstream unreachable: {exc}") from None
    try:
        doc = json.loads(body)
    except ValueError:
        raise FederationError("upstream answered non-JSON") from None
    if not isinstance(doc, dict):
        raise FederationError("upstream answered a non-object")
    return doc


class Upstream:
    """One upstream OpenID provider: discovery, JWKS and the code exchange (blocking I/O)."""

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self._meta: tuple[float, dict[str, Any], KeySet] | None = None

    def metadata(self) -> tuple[dict[str, Any], KeySet]:
        if self._meta is None or self._meta[0] < time.monotonic():
            doc = _get_json(self.config.issuer.rstrip("/") + "/.well-known/openid-configuration")
            if doc.get("issuer") != self.config.issuer:
                raise FederationError("upstream discovery names another issuer")
            keys = KeySet.import_key_set(_get_json(str(doc["jwks_uri"])))
            self._meta = (time.monotonic() + METADATA_SECONDS, doc, keys)
        return self._meta[1], self._meta[2]

    def exchange(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        doc, _ = self.metadata()
        basic = base64.b64encode(f"{self.config.client_id}:{self.config.client_secret}".encode())
        body = urlencode({"grant_type": "authorization_code", "code": code,
                          "redirect_uri": redirect_uri, "code_verifier": verifier}).encode()
        return _get_json(str(doc["token_endpoint"]), body, {
            "Authorization": "Basic " + basic.decode(),
            "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})

    def verify_id_token(self, id_token: str, nonce: str) -> dict[str, Any]:
        _, keys = self.metadata()
        try:
            tok = jwt.decode(id_token, keys, algorithms=ID_TOKEN_ALGS)
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise FederationError(f"upstream ID token does not verify: {exc}") from None
        c = tok.claims
        aud = c.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        now = time.time()
        if c.get("iss") != self.config.issuer:
            raise FederationError("upstream ID token: wrong issuer")
        if self.config.client_id not in auds or (len(auds) > 1 and c.get("azp") != self.config.client_id):
            raise FederationError("upstream ID token: wrong audience")
        if not isinstance(c.get("exp"), int) or c["exp"] + 60 < now:
            raise FederationError("upstream ID token: expired")
        if not isinstance(c.get("nonce"), str) or not hmac.compare_digest(c["nonce"], nonce):
            raise FederationError("upstream ID token: nonce mismatch")
        if not isinstance(c.get("sub"), str) or not c["sub"] or len(c["sub"]) > 255:
            raise FederationError("upstream ID token: no subject")
        return dict(c)

    def userinfo(self, access_token: str, sub: str) -> dict[str, Any]:
        """Claims from the upstream's userinfo endpoint (many providers put profile claims
        only there); ignored unless its ``sub`` is the ID token's (OIDC Core §5.3.2)."""
        doc, _ = self.metadata()
        if not doc.get("userinfo_endpoint") or not access_token:
            return {}
        try:
            info = _get_json(str(doc["userinfo_endpoint"]), None,
                             {"Authorization": f"Bearer {access_token}", "Accept": "application/json"})
        except FederationError:
            return {}  # the ID token alone still identifies the person
        return info if info.get("sub") == sub else {}


class Federation:
    def __init__(self, web: IdentityWeb, config: UpstreamConfig, pepper: bytes) -> None:
        self.web, self.config = web, config
        self.upstream = Upstream(config)
        self._key = hmac.new(pepper, b"ztgw federation flow cookie", "sm3").digest()[:16]
        self.callback = f"{web.issuer}/login/federated/{config.name}/callback"

    # --- the sealed flow cookie --------------------------------------------------------------
    def seal(self, flow: dict[str, Any]) -> str:
        raw = sm4.gcm_encrypt(self._key, json.dumps(flow).encode(), self.config.name.encode())
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def unseal(self, value: str | None) -> dict[str, Any] | None:
        if not value or len(value) > 4096:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            flow = json.loads(sm4.gcm_decrypt(self._key, raw, self.config.name.encode()))
        except (ValueError, CryptoError):
            return None
        if not isinstance(flow, dict) or flow.get("exp", 0) < time.time():
            return None
        return flow

    # --- accounts ----------------------------------------------------------------------------
    def local_username(self, claims: dict[str, Any], link_to: str | None) -> str:
        store, directory = self.web.store, self.web.directory
        sub = claims["sub"]
        linked = store.linked_user(self.config.name, sub)
        if linked is not None and link_to is not None and linked != link_to:
            raise FederationError("this upstream identity is linked to another local account")
        if linked is not None:
            user = directory.get_user(linked)
            if user is None or not user.enabled:
                raise FederationError("the linked local account is disabled")
            return linked
        if link_to is not None:
            store.link_user(self.config.name, sub, link_to)
            return link_to
        username = f"{self.config.name}.{hashlib.sha256(sub.encode()).hexdigest()[:16]}"
        if directory.get_user(username) is None:
            directory.put_user(UserRecord(
                username=username,
                display_name=str(claims.get("name") or claims.get("preferred_username") or "")[:128]
                or None,
                password_hash=None,  # signs in only through the upstream
                department=str(claims["department"])[:128] if claims.get("department") else None,
                clearance=Classification.GENERAL, roles=(),
                attributes={"federated_from": self.config.name},
            ))
        store.link_user(self.config.name, sub, username)
        return username

    # --- routes ------------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter(include_in_schema=False)
        web, name = self.web, self.config.name

        @r.get(f"/login/federated/{name}")
        async def start(request: Request) -> Response:
            authz = urlencode(parse_qsl(request.query_params.get("authz", "")))
            link_to = None
            if request.query_params.get("link") == "1":
                session = web.sessions.current(request.cookies.get(SESSION_COOKIE))
                if session is None:
                    return web.redirect("/login")
                link_to = session.username
            try:
                doc, _ = await anyio.to_thread.run_sync(self.upstream.metadata)
            except FederationError as exc:
                return web.message(request, "无法连接上级身份认证平台", str(exc), status=502,
                                   code="upstream_unavailable")
            state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
            verifier = secrets.token_urlsafe(48)
            flow = {"state": state, "nonce": nonce, "verifier": verifier, "authz": authz,
                    "link_to": link_to, "exp": int(time.time()) + FLOW_SECONDS}
            target = str(doc["authorization_endpoint"]) + "?" + urlencode({
                "response_type": "code", "client_id": self.config.client_id,
                "redirect_uri": self.callback, "scope": self.config.scope,
                "state": state, "nonce": nonce,
                "code_challenge": create_s256_code_challenge(verifier),
                "code_challenge_method": "S256"})
            resp = web.redirect(target, 302)
            resp.set_cookie(FLOW_COOKIE, self.seal(flow), max_age=FLOW_SECONDS, httponly=True,
                            samesite="lax", secure=web.sessions.secure_cookies,
                            path=f"/login/federated/{name}")
            return resp

        @r.get(f"/login/federated/{name}/callback")
        async def callback(request: Request) -> Response:
            flow = self.unseal(request.cookies.get(FLOW_COOKIE))
            q = request.query_params
            ip = request.client.host if request.client else None
            if flow is None or not hmac.compare_digest(str(flow["state"]), q.get("state", "")):
                return web.message(request, "登录失败", "登录请求已过期或来源无法确认，请重新登录。",
                                   code="bad_state")
            if q.get("error") or not q.get("code"):
                return web.message(request, "登录失败", "上级身份认证平台未完成认证。", status=401,
                                   code=str(q.get("error") or "no_code")[:64])
            try:
                tokens = await anyio.to_thread.run_sync(
                    self.upstream.exchange, q["code"], self.callback, str(flow["verifier"]))
                claims = self.upstream.verify_id_token(str(tokens.get("id_token", "")),
                                                       str(flow["nonce"]))
                extra = await anyio.to_thread.run_sync(
                    self.upstream.userinfo, str(tokens.get("access_token", "")), claims["sub"])
                claims = {**extra, **claims}
                username = await anyio.to_thread.run_sync(self.local_username, claims,
                                                          flow.get("link_to"))
            except FederationError as exc:
                web.emit("login-failed", {"username": "(federated)", "source_ip": ip,
                                          "reason": f"federation:{exc}"[:200]})
                return web.message(request, "登录失败", "上级身份认证平台的登录结果无法验证。",
                                   status=401, code="federation_failed")
            web.emit("federated-login", {"username": username, "source_ip": ip,
                                         "reason": f"upstream:{name}"})
            resp = web.signed_in(request, username, ACR_FED, AMR_FED, str(flow.get("authz") or ""))
            resp.delete_cookie(FLOW_COOKIE, path=f"/login/federated/{name}")
            return resp

        return r
