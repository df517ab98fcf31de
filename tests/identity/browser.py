"""A scripted browser for the provider's HTML pages: follows redirects on the provider, fills
the login form exactly as a person would (no JavaScript needed), stops at the application's
redirect URI.  Used by the end-to-end tests; talks HTTP to a real ``ztgw serve`` only."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

FIELD = re.compile(r'<input[^>]*name="(?P<name>[^"]+)"[^>]*value="(?P<value>[^"]*)"')


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


def hidden_fields(page: str) -> dict[str, str]:
    return {m["name"]: html.unescape(m["value"]) for m in FIELD.finditer(page)
            if 'type="hidden"' in m.group(0)}


@dataclass
class Page:
    status: int
    url: str
    text: str
    headers: httpx.Headers

    @property
    def fields(self) -> dict[str, str]:
        return hidden_fields(self.text)


@dataclass
class Callback:
    url: str

    @property
    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.url).query).items()}


@dataclass
class Browser:
    base: str
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base, timeout=30, follow_redirects=False)

    def close(self) -> None:
        self.client.close()

    def _follow(self, r: httpx.Response) -> Page | Callback:
        for _ in range(10):
            if r.status_code not in (301, 302, 303, 307, 308):
                return Page(r.status_code, str(r.url), r.text, r.headers)
            loc = urljoin(str(r.url), r.headers["location"])
            if not loc.startswith(self.base):
                return Callback(loc)  # the application's redirect URI: a real browser leaves here
            r = self.client.get(loc)
        raise AssertionError("redirect loop")

    def get(self, url: str, **params: Any) -> Page | Callback:
        full = url if url.startswith("http") else self.base + url
        if params:
            full += ("&" if "?" in full else "?") + urlencode(params)
        return self._follow(self.client.get(full))

    def submit(self, page: Page, action: str, **values: str) -> Page | Callback:
        data = {**page.fields, **values}
        return self._follow(self.client.post(action, data=data))

    def login(self, page: Page, username: str, password: str, otp: str | None = None
              ) -> Page | Callback:
        values = {"username": username, "password": password}
        if otp is not None:
            values["otp"] = otp
        return self.submit(page, "/login", **values)

    def authorize(self, client_id: str, redirect_uri: str, scope: str = "openid profile",
                  **extra: str) -> tuple[Page | Callback, dict[str, str]]:
        verifier, challenge = pkce_pair()
        params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                  "scope": scope, "state": secrets.token_urlsafe(12),
                  "nonce": secrets.token_urlsafe(12), "code_challenge": challenge,
                  "code_challenge_method": "S256", **extra}
        params = {k: v for k, v in params.items() if v is not None and v != ""}
        return self.get("/oauth2/authorize", **params), {**params, "code_verifier": verifier}

    def sign_in(self, client_id: str, redirect_uri: str, username: str, password: str,
                scope: str = "openid profile", **extra: str) -> tuple[Callback, dict[str, str]]:
        """The whole front-channel: authorize, log in if asked, return the callback."""
        result, req = self.authorize(client_id, redirect_uri, scope, **extra)
        if isinstance(result, Page):
            assert 'name="password"' in result.text, result.text[:500]
            result = self.login(result, username, password)
        assert isinstance(result, Callback), getattr(result, "text", "")[:800]
        return result, req


def exchange(base: str, req: dict[str, str], code: str, auth: tuple[str, str] | None = None
             ) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": req["redirect_uri"],
            "code_verifier": req["code_verifier"]}
    if auth is None:
        data["client_id"] = req["client_id"]
    return httpx.post(f"{base}/oauth2/token", data=data, auth=auth, timeout=30)
