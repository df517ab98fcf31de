"""TOTP second factor (RFC 6238 over RFC 4226 HOTP, SHA-1, 6 digits, 30 s steps).

The shared secret is sealed with SM4-GCM under a key derived from the server pepper before it
is stored, and each accepted time step is recorded so a code cannot be replayed (RFC 6238 §5.2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote

from ztgw.crypto import sm4

STEP = 30
DIGITS = 6
WINDOW = 1  # accept one step of clock drift either way (RFC 6238 §5.2)
SECRET_BYTES = 20  # 160 bits, RFC 4226 §4 R6


def new_secret() -> str:
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def _key(secret_b32: str) -> bytes:
    return base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8), casefold=True)


def hotp(secret_b32: str, counter: int) -> str:
    mac = hmac.new(_key(secret_b32), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def current_step(at: float | None = None) -> int:
    return int((time.time() if at is None else at) // STEP)


def code_at(secret_b32: str, at: float | None = None) -> str:
    return hotp(secret_b32, current_step(at))


def match_step(secret_b32: str, code: str, at: float | None = None) -> int | None:
    """The time step ``code`` belongs to, or None.  Every candidate is compared in constant time."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    step = current_step(at)
    found = None
    for s in range(step - WINDOW, step + WINDOW + 1):
        if hmac.compare_digest(hotp(secret_b32, s), code):
            found = s
    return found


def provisioning_uri(secret_b32: str, username: str, issuer_name: str = "ztgw") -> str:
    return (f"otpauth://totp/{quote(issuer_name)}:{quote(username)}?secret={secret_b32}"
            f"&issuer={quote(issuer_name)}&algorithm=SHA1&digits={DIGITS}&period={STEP}")


class SecretSealer:
    """SM4-GCM sealing of TOTP secrets, bound to the user name as associated data."""

    def __init__(self, pepper: bytes) -> None:
        self._key = hmac.new(pepper, b"ztgw totp sealing key", "sm3").digest()[:16]

    def seal(self, username: str, secret_b32: str) -> str:
        sealed = sm4.gcm_encrypt(self._key, secret_b32.encode("ascii"), username.encode("utf-8"))
        return base64.b64encode(sealed).decode("ascii")

    def open(self, username: str, sealed: str) -> str:
        return sm4.gcm_decrypt(self._key, base64.b64decode(sealed), username.encode("utf-8")).decode()
