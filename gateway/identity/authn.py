"""Authenticating people: passwords, the password policy, TOTP and brute-force protection.

- Passwords are PBKDF2-HMAC-SM3 verifiers from :mod:`ztgw.crypto.passwords` (self-describing,
  ``$pbkdf2-sm3$i=…``); a weaker verifier is upgraded on the next successful login.
- Unknown users cost the same work as known ones (a verifier with the same iteration count is
  checked) and get the same answer, so neither the message nor the timing tells who exists.
- Failures are counted per submitted user name and per source address, whether the user exists
  or not; past a threshold each further failure locks the key for a growing time, and a long
  run locks it for ``LOCK_SECONDS`` (OWASP ASVS 2.2.1, NIST SP 800-63B §5.2.2).
"""

from __future__ import annotations

import secrets
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any

from ztgw.crypto import passwords
from ztgw.crypto.constants import PBKDF2_DEFAULT_ITERATIONS
from ztgw.crypto.errors import InvalidPassword, InvalidTag, MalformedInput

from . import totp
from .directory import Directory, UserRecord
from .store import OAuthStore, now

MIN_PASSWORD_CHARS = 10  # NIST SP 800-63B §5.1.1.2 asks for at least 8; we ask a little more
MAX_PASSWORD_CHARS = 256
FREE_FAILURES = 3  # failures per user name before delays start
IP_FREE_FAILURES = 20  # per source address (many people can share one NAT address)
BASE_DELAY_SECONDS = 5  # the first delay; each further failure doubles it
MAX_DELAY_SECONDS = 120
ACCOUNT_LOCK_AFTER = 10  # failures per user name before the long lock
IP_LOCK_AFTER = 100  # failures per source address before the long lock
LOCK_SECONDS = 900
FAILURE_MEMORY_SECONDS = 3600  # a quiet hour forgets earlier failures

ACR_PWD, ACR_MFA, ACR_CERT = "urn:ztgw:acr:pwd", "urn:ztgw:acr:mfa", "urn:ztgw:acr:cert"


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = files("ztgw.gateway.identity").joinpath("common-passwords.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines()
                     if line.strip() and not line.startswith("#"))


def password_problems(password: str, username: str = "") -> list[str]:
    """Why a new password is refused (empty if it is acceptable); messages in Chinese."""
    problems: list[str] = []
    p = unicodedata.normalize("NFC", password)
    if len(p) < MIN_PASSWORD_CHARS:
        problems.append(f"密码至少需要 {MIN_PASSWORD_CHARS} 个字符")
    if len(p) > MAX_PASSWORD_CHARS:
        problems.append(f"密码不能超过 {MAX_PASSWORD_CHARS} 个字符")
    if p.lower() in common_passwords():
        problems.append("该密码属于常见弱口令，请换一个")
    if username and username.lower() in p.lower():
        problems.append("密码不能包含用户名")
    if len(set(p)) < 4:
        problems.append("密码中不同字符太少")
    return problems


def normalise_username(username: str) -> str:
    return unicodedata.normalize("NFC", username).strip().lower()


@dataclass(frozen=True, slots=True)
class LoginResult:
    ok: bool
    user: UserRecord | None = None
    reason: str = "invalid_credentials"  # invalid_credentials | locked | otp_required | otp_invalid
    retry_after: int = 0
    acr: str = ACR_PWD
    amr: tuple[str, ...] = ("pwd",)


class Throttle:
    def __init__(self, store: OAuthStore) -> None:
        self.store = store

    def retry_after(self, keys: list[str]) -> int:
        t = now()
        return max((max(0, self.store.throttle_get(k)[2] - t) for k in keys), default=0)

    def fail(self, key: str, free: int, lock_after: int) -> None:
        failures, last, _locked = self.store.throttle_get(key)
        t = now()
        if t - last > FAILURE_MEMORY_SECONDS:
            failures = 0
        failures += 1
        locked_until = 0
        if failures >= lock_after:
            locked_until = t + LOCK_SECONDS
        elif failures > free:
            locked_until = t + min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2 ** (failures - free - 1))
        self.store.throttle_put(key, failures, t, locked_until)

    def succeed(self, key: str) -> None:
        self.store.throttle_clear(key)


