"""JWS/JWT with SM2SM3, ES256, RS256, EdDSA behind one KeySet; RFC 8725 rules."""

from __future__ import annotations

import base64
import json
import time

import pytest
from joserfc import jws as joserfc_jws
from joserfc.jwk import OctKey

from ztgw.crypto import jose, sm2
from ztgw.crypto.errors import (
    InvalidClaims,
    InvalidSignature,
    KeyNotFound,
    MalformedInput,
    UnsupportedAlgorithm,
)

ALGS = ["SM2SM3", "ES256", "RS256", "EdDSA", "Ed25519"]


@pytest.fixture(scope="module")
def keysets() -> dict[str, jose.KeySet]:
    out = {}
    for alg in ALGS:
        ks = jose.KeySet()
        ks.generate(alg, kid=f"{alg.lower()}-1")
        out[alg] = ks
    return out


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@pytest.mark.parametrize("alg", ALGS)
def test_sign_verify_each_alg(keysets: dict[str, jose.KeySet], alg: str) -> None:
    ks = keysets[alg]
    now = int(time.time())
    token = jose.sign_jwt(ks, {"iss": "ztgw", "aud": "api", "sub": "u1", "exp": now + 60})
    claims = jose.verify_jwt(ks, token, algorithms=[alg], issuer="ztgw", audience="api")
    assert claims["sub"] == "u1"
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": alg, "kid": f"{alg.lower()}-1", "typ": "JWT"}
    # a verify-only set from the public JWKS works too
    public = jose.KeySet.from_jwks(json.loads(json.dumps(ks.jwks())))
    jose.verify_jwt(public, token, algorithms=[alg])


def test_sm2_jwk_shape_and_interop(keysets: dict[str, jose.KeySet]) -> None:
    (jwk,) = keysets["SM2SM3"].jwks()["keys"]
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "SM2", "SM2SM3", "sig")
    # the SM2SM3 signature is raw r||s over the signing input, verifiable with plain SM2
    token = jose.sign_jws(keysets["SM2SM3"], b"payload")
    head, body, sig = token.split(".")
    pub = sm2.SM2PublicKey.from_numbers(
        int.from_bytes(base64.urlsafe_b64decode(jwk["x"] + "=="), "big"),
        int.from_bytes(base64.urlsafe_b64decode(jwk["y"] + "=="), "big"),
    )
    pub.verify(base64.urlsafe_b64decode(sig + "=="), f"{head}.{body}".encode(), encoding="raw")


def test_rotation_old_keys_verify_only() -> None:
    ks = jose.KeySet()
    k1 = ks.generate("SM2SM3", kid="a")
    t1 = jose.sign_jws(ks, b"one")
    k2 = ks.rotate()
    assert k2 != k1 and ks.signing_key().kid == k2
    t2 = jose.sign_jws(ks, b"two")
    assert jose.verify_jws(ks, t1, algorithms=["SM2SM3"])[1] == b"one"
    assert jose.verify_jws(ks, t2, algorithms=["SM2SM3"])[0]["kid"] == k2
    assert {k["kid"] for k in ks.jwks()["keys"]} == {k1, k2}
    ks.remove(k1)
    with pytest.raises(KeyNotFound):
        jose.verify_jws(ks, t1, algorithms=["SM2SM3"])
    public = jose.KeySet.from_jwks(ks.jwks())
    with pytest.raises(UnsupportedAlgorithm):
        public.activate(k2)  # public keys never sign


def test_rfc8725_rules(keysets: dict[str, jose.KeySet]) -> None:
    sm2_ks, es_ks = keysets["SM2SM3"], keysets["ES256"]
    token = jose.sign_jws(sm2_ks, b"x")
    with pytest.raises(UnsupportedAlgorithm):
        jose.verify_jws(sm2_ks, token, algorithms=["ES256"])  # not allowed by this call
    with pytest.raises(UnsupportedAlgorithm):
        jose.verify_jws(sm2_ks, token, algorithms=["none"])
    with pytest.raises(UnsupportedAlgorithm):
        jose.verify_jws(sm2_ks, token, algorithms=[])
    head, body, _ = token.split(".")
    # alg "none"
    none_head = _b64(json.dumps({"alg": "none", "kid": "sm2sm3-1"}).encode())
    with pytest.raises(UnsupportedAlgorithm):
        jose.verify_jws(sm2_ks, f"{none_head}.{body}.", algorithms=["SM2SM3"])
    # header claims ES256 but the kid is the SM2 key: alg must match the key
    es_head = _b64(json.dumps({"alg": "ES256", "kid": "sm2sm3-1"}).encode())
    with pytest.raises(UnsupportedAlgorithm):
        jose.verify_jws(sm2_ks, f"{es_head}.{body}.AAAA", algorithms=["ES256", "SM2SM3"])
    # HS256 with the public key as secret (classic confusion) never gets near a key
    oct_key = OctKey.import_key(json.dumps(sm2_ks.jwks()).encode())
    hs = joserfc_jws.serialize_compact({"alg": "HS256", "kid": "sm2sm3-1"}, b"x", oct_key)
    with pytest.raises(UnsupportedAlgorithm):
        jose.verify_jws(sm2_ks, hs, algorithms=["HS256"])
    # embedded keys and path-traversal kids
    jwk_head = _b64(json.dumps({"alg": "SM2SM3", "kid": "sm2sm3-1",
                                "jwk": sm2_ks.jwks()["keys"][0]}).encode())
    with pytest.raises(MalformedInput):
        jose.verify_jws(sm2_ks, f"{jwk_head}.{body}.AAAA", algorithms=["SM2SM3"])
    bad_kid = _b64(json.dumps({"alg": "SM2SM3", "kid": "../../etc/passwd"}).encode())
    with pytest.raises(MalformedInput):
        jose.verify_jws(sm2_ks, f"{bad_kid}.{body}.AAAA", algorithms=["SM2SM3"])
    # a token signed by another key set's key with an unknown kid
    with pytest.raises(KeyNotFound):
        jose.verify_jws(sm2_ks, jose.sign_jws(es_ks, b"x"), algorithms=["ES256"])
    with pytest.raises(MalformedInput):
        jose.verify_jws(sm2_ks, "not.a.jws.at.all", algorithms=["SM2SM3"])
    assert head


