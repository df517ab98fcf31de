"""Key store with envelope encryption, rotation and an audit hook (GB/T 39786 §8.4, key
management: keys never stored in clear, every use attributable).

* A **master key** (KEK, 128-bit SM4) comes from a file or an environment variable and is
  never stored by the key store.
* Every **data key** (SM4, HMAC-SM3 or SM2) is stored wrapped with SM4-GCM under the master
  key; the AAD binds the wrapped bytes to the key's id, kind and purpose, so a record cannot
  be relabelled.
* **Rotation**: ``rotate(purpose)`` makes a new key active; the previous one is *retired* —
  it still decrypts and verifies, never encrypts or signs. ``disable`` blocks all use,
  ``destroy`` erases the wrapped material (crypto-shredding).
* **Audit**: every use calls ``on_key_use(event)`` with a dict (no key material, no data).
  The hook runs before the result is returned; if it raises, the operation fails (fail
  closed: an operation that cannot be audited does not happen).

Storage is a narrow seam (:class:`KeyStorage`) with an in-memory and a JSON-file
implementation; a database or an HSM-backed store can replace them.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import os
import re
import secrets
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from . import sm3, sm4
from .constants import SM2_DEFAULT_ID, SM4_KEY_BYTES
from .errors import InvalidTag, KeyNotFound, MalformedInput, UnsupportedAlgorithm
from .ff1 import FF1
from .sm2 import SM2PrivateKey, SM2PublicKey

__all__ = [
    "FileKeyStorage",
    "InMemoryKeyStorage",
    "KeyKind",
    "KeyRecord",
    "KeyStatus",
    "KeyStorage",
    "KeyStore",
    "KeyUseHook",
    "MasterKey",
]

KeyUseHook = Callable[[dict[str, Any]], None]

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_PURPOSE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,39}$")
_BLOB_MAGIC = b"ZK\x01"


class KeyKind(StrEnum):
    SM4 = "sm4"  # SM4-GCM data encryption, FF1-SM4
    HMAC_SM3 = "hmac-sm3"  # pseudonyms, watermark keys, request MACs
    SM2 = "sm2"  # signatures


class KeyStatus(StrEnum):
    ACTIVE = "active"  # encrypts, signs, MACs
    RETIRED = "retired"  # decrypts and verifies only
    DISABLED = "disabled"  # no use at all
    DESTROYED = "destroyed"  # material erased


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _check_name(value: str, what: str) -> str:
    pattern = _PURPOSE if what == "purpose" else _NAME
    if not isinstance(value, str) or not pattern.match(value):
        raise MalformedInput(f"{what} must match {pattern.pattern}")
    return value


# --------------------------------------------------------------------------- master key


class MasterKey:
    """The key-encryption key. 16 bytes; from a file (hex or raw) or an environment variable."""

    __slots__ = ("_key", "kek_id")

    def __init__(self, key: bytes) -> None:
        if len(key) != SM4_KEY_BYTES:
            raise MalformedInput("master key must be 16 bytes (SM4)")
        self._key = bytes(key)
        # Identifies the KEK without revealing it (HMAC-SM3 with a fixed label).
        self.kek_id = sm3.hmac(self._key, b"ztgw-kek-id")[:8].hex()

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(secrets.token_bytes(SM4_KEY_BYTES))

    @classmethod
    def from_hex(cls, text: str) -> MasterKey:
        try:
            return cls(bytes.fromhex(text.strip()))
        except ValueError:
            raise MalformedInput("master key must be 32 hex characters") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> MasterKey:
        """Read 32 hex characters or 16 raw bytes. A world-writable file is refused."""
        p = Path(path)
        if p.stat().st_mode & stat.S_IWOTH:
            raise MalformedInput(f"master key file {p} is world-writable")
        data = p.read_bytes()
        if len(data) == SM4_KEY_BYTES:
            return cls(data)
        return cls.from_hex(data.decode("ascii", "replace"))

    @classmethod
    def from_env(cls, variable: str = "ZTGW_CRYPTO_MASTER_KEY") -> MasterKey:
        value = os.environ.get(variable)
        if not value:
            raise KeyNotFound(f"environment variable {variable} is not set")
        return cls.from_hex(value)

    def to_hex(self) -> str:
        return self._key.hex()

    def wrap(self, material: bytes, aad: bytes) -> bytes:
        return sm4.gcm_encrypt(self._key, material, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        return sm4.gcm_decrypt(self._key, wrapped, aad)

    def __repr__(self) -> str:
        return f"<MasterKey {self.kek_id}>"


# --------------------------------------------------------------------------- storage seam


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key: metadata in clear, material wrapped under the master key."""

    kid: str
    kind: KeyKind
    purpose: str
    status: KeyStatus
    created: str
    kek_id: str
    wrapped: bytes

    def aad(self) -> bytes:
        return f"ztgw-keystore-v1|{self.kid}|{self.kind.value}|{self.purpose}".encode()

    def to_json(self) -> dict[str, str]:
        out = {k: (v.value if isinstance(v, StrEnum) else v) for k, v in asdict(self).items()}
        out["wrapped"] = base64.b64encode(self.wrapped).decode("ascii")
        return out

    @classmethod
    def from_json(cls, data: dict[str, str]) -> KeyRecord:
        try:
            return cls(
                kid=_check_name(data["kid"], "kid"),
                kind=KeyKind(data["kind"]),
                purpose=_check_name(data["purpose"], "purpose"),
                status=KeyStatus(data["status"]),
                created=str(data["created"]),
                kek_id=str(data["kek_id"]),
                wrapped=base64.b64decode(data["wrapped"], validate=True),
            )
        except (KeyError, ValueError, binascii.Error) as exc:
            raise MalformedInput(f"bad key record: {exc}") from None


