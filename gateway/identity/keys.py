"""Token-signing keys: a JWKS on disk, one signing key per algorithm, rotation without restart.

Private keys live in ``HOME/keys/signing.jwks.json`` (ES256, RS256) and
``signing-sm2.jwks.json`` (SM2), mode 0600.  Each key carries ``kid``/``alg``/``use``/``iat``
and, once rotation touched it, two private lifecycle members that are never published:

- ``ztgw_sign_after`` — a new key is published in the JWKS at once but signs only from this
  time on (the *publish delay*), so relying parties that cache the JWKS see it before any
  token carries its ``kid`` (RFC 7517; OIDC Core §10.1.1 "signing key rotation");
- ``ztgw_retire_after`` — a superseded key keeps verifying and stays in the JWKS until every
  token it may have signed has expired, then it is retired: no longer trusted, no longer
  published, and removed from the file at the next rotation.

Every process (the gateway, its workers, the CLI) reads the same files and the same clock, so
they agree on which key signs and which keys verify.  A running :class:`KeyRing` re-checks the
files at most every ``RELOAD_INTERVAL`` seconds and applies time-based changes as they fall
due: ``ztgw keys rotate`` takes effect without a restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import structlog
from joserfc.jwk import ECKey, KeySet, RSAKey
from joserfc.util import urlsafe_b64encode

from ztgw.crypto.jose import SM2_ALG, SM2JWK
from ztgw.crypto.sm2 import SM2PrivateKey

SIGNING_FILE = "signing.jwks.json"  # standard JOSE keys: any JOSE tool can read this file
SM2_SIGNING_FILE = "signing-sm2.jwks.json"  # SM2 keys (crv "SM2"), which generic tools refuse
# Access tokens default to ES256 (fast to verify); RS256 is kept because OIDC Discovery
# requires it for ID tokens; SM2 (JOSE alg "SM2SM3", ztgw.crypto.jose) for government clients.
DEFAULT_ALGS = ("ES256", "RS256", SM2_ALG)
ALG_ALIASES = {"SM2": SM2_ALG}  # what operators may type for --id-token-alg

SigningJWK = ECKey | RSAKey | SM2JWK
SIGN_AFTER = "ztgw_sign_after"  # private lifecycle members (never in a public JWKS)
RETIRE_AFTER = "ztgw_retire_after"
LIFECYCLE = (SIGN_AFTER, RETIRE_AFTER)
RELOAD_INTERVAL = 0.5  # seconds between checks of the key files (rotation seen within 1 s)

log = structlog.get_logger("ztgw.identity")


def canonical_alg(alg: str) -> str:
    return ALG_ALIASES.get(alg, alg)


def _sm2_key(private: SM2PrivateKey, params: dict[str, Any]) -> SM2JWK:
    if "kid" not in params:  # RFC 7638-style thumbprint over the public members
        pub = private.public_key()
        members = json.dumps({"crv": "SM2", "kty": "EC", "x": pub.x, "y": pub.y}, sort_keys=True)
        params["kid"] = urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).decode()
    return SM2JWK(private, params)


def _to_dict(key: SigningJWK, private: bool) -> dict[str, Any]:
    if isinstance(key, SM2JWK):
        data = dict(key.dict_value)
        if not private:
            data.pop("d", None)
    else:
        data = dict(key.as_dict(private=private))
    if not private:
        for member in LIFECYCLE:
            data.pop(member, None)
    return data


def _when(key: SigningJWK, member: str) -> int | None:
    value = key.get(member)
    return int(value) if isinstance(value, int | float) else None


def _from_dict(data: dict[str, Any]) -> SigningJWK:
    if data.get("kty") == "EC" and data.get("crv") == "SM2":
        parsed = SM2JWK.from_dict(data)
        params = {k: v for k, v in data.items() if k in ("kid", "use", "alg", "iat", *LIFECYCLE)}
        assert parsed.private_key is not None
        return SM2JWK(parsed.private_key, params)
    return KeySet.import_key_set({"keys": [data]}).keys[0]  # type: ignore[no-any-return]


def _generate(alg: str, sign_after: int | None = None) -> SigningJWK:
    params: dict[str, Any] = {"alg": alg, "use": "sig", "iat": int(time.time())}
    if sign_after is not None:
        params[SIGN_AFTER] = sign_after
    if alg == SM2_ALG:
        return _sm2_key(SM2PrivateKey.generate(), params)
    if alg == "ES256":
        return ECKey.generate_key("P-256", parameters=params, private=True, auto_kid=True)
    if alg == "RS256":
        return RSAKey.generate_key(2048, parameters=params, private=True, auto_kid=True)
    raise ValueError(f"unsupported signing algorithm {alg}")


def _write_private(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_files(keys_dir: Path) -> tuple[list[SigningJWK], bool]:
    keys: list[SigningJWK] = []
    misplaced = False  # an SM2 key in the standard file (homes made before the split)
    for is_sm2, name in ((False, SIGNING_FILE), (True, SM2_SIGNING_FILE)):
        path = keys_dir / name
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            loaded = [_from_dict(k) for k in data["keys"]]
            misplaced |= any(isinstance(k, SM2JWK) != is_sm2 for k in loaded)
            keys.extend(loaded)
    return keys, misplaced


def _stamp(keys_dir: Path | None) -> tuple[Any, ...]:
    if keys_dir is None:
        return ()
    out: list[Any] = []
    for name in (SIGNING_FILE, SM2_SIGNING_FILE):
        try:
            st = (keys_dir / name).stat()
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


class KeyRing:
    """The live key ring.  ``keyset`` (what verifies), ``signing_key(alg)`` and
    ``public_jwks()`` always answer for *now*; ``generation`` changes whenever they change."""

    def __init__(self, keys: list[SigningJWK], keys_dir: Path | None = None) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self._dir = keys_dir
        self._lock = threading.Lock()
        self._stamp = _stamp(keys_dir)
        self._next_check = time.monotonic() + RELOAD_INTERVAL
        self.generation = 0
        self._state: tuple[Any, ...] = ()
        self._keys = keys
        self._apply(keys, time.time())

    def _apply(self, keys: list[SigningJWK], now: float) -> None:
        """Work out, for ``now``, which keys verify (not retired) and which sign (per algorithm
        the live key whose signing started last; a key not yet due never signs)."""
        live = [k for k in keys if (_when(k, RETIRE_AFTER) or now + 1) > now]
        signing: dict[str, SigningJWK] = {}
        start: dict[str, int] = {}
        for k in live:
            begins = _when(k, SIGN_AFTER) or int(k.get("iat", 0) or 0)
            if _when(k, SIGN_AFTER) is not None and begins > now:
                continue  # published, not signing yet
            alg = str(k.alg)
            if alg not in signing or begins >= start[alg]:  # equal: the later in the file wins
                signing[alg], start[alg] = k, begins
        if not live or not signing:
            raise ValueError("no usable signing key")
        state = (tuple(id(k) for k in live), tuple(sorted((a, id(k)) for a, k in signing.items())))
        if state == self._state:
            return
        self._keys, self._live, self._signing, self._state = keys, live, signing, state
        self._keyset = KeySet(list(live))
        self._public = {"keys": [_to_dict(k, private=False) for k in live]}
        self.generation += 1

    def refresh(self, force: bool = False) -> None:
        """Pick up rotation: re-read the files if they changed, apply what fell due.  Cheap
        (a clock read) except every ``RELOAD_INTERVAL``.  A broken file keeps the last keys."""
        t = time.monotonic()
        if not force and t < self._next_check:
            return
        with self._lock:
            if not force and t < self._next_check:
                return
            self._next_check = t + RELOAD_INTERVAL
            keys = self._keys
            stamp = _stamp(self._dir)
            if stamp != self._stamp and self._dir is not None:
                try:
                    keys = _read_files(self._dir)[0]
                    self._stamp = stamp
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.error("signing key files unreadable; keeping the current keys",
                              error=type(exc).__name__)
                    keys = self._keys
            try:
                self._apply(keys, time.time())
            except ValueError:
                log.error("the key files hold no usable signing key; keeping the current keys")

    @classmethod
    def load_or_create(cls, keys_dir: Path, algs: tuple[str, ...] = DEFAULT_ALGS) -> KeyRing:
        keys, misplaced = _read_files(keys_dir)
        missing = [a for a in algs if not any(k.alg == a for k in keys)]
        if missing or misplaced:
            keys.extend(_generate(a) for a in missing)
            cls._save(keys_dir, keys)
        return cls(keys, keys_dir)

    @classmethod
    def _save(cls, keys_dir: Path, keys: list[SigningJWK]) -> None:
        for is_sm2, name in ((False, SIGNING_FILE), (True, SM2_SIGNING_FILE)):
            part = [k for k in keys if isinstance(k, SM2JWK) == is_sm2]
            if part:
                _write_private(keys_dir / name, {"keys": [_to_dict(k, private=True) for k in part]})

    @classmethod
    def rotate(cls, keys_dir: Path, alg: str, publish_delay: int = 0,
               max_token_lifetime: int = 0) -> dict[str, Any]:
        """Add a key for ``alg`` that signs ``publish_delay`` seconds from now; every older key
        of ``alg`` is retired ``max_token_lifetime`` seconds after that (the longest a token it
        signed can live, clock leeway included).  Keys whose retirement has passed are removed
        from the file.  Returns what was done (public facts only)."""
        alg = canonical_alg(alg)
        if alg not in DEFAULT_ALGS:
            raise ValueError(f"unsupported signing algorithm {alg}")
        now = int(time.time())
        ring = cls.load_or_create(keys_dir)
        sign_after = now + max(0, publish_delay)
        retire_at = sign_after + max(0, max_token_lifetime)
        kept: list[SigningJWK] = []
        removed: list[str] = []
        superseded: list[str] = []
        for k in ring._keys:
            retire = _when(k, RETIRE_AFTER)
            if retire is not None and retire <= now:
                removed.append(str(k.kid))
                continue
            if str(k.alg) == alg and (retire is None or retire > retire_at):
                k = _with(k, {RETIRE_AFTER: retire_at})
                superseded.append(str(k.kid))
            kept.append(k)
        key = _generate(alg, sign_after=sign_after)
        cls._save(keys_dir, [*kept, key])
        return {"kid": str(key.kid), "alg": alg, "sign_after": sign_after,
                "superseded": superseded, "retire_after": retire_at, "removed": removed}

    @classmethod
    def retire(cls, keys_dir: Path, kid: str) -> None:
        """Remove a key at once (e.g. it leaked): tokens it signed stop verifying.  The key
        signing now cannot be retired — rotate first."""
        ring = cls.load_or_create(keys_dir)
        target = [k for k in ring._keys if k.kid == kid]
        if not target:
            raise KeyError(f"no key {kid}")
        if ring._signing.get(str(target[0].alg)) is target[0]:
            raise ValueError(f"{kid} is the signing key for {target[0].alg}; rotate first")
        cls._save(keys_dir, [k for k in ring._keys if k.kid != kid])

    def describe(self) -> list[dict[str, Any]]:
        self.refresh()
        now = time.time()
        rows = []
        for k in self._keys:
            sign_after, retire_after = _when(k, SIGN_AFTER), _when(k, RETIRE_AFTER)
            if retire_after is not None and retire_after <= now:
                state = "retired"
            elif self._signing.get(str(k.alg)) is k:
                state = "signing"
            elif sign_after is not None and sign_after > now:
                state = "pending"
            else:
                state = "verify-only"
            rows.append({"kid": k.kid, "alg": k.alg, "iat": k.get("iat"), "state": state,
                         "signing": state == "signing", "sign_after": sign_after,
                         "retire_after": retire_after})
        return rows

    def signing_key(self, alg: str) -> SigningJWK:
        self.refresh()
        key = self._signing.get(canonical_alg(alg))
        if key is None:
            raise KeyError(f"no signing key for {alg}")
        return key

    @property
    def keyset(self) -> KeySet:
        """Every key that verifies now (not retired), pending ones included."""
        self.refresh()
        return self._keyset

    @property
    def algorithms(self) -> list[str]:
        return sorted({str(k.alg) for k in self._live})

    def public_jwks(self, include_sm2: bool = True) -> dict[str, Any]:
        self.refresh()
        if include_sm2:
            return self._public
        return {"keys": [k for k in self._public["keys"] if k.get("crv") != "SM2"]}


def _with(key: SigningJWK, members: dict[str, Any]) -> SigningJWK:
    return _from_dict({**_to_dict(key, private=True), **members})