def test_tampering_and_claims(keysets: dict[str, jose.KeySet]) -> None:
    ks = keysets["SM2SM3"]
    now = int(time.time())
    token = jose.sign_jwt(ks, {"sub": "u1", "exp": now + 60, "iss": "ztgw"})
    head, body, sig = token.split(".")
    forged_body = _b64(json.dumps({"sub": "admin", "exp": now + 60, "iss": "ztgw"}).encode())
    with pytest.raises(InvalidSignature):
        jose.verify_jwt(ks, f"{head}.{forged_body}.{sig}", algorithms=["SM2SM3"])
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[5] ^= 1
    with pytest.raises(InvalidSignature):
        jose.verify_jwt(ks, f"{head}.{body}.{_b64(bytes(raw))}", algorithms=["SM2SM3"])
    expired = jose.sign_jwt(ks, {"sub": "u1", "exp": now - 3600})
    with pytest.raises(InvalidClaims):
        jose.verify_jwt(ks, expired, algorithms=["SM2SM3"])
    with pytest.raises(InvalidClaims):
        jose.verify_jwt(ks, token, algorithms=["SM2SM3"], issuer="someone-else")
    with pytest.raises(InvalidClaims):
        jose.verify_jwt(ks, token, algorithms=["SM2SM3"], audience="api")
    no_exp = jose.sign_jwt(ks, {"sub": "u1"})
    with pytest.raises(InvalidClaims):
        jose.verify_jwt(ks, no_exp, algorithms=["SM2SM3"])
    at = jose.sign_jwt(ks, {"sub": "u1", "exp": now + 60}, typ="at+jwt")
    jose.verify_jwt(ks, at, algorithms=["SM2SM3"], typ="at+jwt")
    with pytest.raises(InvalidClaims):
        jose.verify_jwt(ks, token, algorithms=["SM2SM3"], typ="at+jwt")


def test_keyset_rejects_mismatched_keys() -> None:
    ks = jose.KeySet()
    with pytest.raises(UnsupportedAlgorithm):
        ks.add(sm2.generate_key(), kid="x", alg="ES256")
    with pytest.raises(UnsupportedAlgorithm):
        ks.add(sm2.generate_key(), kid="x", alg="HS256")
    ks.add(sm2.generate_key(), kid="x", alg="SM2SM3", activate=True)
    with pytest.raises(MalformedInput):
        ks.add(sm2.generate_key(), kid="x", alg="SM2SM3")
    with pytest.raises(MalformedInput):
        private_jwk = jose.SM2JWK(sm2.generate_key(), {"kid": "p", "alg": "SM2SM3"}).dict_value
        jose.KeySet.from_jwks({"keys": [private_jwk]})


def test_signer_per_token_kind() -> None:
    ks = jose.KeySet()
    ks.generate("SM2SM3", kid="k1")
    access = jose.Signer(ks, frozenset({"SM2SM3"}), issuer="https://ztgw", audience="api",
                         typ="at+jwt")
    receipt = jose.Signer(ks, frozenset({"SM2SM3"}), issuer="https://ztgw",
                          audience="consent", typ="receipt+jwt")
    token = access.sign({"sub": "u1", "exp": int(time.time()) + 60})
    assert access.verify(token)["aud"] == "api"
    with pytest.raises(InvalidClaims):
        receipt.verify(token)  # cross-JWT confusion refused (RFC 8725 §3.12)
    es_only = jose.Signer(ks, frozenset({"ES256"}))
    with pytest.raises(UnsupportedAlgorithm):
        es_only.sign({"exp": 1})
    with pytest.raises(UnsupportedAlgorithm):
        es_only.verify(token)
