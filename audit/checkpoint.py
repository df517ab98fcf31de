"""SM2-signed checkpoints of the audit chain, kept apart from the events and copied to witnesses.

A checkpoint covers the positions ``seq_from..seq_to`` written since the previous one and
signs: the chain head ``h[seq_to]``, the Merkle root of ``h[seq_from..seq_to]`` and the hash
of the previous checkpoint (so checkpoints form their own chain).  The file
``checkpoints.jsonl`` lives next to the store, not in it, and every line is also appended to
each witness directory (another file system, a mount the gateway cannot rewrite); a store or
checkpoint file rolled back to an older state is then caught by the witness copy.

Signature: SM2 with the default ID (GB/T 32918.2 §6.1) over the canonical JSON of every field
except ``sig``; DER, base64.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from ztgw.crypto import sm3
from ztgw.crypto.errors import CryptoError
from ztgw.crypto.sm2 import SM2PrivateKey, SM2PublicKey, generate_key, load_private_key

from .chain import GENESIS

CHECKPOINT_FILE = "checkpoints.jsonl"
SIGNING_KEY_FILE = "audit-checkpoint-sm2.pem"
PUBLIC_KEY_FILE = "audit-checkpoint-sm2.pub.pem"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq_from: int
    seq_to: int
    head: str  # hex h[seq_to]
    root: str  # hex Merkle root of h[seq_from..seq_to]
    prev: str  # hex SM3 of the previous checkpoint's line (zeros for the first)
    time: str
    key: str  # hex SM3 fingerprint of the signing public key
    sig: str = ""

    def signed_bytes(self) -> bytes:
        body = asdict(self)
        del body["sig"]
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)

    def line(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS) + b"\n"

    def digest(self) -> str:
        return sm3.digest(self.line()).hex()

    @classmethod
    def from_json(cls, raw: bytes) -> Checkpoint:
        data: dict[str, Any] = orjson.loads(raw)
        return cls(
            seq_from=int(data["seq_from"]), seq_to=int(data["seq_to"]), head=str(data["head"]),
            root=str(data["root"]), prev=str(data["prev"]), time=str(data["time"]),
            key=str(data["key"]), sig=str(data["sig"]),
        )

    def verify(self, public: SM2PublicKey) -> bool:
        try:
            public.verify(base64.b64decode(self.sig, validate=True), self.signed_bytes())
        except (CryptoError, ValueError):
            return False
        return True


def load_or_create_signing_key(keys_dir: Path) -> SM2PrivateKey:
    """The checkpoint key under ``HOME/keys/`` (created 0600 on first use)."""
    path = keys_dir / SIGNING_KEY_FILE
    if path.exists():
        return load_private_key(path.read_bytes())
    keys_dir.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.to_pem())
    (keys_dir / PUBLIC_KEY_FILE).write_bytes(key.public_key().to_pem())
    return key


def read_checkpoints(path: Path) -> tuple[list[Checkpoint], list[str]]:
    """Checkpoints in a file, and a description of every line that does not parse."""
    if not path.exists():
        return [], []
    out: list[Checkpoint] = []
    bad: list[str] = []
    for n, raw in enumerate(path.read_bytes().splitlines(), 1):
        if not raw.strip():
            continue
        try:
            out.append(Checkpoint.from_json(raw))
        except (ValueError, KeyError, TypeError):
            bad.append(f"{path}:{n}: not a checkpoint")
    return out, bad


class CheckpointWriter:
    """Signs checkpoints and appends them to the primary file and every witness."""

    def __init__(self, key: SM2PrivateKey, primary: Path, witnesses: Iterable[Path] = ()) -> None:
        self.key = key
        self.public = key.public_key()
        self.fingerprint = self.public.fingerprint().hex()
        self.primary = primary
        self.witnesses = [w / CHECKPOINT_FILE for w in witnesses]
        existing, _ = read_checkpoints(primary)
        self.last: Checkpoint | None = existing[-1] if existing else None
        self.witness_errors = 0

    @property
    def last_seq(self) -> int:
        return self.last.seq_to if self.last else 0

    def write(self, seq_from: int, seq_to: int, head: bytes, root: bytes, when: str) -> Checkpoint:
        cp = Checkpoint(seq_from=seq_from, seq_to=seq_to, head=head.hex(), root=root.hex(),
                        prev=self.last.digest() if self.last else GENESIS.hex(), time=when,
                        key=self.fingerprint)
        sig = base64.b64encode(self.key.sign(cp.signed_bytes())).decode()
        cp = replace(cp, sig=sig)
        _append(self.primary, cp.line())  # the primary copy must succeed
        for witness in self.witnesses:
            try:
                _append(witness, cp.line())
            except OSError:
                self.witness_errors += 1  # reported by health/metrics; the trail goes on
        self.last = cp
        return cp


def _append(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
