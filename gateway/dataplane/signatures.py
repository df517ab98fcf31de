"""AK/SK request signatures with SM2 (GB/T 32918.2), for systems that call data APIs without
an OAuth client — common between government back ends.

An application registers an SM2 public key (``ztgw apikeys add``) and signs every request::

    Authorization: ZTGW-SM2-SM3 keyId=<id>,timestamp=<unix seconds>,nonce=<16-64 hex>,signature=<base64 DER>

over the string to sign (lines joined by ``\\n``)::

    ZTGW-SM2-SM3
    <METHOD>
    <canonical path>
    <query: parameters sorted by name then value, each k=v percent-encoded (RFC 3986), joined by &>
    <hex SM3 of the body>
    <timestamp>
    <nonce>
    <keyId>

with the default SM2 identifier ``1234567812345678``.  A timestamp more than 300 s away, a
nonce already seen for that key, an unknown or disabled key, or a signature that does not verify
are all 401.  The server holds only public keys: a stolen database forges nothing.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import sqlalchemy as sa

from ztgw.crypto import sm2, sm3
from ztgw.crypto.errors import CryptoError

from ..identity.directory import Directory, metadata

SCHEME = "ZTGW-SM2-SM3"
MAX_SKEW = 300  # seconds between the client's clock and ours
_PARAM = re.compile(r'\s*([A-Za-z]+)="?([^",]*)"?\s*(?:,|$)')
_NONCE = re.compile(r"^[0-9a-fA-F]{16,64}$")
_KEY_ID = re.compile(r"^ak-[0-9a-f]{16}$")

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("public_key_pem", sa.Text, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.String(40), nullable=False),
)


class SignatureRejected(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    client_id: str
    public_key: sm2.SM2PublicKey
    enabled: bool


def canonical_query(params: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params))


def string_to_sign(method: str, path: str, params: list[tuple[str, str]], body: bytes,
                   timestamp: str, nonce: str, key_id: str) -> bytes:
    return "\n".join([SCHEME, method.upper(), path, canonical_query(params),
                      sm3.digest(body).hex(), timestamp, nonce, key_id]).encode("utf-8")


def sign_request(key: sm2.SM2PrivateKey, key_id: str, method: str, path: str,
                 params: list[tuple[str, str]], body: bytes = b"",
                 timestamp: int | None = None, nonce: str | None = None) -> str:
    """The Authorization header value for a request (the client side, for SDKs and tests)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(16)
    sig = key.sign(string_to_sign(method, path, params, body, ts, nonce, key_id))
    return (f"{SCHEME} keyId={key_id},timestamp={ts},nonce={nonce},"
            f"signature={base64.b64encode(sig).decode()}")


class ApiKeyStore:
    def __init__(self, directory: Directory) -> None:
        self.engine = directory.engine
        metadata.create_all(self.engine)
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    def add(self, client_id: str, public_key_pem: bytes) -> str:
        sm2.load_public_key(public_key_pem)  # refuse anything that is not an SM2 public key
        key_id = f"ak-{secrets.token_hex(8)}"
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert().values(
                key_id=key_id, client_id=client_id, public_key_pem=public_key_pem.decode("ascii"),
                enabled=True, created_at=datetime.now(UTC).isoformat(timespec="seconds")))
        return key_id

    def disable(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            n = conn.execute(api_keys.update().where(api_keys.c.key_id == key_id)
                             .values(enabled=False)).rowcount
        self._cache.pop(key_id, None)
        return bool(n)

    def list(self) -> list[dict[str, object]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                sa.select(api_keys.c.key_id, api_keys.c.client_id, api_keys.c.enabled,
                          api_keys.c.created_at).order_by(api_keys.c.created_at)).mappings()]

    def get(self, key_id: str) -> ApiKey | None:
        now = time.monotonic()
        hit = self._cache.get(key_id)
        if hit is not None and hit[0] > now:  # 1 s: a disabled key stops within a second
            return hit[1]
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)
                             ).mappings().first()
        key = None if r is None else ApiKey(r["key_id"], r["client_id"],
                                            sm2.load_public_key(r["public_key_pem"].encode()),
                                            bool(r["enabled"]))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key_id] = (now + 1.0, key)
        return key


class NonceCache:
    """Nonces seen within the skew window, per key: a replay inside the window is refused."""

    def __init__(self, window: float = 2 * MAX_SKEW, max_entries: int = 1_000_000) -> None:
        self.window, self.max_entries = window, max_entries
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, key_id: str, nonce: str) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now - self.window:
                self._seen.popitem(last=False)
            if (key_id, nonce) in self._seen:
                return False
            if len(self._seen) >= self.max_entries:
                return False  # full: refuse rather than forget (fail closed)
            self._seen[(key_id, nonce)] = now
            return True


class SignatureVerifier:
    def __init__(self, store: ApiKeyStore, nonces: NonceCache | None = None) -> None:
        self.store, self.nonces = store, nonces or NonceCache()

    def verify(self, header: str, method: str, path: str, params: list[tuple[str, str]],
               body: bytes) -> ApiKey:
        fields = dict(_PARAM.findall(header.removeprefix(SCHEME)))
        key_id, ts, nonce, sig = (fields.get(k, "") for k in
                                  ("keyId", "timestamp", "nonce", "signature"))
        if not (_KEY_ID.match(key_id) and ts.isdigit() and _NONCE.match(nonce) and sig):
            raise SignatureRejected("malformed", "malformed signature authorization header")
        if abs(time.time() - int(ts)) > MAX_SKEW:
            raise SignatureRejected("stale", "the request timestamp is outside the allowed window")
        key = self.store.get(key_id)
        if key is None or not key.enabled:
            raise SignatureRejected("unknown_key", "unknown or disabled access key")
        try:
            der = base64.b64decode(sig, validate=True)
            key.public_key.verify(der, string_to_sign(method, path, params, body, ts, nonce, key_id))
        except (binascii.Error, ValueError, CryptoError) as exc:
            raise SignatureRejected("bad_signature", "the request signature does not verify") from exc
        # only a verified request may consume a nonce (else anyone could burn a client's nonces)
        if not self.nonces.first_use(key_id, nonce):
            raise SignatureRejected("replay", "this request was already received (replay)")
        return key
