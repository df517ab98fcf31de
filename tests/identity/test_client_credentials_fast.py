"""The token endpoint's client-credentials fast lane against authlib's own grant, side by side
on the same server and directory: whenever the fast lane issues a token, authlib issues one
for the same request with the same scope; whenever authlib refuses, the fast lane declines
(so the full path answers with authlib's error)."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import pytest

from ztgw.gateway.identity.client_secrets import SecretHasher
from ztgw.gateway.identity.directory import ClientRecord, Directory
from ztgw.gateway.identity.keys import KeyRing
from ztgw.gateway.identity.oauth import StarletteOAuth2Request, ZtgwAuthorizationServer
from ztgw.gateway.identity.tokens import AccessTokenVerifier, TokenIssuer

ISS, AUD = "https://sso.example.gov.cn", "urn:ztgw:data-api"
SECRET = "s3cret-with:colon%and+plus"


def basic(user: str, password: str, encode: bool = True) -> str:
    if encode:
        user, password = quote(user, safe=""), quote(password, safe="")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def server(directory: Directory, keyring: KeyRing) -> ZtgwAuthorizationServer:
    hasher = SecretHasher(b"p" * 32)
    for rec in (
        ClientRecord(client_id="svc", name="svc", secret_hash=hasher.hash(SECRET),
                     scope="data.read data.export"),
        ClientRecord(client_id="noscope", name="n", secret_hash=hasher.hash(SECRET)),
        ClientRecord(client_id="web", name="w", secret_hash=hasher.hash(SECRET),
                     grant_types=("authorization_code",), redirect_uris=("https://a/cb",)),
        ClientRecord(client_id="pub", name="p", secret_hash=None, public=True,
                     grant_types=("client_credentials",)),
        ClientRecord(client_id="off", name="o", secret_hash=hasher.hash(SECRET), enabled=False),
    ):
        directory.put_client(rec)
    return ZtgwAuthorizationServer(directory, hasher, TokenIssuer(keyring, ISS, AUD, 300),
                                   verifier=AccessTokenVerifier(keyring, ISS, AUD))


def authlib_answer(server: ZtgwAuthorizationServer, form: dict[str, list[str]],
                   authorization: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": authorization} if authorization else {}
    req = StarletteOAuth2Request("POST", ISS + "/oauth2/token", headers, form, {})
    status, body, _ = server.create_token_response(req)
    return status, body if isinstance(body, dict) else json.loads(body)


CASES: list[tuple[str, dict[str, list[str]], str | None, bool]] = [
    # (name, form, Authorization, the fast lane should answer)
    ("plain", {"grant_type": ["client_credentials"]}, basic("svc", SECRET), True),
    ("scope", {"grant_type": ["client_credentials"], "scope": ["data.read"]}, basic("svc", SECRET), True),
    ("scope narrowed", {"grant_type": ["client_credentials"], "scope": ["data.read admin.all"]},
     basic("svc", SECRET), True),
    ("no registered scope", {"grant_type": ["client_credentials"], "scope": ["x"]},
     basic("noscope", SECRET), True),
    ("wrong secret", {"grant_type": ["client_credentials"]}, basic("svc", SECRET + "x"), False),
    # unencoded, yet decodes to the same secret (":" after the first splits nothing, "%an" is no
    # escape, unquote keeps "+"): both accept
    ("not url-encoded", {"grant_type": ["client_credentials"]}, basic("svc", SECRET, encode=False),
     True),
    ("encoded differently", {"grant_type": ["client_credentials"]},
     basic("svc", SECRET.replace("+", " "), encode=True), False),
    ("unknown client", {"grant_type": ["client_credentials"]}, basic("nobody", SECRET), False),
    ("disabled client", {"grant_type": ["client_credentials"]}, basic("off", SECRET), False),
    ("grant not allowed", {"grant_type": ["client_credentials"]}, basic("web", SECRET), False),
    ("public client", {"grant_type": ["client_credentials"]}, basic("pub", ""), False),
    ("no credentials", {"grant_type": ["client_credentials"]}, None, False),
    ("secret in body", {"grant_type": ["client_credentials"], "client_id": ["svc"],
                        "client_secret": [SECRET]}, None, False),
    ("both methods", {"grant_type": ["client_credentials"], "client_id": ["svc"],
                      "client_secret": [SECRET]}, basic("svc", SECRET), False),
    ("bearer", {"grant_type": ["client_credentials"]}, f"Bearer {SECRET}", False),
    ("bad base64", {"grant_type": ["client_credentials"]}, "Basic !!!", False),
    ("other grant", {"grant_type": ["refresh_token"], "refresh_token": ["x"]}, basic("svc", SECRET),
     False),
]


@pytest.mark.parametrize(("name", "form", "authorization", "fast_answers"), CASES,
                         ids=[c[0] for c in CASES])
def test_fast_lane_agrees_with_authlib(server: ZtgwAuthorizationServer, name: str,
                                       form: dict[str, list[str]], authorization: str | None,
                                       fast_answers: bool) -> None:
    fast = server.client_credentials_fast(form, authorization)
    status, body = authlib_answer(server, form, authorization)
    assert (fast is not None) is fast_answers
    if fast is not None:
        assert status == 200, body
        client_id, token = fast
        assert token["scope"] == body["scope"] and token["token_type"] == body["token_type"]
        assert "refresh_token" not in token and "refresh_token" not in body
        at = server.verifier.verify(token["access_token"])  # type: ignore[union-attr]
        assert at.subject == f"client:{client_id}" and " ".join(sorted(at.scope)) == " ".join(
            sorted(token["scope"].split()))
    elif name != "both methods":  # authlib tolerates Basic + body credentials; the lane declines
        assert status != 200, (status, body)


def test_scope_never_exceeds_the_registration(server: ZtgwAuthorizationServer) -> None:
    fast = server.client_credentials_fast(
        {"grant_type": ["client_credentials"], "scope": ["data.read admin.all openid"]},
        basic("svc", SECRET))
    assert fast is not None and fast[1]["scope"] == "data.read"
    fast = server.client_credentials_fast({"grant_type": ["client_credentials"]}, basic("svc", SECRET))
    assert fast is not None and fast[1]["scope"] == "data.read data.export"