class Authenticator:
    def __init__(self, directory: Directory, store: OAuthStore, sealer: totp.SecretSealer,
                 iterations: int = PBKDF2_DEFAULT_ITERATIONS) -> None:
        self.directory, self.store, self.sealer = directory, store, sealer
        self.iterations = iterations
        self.throttle = Throttle(store)
        # an account locked by an automatic response of the detection engine (issue 10)
        self.external_lock: Any = None  # Callable[[str], bool]
        # checked for unknown users and users without a password: same cost, same answer
        self._decoy = passwords.hash_password(secrets.token_urlsafe(16), iterations=iterations)

    def hash_password(self, password: str) -> str:
        return passwords.hash_password(password, iterations=self.iterations)

    def _keys(self, username: str, source_ip: str | None) -> tuple[str, str]:
        return f"user:{normalise_username(username)}", f"ip:{source_ip or '-'}"

    def locked_for(self, username: str, source_ip: str | None) -> int:
        return self.throttle.retry_after(list(self._keys(username, source_ip)))

    def check_password(self, username: str, password: str, source_ip: str | None) -> LoginResult:
        """Blocking (PBKDF2): call it from a worker thread."""
        ukey, ikey = self._keys(username, source_ip)
        wait = self.throttle.retry_after([ukey, ikey])
        if wait:
            return LoginResult(False, reason="locked", retry_after=wait)
        if self.external_lock is not None and self.external_lock(normalise_username(username)):
            return LoginResult(False, reason="locked", retry_after=60)
        user = self.directory.get_user(username) if 0 < len(username) <= 128 else None
        stored = user.password_hash if user is not None and user.enabled else None
        ok = False
        try:
            passwords.verify_password(password, stored or self._decoy)
            ok = stored is not None
        except (InvalidPassword, MalformedInput):
            ok = False
        if not ok or user is None:
            self.throttle.fail(ukey, FREE_FAILURES, ACCOUNT_LOCK_AFTER)
            self.throttle.fail(ikey, IP_FREE_FAILURES, IP_LOCK_AFTER)
            return LoginResult(False, reason="invalid_credentials")
        assert stored is not None
        try:
            if passwords.needs_rehash(stored, iterations=self.iterations):
                self.directory.set_password_hash(user.username, self.hash_password(password))
        except MalformedInput:
            pass
        return LoginResult(True, user=user)

    def totp_enrolled(self, username: str) -> bool:
        row = self.store.totp_get(username)
        return row is not None and row[1]

    def check_totp(self, username: str, code: str, source_ip: str | None,
                   confirmed_only: bool = True) -> bool:
        row = self.store.totp_get(username)
        ok = False
        if row is not None and (row[1] or not confirmed_only):
            try:
                secret = self.sealer.open(username, row[0])
            except (InvalidTag, MalformedInput, ValueError):
                secret = None
            step = totp.match_step(secret, code) if secret else None
            ok = step is not None and self.store.totp_advance(username, step)
        ukey, ikey = self._keys(username, source_ip)
        if not ok:
            self.throttle.fail(ukey, FREE_FAILURES, ACCOUNT_LOCK_AFTER)
            self.throttle.fail(ikey, IP_FREE_FAILURES, IP_LOCK_AFTER)
        return ok

    def login_succeeded(self, username: str, source_ip: str | None) -> None:
        # the address counter is not cleared: one good account must not launder an attack
        self.throttle.succeed(self._keys(username, source_ip)[0])

    # --- TOTP enrolment ---------------------------------------------------------------------
    def enrol_totp(self, username: str) -> str:
        """Start (or restart) enrolment; returns the base32 secret to show once."""
        secret = totp.new_secret()
        self.store.totp_put(username, self.sealer.seal(username, secret), confirmed=False)
        return secret

    def confirm_totp(self, username: str, code: str, source_ip: str | None) -> bool:
        if self.check_totp(username, code, source_ip, confirmed_only=False):
            self.store.totp_confirm(username)
            return True
        return False
