"""Signing-key rotation without a restart, against a real ``ztgw serve``: ``ztgw keys rotate``
publishes a new key at once, it signs after the publish delay, tokens of the old key keep
working until they expire, then the old key is retired and its tokens are refused.  authlib's
relying-party client refreshes the JWKS when an ID token names a new ``kid``."""

from __future__ import annotations

import base64
import json
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from identity.browser import Browser, exchange
from joserfc import jwt
from joserfc.jwk import ECKey

from .conftest import RunningGateway, start_processes, stop_processes

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from authlib.integrations.starlette_client import OAuth

TTL = 30  # the smallest access-token lifetime the settings allow
PUBLISH_DELAY = 2
REDIRECT = "http://127.0.0.1:9/cb"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    gw, procs = start_processes(tmp_path_factory.mktemp("ztgw-rotation"), {
        "ZTGW_ACCESS_TOKEN_TTL": str(TTL), "ZTGW_TOKEN_LEEWAY": "0",
        "ZTGW_KEY_PUBLISH_DELAY": str(PUBLISH_DELAY)})
    try:
        yield gw
    finally:
        stop_processes(procs)


def kid_of(token: str) -> str:
    return str(json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))["kid"])


def cc_token(gw: RunningGateway, client: dict[str, Any]) -> str:
    r = httpx.post(f"{gw.base}/oauth2/token", data={"grant_type": "client_credentials"},
                   auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def data_status(gw: RunningGateway, token: str) -> int:
    return httpx.get(f"{gw.base}/api/population/persons?size=1",
                     headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


def jwks_kids(gw: RunningGateway) -> set[str]:
    return {k["kid"] for k in httpx.get(f"{gw.base}/oauth2/jwks", timeout=10).json()["keys"]}


def forge(gw: RunningGateway, key: ECKey, client_id: str) -> str:
    """A token signed by ``key`` as the gateway would sign it (the test read the key file)."""
    now = int(time.time())
    claims = {"iss": gw.base, "sub": f"client:{client_id}", "aud": "urn:ztgw:data-api",
              "client_id": client_id, "iat": now, "nbf": now, "exp": now + TTL,
              "jti": f"forged-{now}", "scope": ""}
    return jwt.encode({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}, claims, key)


def sign_in_id_token(gw: RunningGateway, rp: dict[str, Any], user: dict[str, str]
                     ) -> tuple[dict[str, Any], str]:
    browser = Browser(gw.base)
    cb, req = browser.sign_in(rp["client_id"], REDIRECT, user["username"], user["password"])
    r = exchange(gw.base, req, cb.params["code"], auth=(rp["client_id"], rp["client_secret"]))
    assert r.status_code == 200, r.text
    return r.json(), req["nonce"]


def until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


async def test_rotation_without_restart(gw: RunningGateway) -> None:
    client = gw.cli_json("clients", "add", "--name", "轮换测试", "--role", "population-analyst",
                         "--json")
    rp = gw.cli_json("clients", "add", "--name", "轮换网页", "--redirect-uri", REDIRECT,
                     "--grant-type", "authorization_code", "--scope", "openid profile",
                     "--id-token-alg", "ES256", "--json")
    user = gw.accounts["users"][0]
    oauth = OAuth()
    app = oauth.register("ztgw", client_id=rp["client_id"], client_secret=rp["client_secret"],
                         server_metadata_url=f"{gw.base}/.well-known/openid-configuration")

    token_a = cc_token(gw, client)
    old_kid = kid_of(token_a)
    assert data_status(gw, token_a) == 200
    keys = json.loads((gw.home / "keys" / "signing.jwks.json").read_text())["keys"]
    old_key = ECKey.import_key(next(k for k in keys if k["kid"] == old_kid))
    # the RP signs a user in and caches the JWKS (authlib keeps it in server_metadata)
    tokens, nonce = sign_in_id_token(gw, rp, user)
    assert kid_of(tokens["id_token"]) == old_kid
    assert (await app.parse_id_token(tokens, nonce))["sub"] == user["username"]

    done = gw.cli_json("keys", "rotate", "--alg", "ES256", "--json")
    new_kid = done["kid"]
    assert done["superseded"] == [old_kid] and done["retire_after"] == done["sign_after"] + TTL
    time.sleep(1.1)  # the gateway looks at the key files at least every 0.5 s
    assert {old_kid, new_kid} <= jwks_kids(gw)  # published before it signs
    if time.time() < done["sign_after"] - 0.5:
        assert kid_of(cc_token(gw, client)) == old_kid  # the publish delay holds
    listed = {k["kid"]: k["state"] for k in gw.cli_json("keys", "list", "--json")["keys"]}
    assert listed[new_kid] in ("pending", "signing") and listed[old_kid] in ("signing", "verify-only")

    until(done["sign_after"] + 1.1)
    token_b = cc_token(gw, client)
    assert kid_of(token_b) == new_kid  # no restart
    assert data_status(gw, token_b) == 200 and data_status(gw, token_a) == 200  # overlap
    # the RP meets an ID token with a kid it has not cached: authlib refetches the JWKS
    tokens2, nonce2 = sign_in_id_token(gw, rp, user)
    assert kid_of(tokens2["id_token"]) == new_kid
    assert (await app.parse_id_token(tokens2, nonce2))["sub"] == user["username"]
    # a token the old key signs now (as if it were stolen) is still trusted in the overlap...
    forged_early = forge(gw, old_key, client["client_id"])
    assert data_status(gw, forged_early) == 200

    until(done["retire_after"] + 1.1)
    # ...and refused once the old key is retired, even though the token itself is unexpired
    assert data_status(gw, forge(gw, old_key, client["client_id"])) == 401
    assert old_kid not in jwks_kids(gw)
    assert data_status(gw, cc_token(gw, client)) == 200
    listed = {k["kid"]: k["state"] for k in gw.cli_json("keys", "list", "--json")["keys"]}
    assert listed[old_kid] == "retired" and listed[new_kid] == "signing"
