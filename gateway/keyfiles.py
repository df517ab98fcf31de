"""Small secret key files under ``HOME/keys``: 256 random bits, hex, mode 0600, created once.

One implementation for every purpose-specific secret the gateway keeps on disk (client-secret
pepper, upstream identity-header key, …), so creation is always exclusive (``O_EXCL``: two
processes starting together cannot each write a different key) and never world-readable.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def load_or_create_secret(path: Path, nbytes: int = 32) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: read theirs
        else:
            with os.fdopen(fd, "w", encoding="ascii") as fh:
                fh.write(secrets.token_bytes(nbytes).hex())
                fh.flush()
                os.fsync(fh.fileno())
    return bytes.fromhex(path.read_text(encoding="ascii").strip())
