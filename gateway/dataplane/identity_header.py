"""The identity the gateway vouches for, passed upstream in a header the upstream can verify.

``X-ZTGW-Identity: <base64url(JSON)>.<base64url(HMAC-SM3(key, base64url(JSON)))>``

The JSON names the subject, the application, the request id, the decision's rule and an issue
time; the key is shared with the upstream (``HOME/keys/upstream-identity.key``).  An upstream
verifies it with :func:`verify_identity_header` and refuses requests that did not come through
the gateway.  Any client-supplied header of that name is removed before forwarding.
"""

from __future__ import annotations

import base64
import hmac
import time
from pathlib import Path
from typing import Any

import orjson

from ..keyfiles import load_or_create_secret

HEADER = "x-ztgw-identity"
KEY_FILE = "upstream-identity.key"
MAX_AGE = 30  # seconds an upstream should accept a header for


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(keys_dir: Path) -> bytes:
    return load_or_create_secret(keys_dir / KEY_FILE)


def sign_identity(key: bytes, claims: dict[str, Any]) -> str:
    payload = _b64(orjson.dumps({**claims, "iat": int(time.time())}))
    mac = hmac.new(key, payload.encode("ascii"), "sm3").digest()
    return f"{payload}.{_b64(mac)}"


def verify_identity_header(key: bytes, value: str, max_age: int = MAX_AGE) -> dict[str, Any] | None:
    """The claims if the header is authentic and fresh, else None (constant-time MAC check)."""
    payload, _, mac = value.partition(".")
    if not payload or not mac:
        return None
    expected = hmac.new(key, payload.encode("ascii", "replace"), "sm3").digest()
    try:
        given = _unb64(mac)
        if not hmac.compare_digest(expected, given):
            return None
        claims = orjson.loads(_unb64(payload))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(claims, dict) or abs(time.time() - int(claims.get("iat", 0))) > max_age:
        return None
    return claims
