"""Consent receipts (授权用数 存证): a JSON statement of one consent, signed with SM2.

The receipt names the consent, the citizen (login name and the masked id number they see), the
application, the dataset, the purpose, the period and when it was issued.  It is signed with the
home's receipt key (SM2 with SM3, GB/T 32918.2, default distinguishing id) over the canonical
JSON of the statement (sorted keys, no spaces, UTF-8), so anyone holding the public key can
check it offline: ``ztgw consent verify RECEIPT [--key PUB.pem]``.

Document shape::

    {"receipt": {...statement...}, "alg": "SM2-with-SM3", "key_id": "<SM3 of the SPKI, hex>",
     "signature": "<base64 DER>"}
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from ztgw.crypto.errors import CryptoError
from ztgw.crypto.sm2 import SM2PrivateKey, SM2PublicKey, generate_key, load_private_key

ALG = "SM2-with-SM3"
KEY_FILE = "consent-receipt-sm2.pem"
PUBLIC_KEY_FILE = "consent-receipt-sm2.pub.pem"
MAX_RECEIPT_BYTES = 64 * 1024


class ReceiptInvalid(Exception):
    """The receipt is malformed or its signature does not verify."""


def canonical(statement: dict[str, Any]) -> bytes:
    return json.dumps(statement, ensure_ascii=False, sort_keys=True,
                      separators=(",", ":")).encode("utf-8")


def load_or_create_receipt_key(keys_dir: Path) -> SM2PrivateKey:
    """The receipt-signing key under ``HOME/keys`` (created 0600, exclusively, on first use)."""
    path = keys_dir / KEY_FILE
    if not path.exists():
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = generate_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(key.to_pem())
                fh.flush()
                os.fsync(fh.fileno())
    key = load_private_key(path.read_bytes())
    pub = keys_dir / PUBLIC_KEY_FILE
    if not pub.exists():
        pub.write_bytes(key.public_key().to_pem())
    return key


class ReceiptSigner:
    def __init__(self, key: SM2PrivateKey) -> None:
        self.key = key
        self.public_key = key.public_key()
        self.key_id = self.public_key.fingerprint().hex()

    def sign(self, statement: dict[str, Any]) -> str:
        signature = self.key.sign(canonical(statement))
        return json.dumps({"receipt": statement, "alg": ALG, "key_id": self.key_id,
                           "signature": base64.b64encode(signature).decode("ascii")},
                          ensure_ascii=False, sort_keys=True)


def verify_receipt(document: str | bytes, public_key: SM2PublicKey) -> dict[str, Any]:
    """The verified statement; raises :class:`ReceiptInvalid` otherwise (never returns a
    statement whose signature did not check)."""
    if len(document) > MAX_RECEIPT_BYTES:
        raise ReceiptInvalid("the receipt is too large")
    try:
        doc = json.loads(document)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReceiptInvalid("the receipt is not JSON") from exc
    if (not isinstance(doc, dict) or not isinstance(doc.get("receipt"), dict)
            or doc.get("alg") != ALG or not isinstance(doc.get("signature"), str)):
        raise ReceiptInvalid("the receipt lacks receipt/alg/signature")
    try:
        signature = base64.b64decode(doc["signature"], validate=True)
        public_key.verify(signature, canonical(doc["receipt"]))
    except (ValueError, CryptoError) as exc:
        raise ReceiptInvalid("the signature does not verify with this key") from exc
    return dict(doc["receipt"])
