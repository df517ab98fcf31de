"""Password verifiers with PBKDF2-HMAC-SM3 (RFC 8018 §5.2), GB/T 39786 §8.4 a).

Stored as a self-describing PHC-style string::

    $pbkdf2-sm3$i=600000$<salt, base64 no padding>$<hash, base64 no padding>

Passwords are NFC-normalised and UTF-8 encoded before hashing (RFC 8265 OpaqueString
keeps the code points; NFC makes visually identical input compare equal). The comparison is
constant time. :func:`needs_rehash` tells the caller to re-hash after a successful login
when the policy's iteration count has grown.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
import unicodedata

from . import sm3
from .constants import (
    PBKDF2_DEFAULT_ITERATIONS,
    PBKDF2_HASH_BYTES,
    PBKDF2_MIN_ITERATIONS,
    PBKDF2_SALT_BYTES,
)
from .errors import InvalidPassword, MalformedInput

__all__ = ["SCHEME", "hash_password", "needs_rehash", "verify_password"]

SCHEME = "pbkdf2-sm3"
_MAX_ITERATIONS = 10_000_000  # refuse verifiers that would pin a CPU for many seconds
_MAX_PASSWORD_CHARS = 4096
_FORMAT = re.compile(
    r"^\$pbkdf2-sm3\$i=(?P<i>[1-9][0-9]{0,8})\$(?P<salt>[A-Za-z0-9+/]{11,88})"
    r"\$(?P<hash>[A-Za-z0-9+/]{43,88})$"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedInput("bad base64 in password verifier") from None


def _encode_password(password: str) -> bytes:
    if not isinstance(password, str):
        raise MalformedInput("password must be str")
    if len(password) > _MAX_PASSWORD_CHARS:
        raise MalformedInput("password too long")
    return unicodedata.normalize("NFC", password).encode("utf-8")


def hash_password(password: str, *, iterations: int = PBKDF2_DEFAULT_ITERATIONS) -> str:
    """A new verifier string with a random 128-bit salt."""
    if not PBKDF2_MIN_ITERATIONS <= iterations <= _MAX_ITERATIONS:
        raise MalformedInput(
            f"iterations must be in [{PBKDF2_MIN_ITERATIONS}, {_MAX_ITERATIONS}]"
        )
    salt = secrets.token_bytes(PBKDF2_SALT_BYTES)
    digest = sm3.pbkdf2(_encode_password(password), salt, iterations, PBKDF2_HASH_BYTES)
    return f"${SCHEME}$i={iterations}${_b64(salt)}${_b64(digest)}"


def _parse(encoded: str) -> tuple[int, bytes, bytes]:
    match = _FORMAT.match(encoded) if isinstance(encoded, str) else None
    if match is None:
        raise MalformedInput("not a $pbkdf2-sm3$ password verifier")
    iterations = int(match["i"])
    if not PBKDF2_MIN_ITERATIONS <= iterations <= _MAX_ITERATIONS:
        raise MalformedInput("verifier iteration count outside the accepted range")
    salt, digest = _unb64(match["salt"]), _unb64(match["hash"])
    if len(salt) < 8 or len(digest) < PBKDF2_HASH_BYTES:
        raise MalformedInput("verifier salt or hash too short")
    return iterations, salt, digest


def verify_password(password: str, encoded: str) -> None:
    """Return if ``password`` matches; raise :class:`InvalidPassword` if not and
    :class:`MalformedInput` if ``encoded`` is not a valid verifier."""
    iterations, salt, digest = _parse(encoded)
    candidate = sm3.pbkdf2(_encode_password(password), salt, iterations, len(digest))
    if not hmac.compare_digest(candidate, digest):
        raise InvalidPassword("password does not match")


def needs_rehash(encoded: str, *, iterations: int = PBKDF2_DEFAULT_ITERATIONS) -> bool:
    """True if the verifier is weaker than the current policy."""
    current, salt, _ = _parse(encoded)
    return current < iterations or len(salt) < PBKDF2_SALT_BYTES
