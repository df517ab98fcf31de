"""TOTP against the published vectors: RFC 4226 Appendix D (HOTP) and RFC 6238 Appendix B
(TOTP, SHA-1 rows; the RFC prints 8 digits, a 6-digit code is the last six of them)."""

from __future__ import annotations

import base64

import pytest

from ztgw.gateway.identity import totp

RFC_SECRET = base64.b32encode(b"12345678901234567890").decode().rstrip("=")
RFC4226 = ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
           "399871", "520489"]
RFC6238_SHA1 = [(59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
                (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130")]


@pytest.mark.parametrize("counter", range(10))
def test_hotp_rfc4226(counter: int) -> None:
    assert totp.hotp(RFC_SECRET, counter) == RFC4226[counter]


@pytest.mark.parametrize(("at", "code8"), RFC6238_SHA1)
def test_totp_rfc6238(at: int, code8: str) -> None:
    assert totp.code_at(RFC_SECRET, at) == code8[-6:]


def test_match_step_accepts_one_step_of_drift_only() -> None:
    at = 1_700_000_000
    step = totp.current_step(at)
    assert totp.match_step(RFC_SECRET, totp.code_at(RFC_SECRET, at), at) == step
    assert totp.match_step(RFC_SECRET, totp.code_at(RFC_SECRET, at - 30), at) == step - 1
    assert totp.match_step(RFC_SECRET, totp.code_at(RFC_SECRET, at + 30), at) == step + 1
    assert totp.match_step(RFC_SECRET, totp.code_at(RFC_SECRET, at - 90), at) is None
    for junk in ("", "12345", "1234567", "abcdef", "12 34 5"):
        assert totp.match_step(RFC_SECRET, junk, at) is None


def test_sealed_secret_is_bound_to_the_user() -> None:
    sealer = totp.SecretSealer(b"p" * 32)
    sealed = sealer.seal("alice", RFC_SECRET)
    assert RFC_SECRET not in sealed and sealer.open("alice", sealed) == RFC_SECRET
    from ztgw.crypto.errors import InvalidTag

    with pytest.raises(InvalidTag):
        sealer.open("mallory", sealed)  # a row copied to another user does not open
    with pytest.raises(InvalidTag):
        totp.SecretSealer(b"q" * 32).open("alice", sealed)