class KeyStorage(Protocol):
    def load(self) -> list[KeyRecord]: ...

    def save(self, records: Iterable[KeyRecord]) -> None: ...


class InMemoryKeyStorage:
    def __init__(self) -> None:
        self._records: list[KeyRecord] = []

    def load(self) -> list[KeyRecord]:
        return list(self._records)

    def save(self, records: Iterable[KeyRecord]) -> None:
        self._records = list(records)


class FileKeyStorage:
    """JSON file, written atomically (temp file + rename) with mode 0600."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> list[KeyRecord]:
        if not self.path.exists():
            return []
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise MalformedInput(f"key store file is not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise MalformedInput("unsupported key store file")
        return [KeyRecord.from_json(r) for r in doc.get("keys", [])]

    def save(self, records: Iterable[KeyRecord]) -> None:
        doc = {"version": 1, "keys": [r.to_json() for r in records]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keystore-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(doc, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# --------------------------------------------------------------------------- key store


class KeyStore:
    """Envelope-encrypted keys by purpose, with rotation and an audit hook."""

    def __init__(self, master: MasterKey, storage: KeyStorage | None = None,
                 on_key_use: KeyUseHook | None = None) -> None:
        self._master = master
        self._storage: KeyStorage = storage if storage is not None else InMemoryKeyStorage()
        self._hook = on_key_use
        self._lock = threading.RLock()
        self._records: dict[str, KeyRecord] = {r.kid: r for r in self._storage.load()}
        self._cache: dict[str, bytes | SM2PrivateKey] = {}

    # -- audit
    def _audit(self, action: str, record: KeyRecord | None, *, kid: str | None = None,
               outcome: str = "success", reason: str | None = None) -> None:
        if self._hook is None:
            return
        event: dict[str, Any] = {
            "action": action,
            "kid": record.kid if record else kid,
            "kind": record.kind.value if record else None,
            "purpose": record.purpose if record else None,
            "outcome": outcome,
            "timestamp": _now(),
        }
        if reason:
            event["reason"] = reason
        self._hook(event)

    # -- lifecycle
    def create(self, kind: KeyKind | str, purpose: str) -> str:
        """Create a key for ``purpose`` and make it active; the previous one is retired."""
        kind = KeyKind(kind)
        _check_name(purpose, "purpose")
        with self._lock:
            for r in self._records.values():
                if r.purpose == purpose and r.kind is not kind:
                    raise MalformedInput(f"purpose {purpose!r} already holds {r.kind} keys")
            material: bytes
            if kind is KeyKind.SM2:
                material = SM2PrivateKey.generate().private_bytes()
            elif kind is KeyKind.SM4:
                material = sm4.generate_key()
            else:
                material = secrets.token_bytes(32)
            kid = f"{purpose}.{_dt.datetime.now(_dt.UTC):%Y%m%d}.{secrets.token_hex(4)}"
            draft = KeyRecord(kid, kind, purpose, KeyStatus.ACTIVE, _now(),
                              self._master.kek_id, b"")
            record = replace(draft, wrapped=self._master.wrap(material, draft.aad()))
            for r in list(self._records.values()):
                if r.purpose == purpose and r.status is KeyStatus.ACTIVE:
                    self._records[r.kid] = replace(r, status=KeyStatus.RETIRED)
            self._records[kid] = record
            self._persist()
        self._audit("create", record)
        return kid

    def rotate(self, purpose: str) -> str:
        """New active key of the same kind; the old one keeps decrypting/verifying."""
        old = self._record(self.active_kid(purpose))
        kid = self.create(old.kind, purpose)
        self._audit("rotate", self._record(kid))
        return kid

    def set_status(self, kid: str, status: KeyStatus | str) -> None:
        status = KeyStatus(status)
        if status in (KeyStatus.ACTIVE, KeyStatus.DESTROYED):
            raise MalformedInput("use create/rotate to activate and destroy to erase")
        with self._lock:
            record = replace(self._record(kid), status=status)
            self._records[kid] = record
            self._cache.pop(kid, None)
            self._persist()
        self._audit(f"status.{status.value}", record)

    def destroy(self, kid: str) -> None:
        """Erase the wrapped material: data under this key becomes unrecoverable."""
        with self._lock:
            record = replace(self._record(kid), status=KeyStatus.DESTROYED, wrapped=b"")
            self._records[kid] = record
            self._cache.pop(kid, None)
            self._persist()
        self._audit("destroy", record)

    def rewrap(self, new_master: MasterKey) -> None:
        """Re-encrypt every record under a new master key (KEK rotation)."""
        with self._lock:
            fresh: dict[str, KeyRecord] = {}
            for r in self._records.values():
                if r.status is KeyStatus.DESTROYED:
                    fresh[r.kid] = replace(r, kek_id=new_master.kek_id)
                    continue
                material = self._unwrap(r)
                fresh[r.kid] = replace(r, kek_id=new_master.kek_id,
                                       wrapped=new_master.wrap(material, r.aad()))
            self._records = fresh
            self._master = new_master
            self._persist()
        self._audit("rewrap", None, kid="*")

    # -- inspection (metadata only)
    def records(self, purpose: str | None = None) -> list[KeyRecord]:
        with self._lock:
            return [replace(r, wrapped=b"") for r in self._records.values()
                    if purpose is None or r.purpose == purpose]

    def active_kid(self, purpose: str) -> str:
        with self._lock:
            for r in self._records.values():
                if r.purpose == purpose and r.status is KeyStatus.ACTIVE:
                    return r.kid
        raise KeyNotFound(f"no active key for purpose {purpose!r}")

    # -- internals
    def _persist(self) -> None:
        self._storage.save(self._records.values())

    def _record(self, kid: str) -> KeyRecord:
        with self._lock:
            try:
                return self._records[kid]
            except KeyError:
                raise KeyNotFound(f"no key {kid!r}") from None

    def _unwrap(self, record: KeyRecord) -> bytes:
        if record.kek_id != self._master.kek_id:
            raise KeyNotFound(f"key {record.kid} is wrapped under another master key")
        try:
            return self._master.unwrap(record.wrapped, record.aad())
        except (InvalidTag, MalformedInput):
            raise InvalidTag(f"key record {record.kid} failed its integrity check") from None

    def _material(self, kid: str, purpose: str, kind: KeyKind, *, action: str,
                  need_active: bool) -> tuple[KeyRecord, bytes | SM2PrivateKey]:
        record = self._records.get(kid) if isinstance(kid, str) else None
        problem = None
        if record is None:
            problem = "unknown kid"
        elif record.purpose != purpose or record.kind is not kind:
            problem = "key not for this purpose"
        elif record.status in (KeyStatus.DISABLED, KeyStatus.DESTROYED):
            problem = f"key {record.status.value}"
        elif need_active and record.status is not KeyStatus.ACTIVE:
            problem = "key retired: decrypt/verify only"
        if problem is not None:
            self._audit(action, record, kid=kid, outcome="failure", reason=problem)
            raise KeyNotFound(f"{problem}: {kid!r}")
        assert record is not None
        with self._lock:
            cached = self._cache.get(kid)
            if cached is None:
                material = self._unwrap(record)
                cached = SM2PrivateKey.from_private_bytes(material) if kind is KeyKind.SM2 \
                    else material
                self._cache[kid] = cached
        return record, cached

    # -- SM4-GCM
    def encrypt(self, purpose: str, plaintext: bytes, aad: bytes = b"") -> bytes:
        """SM4-GCM under the active key: ``ZK 01 | len(kid) | kid | nonce | ct | tag``."""
        kid = self.active_kid(purpose)
        record, key = self._material(kid, purpose, KeyKind.SM4, action="encrypt",
                                     need_active=True)
        assert isinstance(key, bytes)
        header = _BLOB_MAGIC + bytes([len(kid)]) + kid.encode("ascii")
        out = header + sm4.gcm_encrypt(key, plaintext, header + aad)
        self._audit("encrypt", record)
        return out

    @staticmethod
    def blob_kid(blob: bytes) -> str:
        """The key id a :meth:`encrypt` output names (validated, not trusted)."""
        if len(blob) < 4 or not blob.startswith(_BLOB_MAGIC):
            raise MalformedInput("not a ztgw key-store ciphertext")
        n = blob[3]
        try:
            kid = blob[4 : 4 + n].decode("ascii")
        except UnicodeDecodeError:
            raise MalformedInput("bad kid in ciphertext") from None
        return _check_name(kid, "kid")

    def decrypt(self, purpose: str, blob: bytes, aad: bytes = b"") -> bytes:
        kid = self.blob_kid(blob)
        record, key = self._material(kid, purpose, KeyKind.SM4, action="decrypt",
                                     need_active=False)
        assert isinstance(key, bytes)
        header_len = 4 + len(kid)
        try:
            out = sm4.gcm_decrypt(key, blob[header_len:], blob[:header_len] + aad)
        except (InvalidTag, MalformedInput) as exc:
            self._audit("decrypt", record, outcome="failure", reason=type(exc).__name__)
            raise
        self._audit("decrypt", record)
        return out

    def ff1(self, purpose: str, kid: str | None = None, radix: int = 10) -> tuple[str, FF1]:
        """An FF1-SM4 cipher with the active (or a named) SM4 key of ``purpose``."""
        kid = kid or self.active_kid(purpose)
        record, key = self._material(kid, purpose, KeyKind.SM4, action="ff1",
                                     need_active=False)
        assert isinstance(key, bytes)
        self._audit("ff1", record)
        return kid, FF1(key, radix)

    # -- HMAC-SM3
    def mac(self, purpose: str, data: bytes, kid: str | None = None) -> tuple[str, bytes]:
        """HMAC-SM3 with the active key (or a named one, e.g. to recompute a pseudonym)."""
        kid = kid or self.active_kid(purpose)
        record, key = self._material(kid, purpose, KeyKind.HMAC_SM3, action="mac",
                                     need_active=False)
        assert isinstance(key, bytes)
        tag = sm3.hmac(key, data)
        self._audit("mac", record)
        return kid, tag

    def mac_verify(self, purpose: str, kid: str, data: bytes, tag: bytes) -> None:
        record, key = self._material(kid, purpose, KeyKind.HMAC_SM3, action="mac_verify",
                                     need_active=False)
        assert isinstance(key, bytes)
        try:
            sm3.hmac_verify(key, data, tag)
        except Exception as exc:
            self._audit("mac_verify", record, outcome="failure", reason=type(exc).__name__)
            raise
        self._audit("mac_verify", record)

    # -- SM2
    def sign(self, purpose: str, data: bytes, *, id: bytes | str = SM2_DEFAULT_ID
             ) -> tuple[str, bytes]:
        kid = self.active_kid(purpose)
        record, key = self._material(kid, purpose, KeyKind.SM2, action="sign",
                                     need_active=True)
        assert isinstance(key, SM2PrivateKey)
        sig = key.sign(data, id=id)
        self._audit("sign", record)
        return kid, sig

    def verify(self, purpose: str, kid: str, signature: bytes, data: bytes, *,
               id: bytes | str = SM2_DEFAULT_ID) -> None:
        public = self.public_key(purpose, kid)
        record = self._record(kid)
        try:
            public.verify(signature, data, id=id)
        except Exception as exc:
            self._audit("verify", record, outcome="failure", reason=type(exc).__name__)
            raise
        self._audit("verify", record)

    def public_key(self, purpose: str, kid: str | None = None) -> SM2PublicKey:
        kid = kid or self.active_kid(purpose)
        _, key = self._material(kid, purpose, KeyKind.SM2, action="public_key",
                                need_active=False)
        assert isinstance(key, SM2PrivateKey)
        return key.public_key()

    def private_key(self, purpose: str, kid: str | None = None) -> SM2PrivateKey:
        """Hand out an SM2 private key object (e.g. to a JOSE signer); audited as export."""
        kid = kid or self.active_kid(purpose)
        record, key = self._material(kid, purpose, KeyKind.SM2, action="export",
                                     need_active=False)
        assert isinstance(key, SM2PrivateKey)
        self._audit("export", record)
        return key

    def check_kind(self, purpose: str, kind: KeyKind) -> None:
        record = self._record(self.active_kid(purpose))
        if record.kind is not kind:
            raise UnsupportedAlgorithm(f"purpose {purpose!r} holds {record.kind} keys")
