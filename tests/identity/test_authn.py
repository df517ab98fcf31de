"""Password verification, the password policy, upgrade on login, throttling, and the same
work for unknown users (no enumeration by timing)."""

from __future__ import annotations

import pytest

from ztgw.crypto import passwords
from ztgw.crypto.constants import PBKDF2_MIN_ITERATIONS
from ztgw.gateway.identity import authn
from ztgw.gateway.identity.authn import Authenticator, password_problems
from ztgw.gateway.identity.directory import Directory, UserRecord
from ztgw.gateway.identity.store import OAuthStore
from ztgw.gateway.identity.totp import SecretSealer

ITER = 120_000


@pytest.fixture
def auth(directory: Directory, store: OAuthStore) -> Authenticator:
    directory.put_user(UserRecord(username="alice", password_hash=passwords.hash_password(
        "Correct-Horse-9", iterations=PBKDF2_MIN_ITERATIONS)))
    return Authenticator(directory, store, SecretSealer(b"k" * 32), iterations=ITER)


def test_password_policy() -> None:
    assert password_problems("Correct-Horse-9", "alice") == []
    assert password_problems("short", "")
    assert any("常见" in p for p in password_problems("password123", ""))
    assert any("常见" in p for p in password_problems("WoAiNi1314", ""))
    assert any("用户名" in p for p in password_problems("xx-alice-2026-yy", "alice"))
    assert password_problems("aaaaaaaaaaaa", "")


def test_login_upgrades_a_weaker_verifier(auth: Authenticator, directory: Directory) -> None:
    before = directory.get_user("alice")
    assert before is not None and "i=100000" in (before.password_hash or "")
    assert auth.check_password("alice", "Correct-Horse-9", "10.0.0.1").ok
    after = directory.get_user("alice")
    assert after is not None and f"i={ITER}$" in (after.password_hash or "")
    assert auth.check_password("alice", "Correct-Horse-9", "10.0.0.1").ok


def test_unknown_user_costs_the_same_work(auth: Authenticator, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = passwords.verify_password

    def counting(password: str, encoded: str) -> None:
        seen.append(encoded.split("$")[2])  # the iteration field
        real(password, encoded)

    monkeypatch.setattr(authn.passwords, "verify_password", counting)
    a = auth.check_password("nobody", "whatever-pass", "10.0.0.2")
    b = auth.check_password("alice", "wrong-pass-1", "10.0.0.2")
    assert not a.ok and not b.ok and a.reason == b.reason == "invalid_credentials"
    # one PBKDF2 verification each; the decoy uses the configured count (alice's is older)
    assert len(seen) == 2 and seen[0] == f"i={ITER}"


def test_progressive_lock_per_account_then_long_lock(auth: Authenticator, store: OAuthStore) -> None:
    results = [auth.check_password("alice", f"bad-{i}", f"10.1.0.{i}") for i in range(5)]
    assert [r.reason for r in results[:4]] == ["invalid_credentials"] * 4
    assert results[4].reason == "locked" and results[4].retry_after > 0
    # the right password is not even checked while locked
    assert auth.check_password("alice", "Correct-Horse-9", "10.1.0.99").reason == "locked"
    for i in range(authn.ACCOUNT_LOCK_AFTER):
        auth.throttle.fail("user:alice", authn.FREE_FAILURES, authn.ACCOUNT_LOCK_AFTER)
    assert auth.locked_for("alice", "10.9.9.9") > authn.MAX_DELAY_SECONDS


def test_unknown_names_are_throttled_like_known_ones(auth: Authenticator) -> None:
    for i in range(4):
        auth.check_password("ghost", f"bad-{i}", f"10.2.0.{i}")
    assert auth.check_password("ghost", "bad", "10.2.0.9").reason == "locked"


def test_disabled_user_cannot_log_in(auth: Authenticator, directory: Directory) -> None:
    directory.set_user_enabled("alice", False)
    assert not auth.check_password("alice", "Correct-Horse-9", "10.3.0.1").ok


def test_an_account_locked_by_a_detection_response_cannot_sign_in(auth: Authenticator) -> None:
    locked: set[str] = set()
    auth.external_lock = lambda name: name in locked
    assert auth.check_password("alice", "Correct-Horse-9", "10.0.0.1").ok
    locked.add("alice")
    result = auth.check_password("Alice", "Correct-Horse-9", "10.0.0.1")  # normalised name
    assert (result.ok, result.reason) == (False, "locked")
    locked.clear()
    assert auth.check_password("alice", "Correct-Horse-9", "10.0.0.1").ok
