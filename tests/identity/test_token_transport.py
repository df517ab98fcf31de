"""The token endpoint judges transport security by the configured issuer, not by what the
socket saw: behind a TLS-terminating proxy it works; a plain-http issuer off loopback is
refused with a clear 400 (never a 500)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ztgw.gateway.identity.client_secrets import SecretHasher
from ztgw.gateway.identity.directory import ClientRecord, Directory
from ztgw.gateway.identity.http import build_router
from ztgw.gateway.identity.keys import KeyRing
from ztgw.gateway.identity.oauth import ZtgwAuthorizationServer
from ztgw.gateway.identity.tokens import AccessTokenVerifier, TokenIssuer

AUD = "urn:ztgw:data-api"


def token_app(directory: Directory, keyring: KeyRing, issuer: str) -> Any:
    hasher = SecretHasher(b"p" * 32)
    directory.put_client(ClientRecord(client_id="svc", name="svc", secret_hash=hasher.hash("s3cret"),
                                      scope="data.read"))
    server = ZtgwAuthorizationServer(
        directory, hasher, TokenIssuer(keyring, issuer, AUD, 300),
        verifier=AccessTokenVerifier(keyring.keyset, issuer, AUD))
    router = build_router(server, keyring, issuer, lambda event: None)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["ztgw.request_id"] = "test"
        await router.token_asgi(scope, receive, send)  # type: ignore[attr-defined]

    return app


@pytest.mark.parametrize(("issuer", "status"), [
    ("https://sso.example.gov.cn", 200),  # TLS at the proxy, http on the socket: fine
    ("http://127.0.0.1:8080", 200),       # loopback (development)
    ("http://10.1.2.3:8080", 400),        # plain http on a network address: refused
])
async def test_transport_follows_the_issuer(directory: Directory, keyring: KeyRing, issuer: str,
                                            status: int) -> None:
    transport = httpx.ASGITransport(app=token_app(directory, keyring, issuer))
    async with httpx.AsyncClient(transport=transport, base_url="http://10.1.2.3:8080") as c:
        r = await c.post("/oauth2/token", data={"grant_type": "client_credentials"},
                         auth=("svc", "s3cret"))
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["error"] == "invalid_request" and "https" in r.json()["error_description"]
    else:
        assert r.json()["token_type"] == "Bearer"
