"""Keys of the data-protection layer, derived from one secret under ``HOME/keys``.

``HOME/keys/protection.key`` holds 32 random bytes (hex, mode 0600), created on first use.
Every purpose gets its own sub-key, HMAC-SM3(master, label), so a pseudonym key can never
be used to forge a watermark and rotating one purpose is a label change.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from ztgw.crypto import sm3

__all__ = ["KEY_FILE", "ProtectionKeys"]

KEY_FILE = "protection.key"
_MASTER_BYTES = 32  # 256-bit secret: HMAC-SM3 keys are used at full strength


@dataclass(frozen=True, slots=True)
class ProtectionKeys:
    """Purpose-bound keys. ``repr`` never shows key material."""

    master: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.master) < 16:
            raise ValueError("the protection master key must be at least 128 bits")

    def derive(self, label: str, length: int = 32) -> bytes:
        out = sm3.hmac(self.master, b"ztgw-protection/" + label.encode("utf-8"))
        return out[:length]

    @property
    def pseudonym(self) -> bytes:
        return self.derive("pseudonym")

    @property
    def token(self) -> bytes:
        return self.derive("ff1-sm4", 16)  # SM4 key for FF1 tokens

    @property
    def noise(self) -> bytes:
        return self.derive("noise")

    @property
    def watermark(self) -> bytes:
        return self.derive("watermark")

    @property
    def audit_subject(self) -> bytes:
        """Key of the record/data-subject pseudonyms in access events (dataplane/auditpath.py)."""
        return self.derive("audit-subject")

    @classmethod
    def load_or_create(cls, keys_dir: Path) -> ProtectionKeys:
        """Read ``keys_dir/protection.key``; create it (0600, folder 0700) if missing."""
        path = keys_dir / KEY_FILE
        if not path.exists():
            keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another worker won the race: use its key
                pass
            else:
                with os.fdopen(fd, "w", encoding="ascii") as fh:
                    fh.write(secrets.token_bytes(_MASTER_BYTES).hex())
        text = path.read_text(encoding="ascii").strip()
        try:
            master = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"{path} does not hold a hex key") from None
        return cls(master)
