"""Token-signing keys: a JWKS on disk, one active key per algorithm, rotation-ready.

Private keys live in ``HOME/keys/signing.jwks.json`` (mode 0600).  Each key carries
``kid``/``alg``/``use``; verification accepts every key in the set, signing uses the newest
key of the requested algorithm (RFC 7517; rotation keeps retired keys verify-only).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, KeySet, RSAKey

SIGNING_FILE = "signing.jwks.json"
# Access tokens default to ES256 (fast to verify); RS256 is kept because OIDC Discovery
# requires it for ID tokens.  SM2 joins through ztgw.crypto's JOSE registry.
DEFAULT_ALGS = ("ES256", "RS256")


def _generate(alg: str) -> ECKey | RSAKey:
    params = {"alg": alg, "use": "sig", "iat": int(time.time())}
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
    def __init__(self, keys: list[ECKey | RSAKey]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self._keys = keys
        self.keyset = KeySet(list(keys))
        self._public = {"keys": [k.as_dict(private=False) for k in keys]}

    @classmethod
    def load_or_create(cls, keys_dir: Path, algs: tuple[str, ...] = DEFAULT_ALGS) -> KeyRing:
        path = keys_dir / SIGNING_FILE
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            keys = [KeySet.import_key_set({"keys": [k]}).keys[0] for k in data["keys"]]
            missing = [a for a in algs if not any(k.alg == a for k in keys)]
            if not missing:
                return cls(keys)  # type: ignore[arg-type]
            keys.extend(_generate(a) for a in missing)
        else:
            keys = [_generate(a) for a in algs]
        _write_private(path, {"keys": [k.as_dict(private=True) for k in keys]})
        return cls(keys)  # type: ignore[arg-type]

    def signing_key(self, alg: str) -> ECKey | RSAKey:
        candidates = [k for k in self._keys if k.alg == alg]
        if not candidates:
            raise KeyError(f"no signing key for {alg}")
        return max(candidates, key=lambda k: int(k.get("iat", 0) or 0))

    @property
    def algorithms(self) -> list[str]:
        return sorted({str(k.alg) for k in self._keys})

    def public_jwks(self) -> dict[str, Any]:
        return self._public
