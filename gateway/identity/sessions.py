"""SSO sessions and form protection.

The session cookie holds a 256-bit random secret; the database keeps only its SHA-256 and a
separate public ``sid`` (the ``sid`` claim, OIDC Front/Back-Channel Logout).  A new secret is
minted on every sign-in and any cookie the browser brought is ignored, so a planted cookie
cannot become a signed-in session (session fixation, OWASP ASVS 3.2.1).  Sessions end after
``idle_timeout`` without use or ``max_age`` after sign-in, whichever comes first.

CSRF: each browser gets a random ``ztgw_csrf`` cookie; forms carry HMAC-SM3(key, cookie) and a
POST is accepted only if both match (signed double-submit, OWASP CSRF cheat sheet).  Cookies
are HttpOnly and SameSite=Lax; Secure when the issuer is https.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from joserfc import jwt

from .directory import Directory
from .store import OAuthStore, SessionRecord, now
from .tokens import TokenIssuer

SESSION_COOKIE = "ztgw_sso"
CSRF_COOKIE = "ztgw_csrf"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
BACKCHANNEL_TIMEOUT = 3.0  # seconds per application; logout never waits on a slow one


@dataclass(frozen=True, slots=True)
class CookieSpec:
    secure: bool
    max_age: int


class CsrfGuard:
    def __init__(self, key: bytes) -> None:
        self._key = hmac.new(key, b"ztgw csrf key", "sm3").digest()

    @staticmethod
    def new_cookie() -> str:
        return secrets.token_urlsafe(32)

    def token_for(self, cookie: str) -> str:
        return hmac.new(self._key, cookie.encode("ascii", "replace"), "sm3").hexdigest()

    def check(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token or len(cookie) > 128 or len(token) > 128:
            return False
        return hmac.compare_digest(self.token_for(cookie), token)

    def sign(self, purpose: str, value: str, ttl: int) -> str:
        """A short-lived signed ticket (e.g. "password already checked, now ask for the OTP")."""
        exp = str(now() + ttl)
        mac = hmac.new(self._key, f"{purpose}|{value}|{exp}".encode(), "sm3").hexdigest()
        return f"{exp}.{mac}"

    def verify_signed(self, purpose: str, value: str, ticket: str | None) -> bool:
        if not ticket or "." not in ticket or len(ticket) > 200:
            return False
        exp, mac = ticket.split(".", 1)
        if not exp.isdigit() or int(exp) < now():
            return False
        good = hmac.new(self._key, f"{purpose}|{value}|{exp}".encode(), "sm3").hexdigest()
        return hmac.compare_digest(good, mac)


class SessionManager:
    def __init__(self, store: OAuthStore, directory: Directory, issuer: TokenIssuer,
                 idle_timeout: int, max_age: int, secure_cookies: bool,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.store, self.directory, self.issuer = store, directory, issuer
        self.idle_timeout, self.max_age = idle_timeout, max_age
        self.secure_cookies = secure_cookies
        self._on_event = on_event

    def _event(self, name: str, **fields: Any) -> None:
        if self._on_event is not None:
            self._on_event(name, fields)

    def create(self, username: str, acr: str, amr: tuple[str, ...], source_ip: str | None,
               user_agent: str | None) -> tuple[str, str]:
        """A fresh session; returns (cookie secret, public sid)."""
        secret, sid = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
        self.store.create_session(secret, sid, username, acr, amr, source_ip, user_agent)
        self._event("session-created", username=username, sid=sid, acr=acr)
        return secret, sid

    def is_live(self, s: SessionRecord) -> bool:
        t = now()
        return (not s.ended and t - s.last_seen <= self.idle_timeout
                and t - s.created_at <= self.max_age)

    def current(self, cookie: str | None) -> SessionRecord | None:
        if not cookie or len(cookie) > 128:
            return None
        s = self.store.session_by_secret(cookie)
        if s is None:
            return None
        if not self.is_live(s):
            if not s.ended:
                self.end(s.sid, reason="timeout")
            return None
        user = self.directory.get_user(s.username)
        if user is None or not user.enabled:
            self.end(s.sid, reason="user_disabled")
            return None
        self.store.touch_session(s.sid)
        return s

    def end(self, sid: str, reason: str, except_client: str | None = None,
            wait: bool = False) -> SessionRecord | None:
        """End a session: revoke its token families and tell its applications (back-channel)."""
        s = self.store.end_session(sid)
        if s is None:
            return None
        self.store.revoke_families_of_session(sid, f"logout:{reason}")
        self._event("session-ended", username=s.username, sid=sid, reason=reason)
        targets = []
        for client_id in s.clients:
            if client_id == except_client:
                continue
            uri, _post, _fp = self.store.client_logout(client_id)
            if uri:
                targets.append((client_id, uri))
        if targets and wait:  # the CLI: deliver before the process exits
            self._backchannel(s, targets)
        elif targets:
            threading.Thread(target=self._backchannel, args=(s, targets), daemon=True).start()
        return s

    def logout_token(self, s: SessionRecord, client_id: str) -> str:
        """OIDC Back-Channel Logout 1.0 §2.4."""
        client = self.directory.get_client(client_id)
        alg = client.id_token_alg if client else "ES256"
        key = self.issuer.keyring.signing_key(alg)
        t = int(time.time())
        # short, and never outliving an access token (key rotation; keys.KeyRing.rotate)
        claims = {"iss": self.issuer.issuer, "aud": client_id, "iat": t,
                  "exp": t + min(120, self.issuer.ttl),
                  "jti": secrets.token_urlsafe(16), "sub": s.username, "sid": s.sid,
                  "events": {BACKCHANNEL_EVENT: {}}}
        return jwt.encode({"alg": alg, "kid": key.kid, "typ": "logout+jwt"}, claims, key,
                          algorithms=[alg])

    def _backchannel(self, s: SessionRecord, targets: list[tuple[str, str]]) -> None:
        for client_id, uri in targets:
            if urlsplit(uri).scheme not in ("http", "https"):
                continue
            body = urlencode({"logout_token": self.logout_token(s, client_id)}).encode()
            req = urllib.request.Request(uri, data=body, method="POST", headers={  # noqa: S310
                "Content-Type": "application/x-www-form-urlencoded"})
            try:
                with urllib.request.urlopen(req, timeout=BACKCHANNEL_TIMEOUT) as resp:  # noqa: S310
                    ok = 200 <= resp.status < 300
            except OSError:
                ok = False
            self._event("backchannel-logout", client_id=client_id, sid=s.sid, delivered=ok)
