"""Token-signing keys: a JWKS on disk, one active key per algorithm, rotation-ready.

Private keys live in ``HOME/keys/signing.jwks.json`` (mode 0600).  Each key carries
``kid``/``alg``/``use``; verification accepts every key in the set, signing uses the newest
key of the requested algorithm (RFC 7517; rotation keeps retired keys verify-only).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

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
        return data
    return dict(key.as_dict(private=private))


def _from_dict(data: dict[str, Any]) -> SigningJWK:
    if data.get("kty") == "EC" and data.get("crv") == "SM2":
        parsed = SM2JWK.from_dict(data)
        params = {k: v for k, v in data.items() if k in ("kid", "use", "alg", "iat")}
        assert parsed.private_key is not None
        return SM2JWK(parsed.private_key, params)
    return KeySet.import_key_set({"keys": [data]}).keys[0]  # type: ignore[no-any-return]


def _generate(alg: str) -> SigningJWK:
    params = {"alg": alg, "use": "sig", "iat": int(time.time())}
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


class KeyRing:
    def __init__(self, keys: list[SigningJWK]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self._keys = keys
        self.keyset = KeySet(list(keys))
        self._public = {"keys": [_to_dict(k, private=False) for k in keys]}
        self._signing: dict[str, SigningJWK] = {}
        for k in keys:  # the newest key of each algorithm signs
            cur = self._signing.get(str(k.alg))
            if cur is None or int(k.get("iat", 0) or 0) >= int(cur.get("iat", 0) or 0):
                self._signing[str(k.alg)] = k

    @classmethod
    def load_or_create(cls, keys_dir: Path, algs: tuple[str, ...] = DEFAULT_ALGS) -> KeyRing:
        files = {False: keys_dir / SIGNING_FILE, True: keys_dir / SM2_SIGNING_FILE}
        keys: list[SigningJWK] = []
        misplaced = False  # an SM2 key in the standard file (homes made before the split)
        for is_sm2, path in files.items():
            if path.exists():
                data = json.loads(path.read_text(encoding="utf-8"))
                loaded = [_from_dict(k) for k in data["keys"]]
                misplaced |= any(isinstance(k, SM2JWK) != is_sm2 for k in loaded)
                keys.extend(loaded)
        missing = [a for a in algs if not any(k.alg == a for k in keys)]
        if missing or misplaced:
            keys.extend(_generate(a) for a in missing)
            for is_sm2, path in files.items():
                part = [k for k in keys if isinstance(k, SM2JWK) == is_sm2]
                if part:
                    _write_private(path, {"keys": [_to_dict(k, private=True) for k in part]})
        return cls(keys)

    @classmethod
    def _save(cls, keys_dir: Path, keys: list[SigningJWK]) -> None:
        for is_sm2, name in ((False, SIGNING_FILE), (True, SM2_SIGNING_FILE)):
            part = [k for k in keys if isinstance(k, SM2JWK) == is_sm2]
            if part:
                _write_private(keys_dir / name, {"keys": [_to_dict(k, private=True) for k in part]})

    @classmethod
    def rotate(cls, keys_dir: Path, alg: str) -> str:
        """Add a new key for ``alg``; it signs from the next start of each worker, and every
        older key keeps verifying (and stays in the JWKS) until retired (RFC 7517 §5)."""
        ring = cls.load_or_create(keys_dir)
        key = _generate(canonical_alg(alg))
        # on an equal ``iat`` the later key in the file wins (see __init__), so it signs
        cls._save(keys_dir, [*ring._keys, key])
        return str(key.kid)

    @classmethod
    def retire(cls, keys_dir: Path, kid: str) -> None:
        """Remove a key: tokens it signed stop verifying.  The newest key of an algorithm
        (the one signing) cannot be retired."""
        ring = cls.load_or_create(keys_dir)
        target = [k for k in ring._keys if k.kid == kid]
        if not target:
            raise KeyError(f"no key {kid}")
        if ring._signing.get(str(target[0].alg)) is target[0]:
            raise ValueError(f"{kid} is the signing key for {target[0].alg}; rotate first")
        cls._save(keys_dir, [k for k in ring._keys if k.kid != kid])

    def describe(self) -> list[dict[str, Any]]:
        return [{"kid": k.kid, "alg": k.alg, "iat": k.get("iat"),
                 "signing": self._signing.get(str(k.alg)) is k} for k in self._keys]

    def signing_key(self, alg: str) -> SigningJWK:
        key = self._signing.get(canonical_alg(alg))
        if key is None:
            raise KeyError(f"no signing key for {alg}")
        return key

    @property
    def algorithms(self) -> list[str]:
        return sorted({str(k.alg) for k in self._keys})

    def public_jwks(self, include_sm2: bool = True) -> dict[str, Any]:
        if include_sm2:
            return self._public
        return {"keys": [k for k in self._public["keys"] if k.get("crv") != "SM2"]}
