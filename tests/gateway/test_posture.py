"""Device posture statements: accepted only when signed by a configured attester, fresh,
short-lived and bound to the caller; every other case leaves the device unknown."""

from __future__ import annotations

import base64
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from ztgw.crypto.sm2 import SM2PrivateKey
from ztgw.gateway.dataplane.posture import PostureInvalid, PostureVerifier


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def statement(key: SM2PrivateKey, **over: Any) -> str:
    now = int(time.time())
    claims = {"iss": "edr", "sub": "demo-police", "device": "pc-0042", "posture": "managed",
              "iat": now, "exp": now + 300, **over}
    payload = b64(orjson.dumps(claims))
    return f"{payload}.{b64(key.sign(payload.encode()))}"


@pytest.fixture(scope="module")
def attester() -> SM2PrivateKey:
    return SM2PrivateKey.generate()


@pytest.fixture(scope="module")
def verifier(attester: SM2PrivateKey) -> PostureVerifier:
    return PostureVerifier({"edr": attester.public_key()})


CALLER = ("demo-police", "client:demo-police")


def test_a_fresh_statement_for_the_caller_is_taken(attester: SM2PrivateKey,
                                                     verifier: PostureVerifier) -> None:
    p = verifier.verify(statement(attester), bound_to=CALLER)
    assert (p.attester, p.device, p.posture) == ("edr", "pc-0042", "managed")


@pytest.mark.parametrize(("over", "reason"), [
    ({"sub": "demo-analytics"}, "not_for_this_caller"),  # someone else's statement replayed
    ({"iat": -1000, "exp": -100}, "expired"),  # times: seconds from now, when the test runs
    ({"iat": 600, "exp": 900}, "not_yet_valid"),
    ({"exp": 86400}, "lifetime_too_long"),
    ({"iss": "other"}, "unknown_attester"),
    ({"posture": "managed\nforged"}, "malformed"),
    ({"exp": "soon"}, "malformed"),
])
def test_unacceptable_statements_are_refused(attester: SM2PrivateKey, verifier: PostureVerifier,
                                             over: dict[str, Any], reason: str) -> None:
    now = int(time.time())
    over = {k: now + v if k in ("iat", "exp") and isinstance(v, int) else v
            for k, v in over.items()}
    with pytest.raises(PostureInvalid, match=reason):
        verifier.verify(statement(attester, **over), bound_to=CALLER)


def test_forged_and_altered_statements_are_refused(attester: SM2PrivateKey,
                                                   verifier: PostureVerifier) -> None:
    other = SM2PrivateKey.generate()
    with pytest.raises(PostureInvalid, match="bad_signature"):  # signed by a stranger
        verifier.verify(statement(other), bound_to=CALLER)
    good = statement(attester, posture="unmanaged")
    payload, sig = good.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["posture"] = "managed"  # the device upgrades its own posture
    with pytest.raises(PostureInvalid, match="bad_signature"):
        verifier.verify(f"{b64(orjson.dumps(claims))}.{sig}", bound_to=CALLER)
    for junk in ("", "abc", "a.b.c", "!!.??", good.split(".")[0] + ".", "x" * 5000):
        with pytest.raises(PostureInvalid):
            verifier.verify(junk, bound_to=CALLER)


def test_openssl_signed_statement_verifies(tmp_path: Path, verifier: PostureVerifier) -> None:
    """Interop: an attester signing with the OpenSSL 3 command line (SM2 + SM3, default id)."""
    key_pem = tmp_path / "edr.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "SM2", "-out", str(key_pem)], check=True,
                   capture_output=True, timeout=30)
    pub = tmp_path / "edr.pub.pem"
    subprocess.run(["openssl", "pkey", "-in", str(key_pem), "-pubout", "-out", str(pub)],
                   check=True, capture_output=True, timeout=30)
    now = int(time.time())
    payload = b64(orjson.dumps({"iss": "edr", "sub": "demo-police", "device": "pc-7",
                                "posture": "compliant", "iat": now, "exp": now + 60}))
    (tmp_path / "data").write_bytes(payload.encode())
    sig = subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey",
                          str(key_pem), "-in", str(tmp_path / "data"),
                          "-pkeyopt", "distid:1234567812345678"],
                         check=True, capture_output=True, timeout=30).stdout
    v = PostureVerifier.from_files({"edr": pub})
    assert v.verify(f"{payload}.{b64(sig)}", bound_to=CALLER).posture == "compliant"
    with pytest.raises(ValueError, match="cannot read"):
        PostureVerifier.from_files({"edr": tmp_path / "missing.pem"})
