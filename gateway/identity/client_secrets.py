"""Client secrets: generated from the CSPRNG, stored only as HMAC-SM3 under a server pepper.

Client secrets are 256-bit random strings, so a keyed hash is the right verifier (a slow
password hash would only slow the token endpoint).  The pepper lives in ``HOME/keys/pepper``
(mode 0600) or in the ``ZTGW_SECRET_PEPPER`` setting.  Comparison is constant-time.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from ..keyfiles import load_or_create_secret

PREFIX = "hmac-sm3$"
PEPPER_FILE = "pepper"


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


def load_or_create_pepper(keys_dir: Path) -> bytes:
    return load_or_create_secret(keys_dir / PEPPER_FILE)


class SecretHasher:
    def __init__(self, pepper: bytes) -> None:
        if len(pepper) < 16:
            raise ValueError("the secret pepper must be at least 128 bits")
        self._pepper = pepper

    def hash(self, secret: str) -> str:
        return PREFIX + hmac.new(self._pepper, secret.encode("utf-8"), "sm3").hexdigest()

    def verify(self, secret: str, stored: str | None) -> bool:
        if not stored or not stored.startswith(PREFIX):
            # still spend the same work, so timing does not tell "no such client"
            hmac.compare_digest(self.hash(secret), PREFIX + "0" * 64)
            return False
        return hmac.compare_digest(self.hash(secret), stored)
