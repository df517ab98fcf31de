"""Device posture from a signed header: the ``device`` of the policy environment (issue 7).

A device-trust service the city already runs (terminal management, EDR, the zero-trust client
agent) attests the state of the device a request comes from, the way BeyondCorp-style access
proxies take device claims from an endpoint agent.  Its statement travels with the request:

``X-Device-Posture: <base64url(JSON)>.<base64url(SM2 signature, DER)>``

signed with the attester's SM2 key (GB/T 32918, default user id) over the ASCII of the first
part.  The JSON::

    {"iss": "edr", "sub": "<client_id or user id the statement is for>", "device": "<id>",
     "posture": "managed", "iat": 1763780000, "exp": 1763780300}

The gateway trusts only the attesters it is configured with (name → SM2 public key) and takes
the posture only if the signature verifies, the statement is fresh (``iat`` not in the
future, ``exp`` not past, at most :data:`MAX_LIFETIME` long) and it is **bound to the caller**
(``sub`` is the token's client or user), so a statement cannot be replayed by someone else.
Anything else leaves the device unknown (``None``): rules with ``device_in`` then do not
match — fail closed — and the access event says why (``ztgw.device.error``).  The header is
never forwarded upstream (the forwarding allow-list does not name it).
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from ztgw.crypto.sm2 import SM2PublicKey

HEADER = "x-device-posture"
MAX_HEADER_BYTES = 4096
MAX_LIFETIME = 900  # seconds a statement may cover: posture changes, statements must be fresh
SKEW = 30
_VALUE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class PostureInvalid(ValueError):
    """The statement is not acceptable; the message is a short reason code (safe to audit)."""


@dataclass(frozen=True, slots=True)
class Posture:
    attester: str
    device: str
    posture: str
    expires_at: int


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PostureVerifier:
    def __init__(self, attesters: dict[str, SM2PublicKey]) -> None:
        self.attesters = dict(attesters)

    @classmethod
    def from_files(cls, attesters: dict[str, Path]) -> PostureVerifier:
        """Attester name → PEM file of its SM2 public key; a bad file stops the start."""
        keys = {}
        for name, path in attesters.items():
            if not _VALUE.match(name):
                raise ValueError(f"device attester name {name!r} is not a plain name")
            try:
                keys[name] = SM2PublicKey.from_pem(Path(path).read_bytes())
            except (OSError, ValueError) as exc:
                raise ValueError(f"device attester {name}: cannot read an SM2 public key from "
                                 f"{path}: {exc}") from exc
        return cls(keys)

    def verify(self, value: str, *, bound_to: tuple[str, ...], now: float | None = None) -> Posture:
        if len(value) > MAX_HEADER_BYTES:
            raise PostureInvalid("too_large")
        payload, dot, sig = value.partition(".")
        if not dot or not payload or not sig or "." in sig:
            raise PostureInvalid("malformed")
        try:
            raw = _unb64(payload)
            signature = _unb64(sig)
            claims = orjson.loads(raw)
        except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
            raise PostureInvalid("malformed") from exc
        if not isinstance(claims, dict):
            raise PostureInvalid("malformed")
        key = self.attesters.get(claims.get("iss")) if isinstance(claims.get("iss"), str) else None
        if key is None:
            raise PostureInvalid("unknown_attester")
        try:
            key.verify(signature, payload.encode("ascii"))
        except Exception as exc:  # InvalidSignature, a malformed DER signature …
            raise PostureInvalid("bad_signature") from exc
        t = time.time() if now is None else now
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or exp <= iat:
            raise PostureInvalid("malformed")
        if iat - SKEW > t:
            raise PostureInvalid("not_yet_valid")
        if exp + SKEW <= t:
            raise PostureInvalid("expired")
        if exp - iat > MAX_LIFETIME:
            raise PostureInvalid("lifetime_too_long")
        if claims.get("sub") not in bound_to:
            raise PostureInvalid("not_for_this_caller")
        device, posture = claims.get("device"), claims.get("posture")
        if not isinstance(device, str) or not isinstance(posture, str) \
                or not _VALUE.match(device) or not _VALUE.match(posture):
            raise PostureInvalid("malformed")
        return Posture(claims["iss"], device, posture, exp)
