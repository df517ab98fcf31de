"""The signing key ring: SM2 keys live beside, not inside, the standard JWKS file."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

from joserfc import jwt
from joserfc.jwk import KeySet

from ztgw.gateway.identity.keys import (
    RELOAD_INTERVAL,
    SIGNING_FILE,
    SM2_SIGNING_FILE,
    KeyRing,
    _to_dict,
)
from ztgw.gateway.identity.tokens import TokenIssuer


def test_standard_file_stays_readable_by_generic_jose(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path)
    assert ring.algorithms == ["ES256", "RS256", "SM2SM3"]
    std = json.loads((tmp_path / SIGNING_FILE).read_text())
    assert {k["alg"] for k in std["keys"]} == {"ES256", "RS256"}
    KeySet.import_key_set(std)  # would raise on crv SM2
    sm2 = json.loads((tmp_path / SM2_SIGNING_FILE).read_text())
    assert [k["crv"] for k in sm2["keys"]] == ["SM2"]
    assert oct((tmp_path / SM2_SIGNING_FILE).stat().st_mode & 0o777) == "0o600"
    assert all("d" not in k for k in ring.public_jwks()["keys"])
    assert all(k.get("crv") != "SM2" for k in ring.public_jwks(include_sm2=False)["keys"])


def test_reload_keeps_keys_and_splits_an_old_combined_file(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path)
    kids = {a: ring.signing_key(a).kid for a in ring.algorithms}
    combined = {"keys": [_to_dict(ring.signing_key(a), private=True) for a in ring.algorithms]}
    (tmp_path / SM2_SIGNING_FILE).unlink()
    (tmp_path / SIGNING_FILE).write_text(json.dumps(combined))
    again = KeyRing.load_or_create(tmp_path)
    assert {a: again.signing_key(a).kid for a in again.algorithms} == kids
    KeySet.import_key_set(json.loads((tmp_path / SIGNING_FILE).read_text()))
    token = TokenIssuer(again, "http://x", "aud", 60, alg="SM2").issue_access_token(
        subject="client:a", client_id="a", scope="")
    assert jwt.decode(token, ring.keyset, algorithms=["SM2SM3"]).claims["sub"] == "client:a"


def test_rotate_then_retire(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path)
    old = ring.signing_key("ES256")
    old_token = TokenIssuer(ring, "http://x", "aud", 60).issue_access_token(
        subject="client:a", client_id="a", scope="")
    new_kid = KeyRing.rotate(tmp_path, "ES256", max_token_lifetime=3600)["kid"]
    after = KeyRing.load_or_create(tmp_path)
    assert after.signing_key("ES256").kid == new_kid != old.kid
    # the old key still verifies and is still published
    assert jwt.decode(old_token, after.keyset, algorithms=["ES256"]).claims["sub"] == "client:a"
    assert old.kid in {k["kid"] for k in after.public_jwks()["keys"]}
    import pytest

    with pytest.raises(ValueError):
        KeyRing.retire(tmp_path, new_kid)  # the signing key cannot go
    KeyRing.retire(tmp_path, str(old.kid))
    final = KeyRing.load_or_create(tmp_path)
    assert old.kid not in {k["kid"] for k in final.public_jwks()["keys"]}
    with pytest.raises(Exception):
        jwt.decode(old_token, final.keyset, algorithms=["ES256"])


def _token(ring: KeyRing, alg: str = "ES256") -> str:
    return TokenIssuer(ring, "http://x", "aud", 60, alg=alg).issue_access_token(
        subject="client:a", client_id="a", scope="")


def _kid(token: str) -> str:
    return str(json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))["kid"])


def test_a_running_ring_follows_rotation_without_restart(tmp_path: Path) -> None:
    """Two live rings on one directory (two processes): a rotation with a publish delay is
    published at once, signs only after the delay, and the old key retires after the
    longest token lifetime — both rings agree at every step, with no reload call."""
    import pytest

    a = KeyRing.load_or_create(tmp_path)
    b = KeyRing.load_or_create(tmp_path)
    old_kid = str(a.signing_key("ES256").kid)
    old_token = _token(a)
    # a publish delay with room for a loaded machine: the "not signing yet" checks below run
    # well before sign_after (a 2 s delay made them flaky in CI)
    done = KeyRing.rotate(tmp_path, "ES256", publish_delay=8, max_token_lifetime=2)
    assert done["superseded"] == [old_kid]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(
            done["kid"] in {k["kid"] for k in ring.public_jwks()["keys"]} for ring in (a, b)):
        time.sleep(0.05)
    for ring in (a, b):
        assert done["kid"] in {k["kid"] for k in ring.public_jwks()["keys"]}  # published
        assert _kid(_token(ring)) == old_kid  # not signing yet
        states = {r["kid"]: r["state"] for r in ring.describe()}
        assert states[done["kid"]] == "pending" and states[old_kid] == "signing"
    time.sleep(max(0.0, done["sign_after"] - time.time()) + RELOAD_INTERVAL + 0.1)
    for ring in (a, b):
        assert _kid(_token(ring)) == done["kid"]  # the new key signs
        jwt.decode(old_token, ring.keyset, algorithms=["ES256"])  # the old one still verifies
        assert old_kid in {k["kid"] for k in ring.public_jwks()["keys"]}
    time.sleep(max(0.0, done["retire_after"] - time.time()) + RELOAD_INTERVAL + 0.1)
    for ring in (a, b):
        assert old_kid not in {k["kid"] for k in ring.public_jwks()["keys"]}
        with pytest.raises(Exception):
            jwt.decode(old_token, ring.keyset, algorithms=["ES256"])
        assert {r["kid"]: r["state"] for r in ring.describe()}[old_kid] == "retired"
    # the next rotation removes the retired key from the file; nothing private is published
    again = KeyRing.rotate(tmp_path, "ES256", max_token_lifetime=60)
    assert old_kid in again["removed"]
    assert old_kid not in (tmp_path / SIGNING_FILE).read_text()
    assert all("d" not in k and "ztgw_retire_after" not in k and "ztgw_sign_after" not in k
               for k in b.public_jwks()["keys"])


def test_a_broken_key_file_keeps_the_running_keys(tmp_path: Path) -> None:
    ring = KeyRing.load_or_create(tmp_path)
    kid = ring.signing_key("ES256").kid
    (tmp_path / SIGNING_FILE).write_text("{not json")
    ring.refresh(force=True)
    assert ring.signing_key("ES256").kid == kid
