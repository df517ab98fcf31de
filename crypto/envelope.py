"""Hybrid envelopes: SM2 key transport + SM4-GCM content encryption (GB/T 32918.4, RFC 8998).

``seal(recipient_public_key, plaintext, aad)`` draws a fresh SM4 key, encrypts it to the
recipient with SM2 (DER C1C3C2) and the content with SM4-GCM. The header — magic, version
and the wrapped key — is part of the GCM AAD, so no field can be swapped. Wire format::

    b"ZE" 0x01 | len(wrapped key) (2 bytes, big-endian) | wrapped key | nonce | ct | tag
"""

from __future__ import annotations

from . import sm4
from .errors import MalformedInput
from .sm2 import SM2PrivateKey, SM2PublicKey

__all__ = ["open_sealed", "seal"]

_MAGIC = b"ZE\x01"


def seal(recipient: SM2PublicKey, plaintext: bytes, aad: bytes = b"") -> bytes:
    content_key = sm4.generate_key()
    wrapped = recipient.encrypt(content_key)
    header = _MAGIC + len(wrapped).to_bytes(2, "big") + wrapped
    return header + sm4.gcm_encrypt(content_key, plaintext, header + aad)


def open_sealed(private_key: SM2PrivateKey, sealed: bytes, aad: bytes = b"") -> bytes:
    """Inverse of :func:`seal`. :class:`MalformedInput` for a bad layout,
    :class:`~ztgw.crypto.errors.InvalidTag` for a wrong key, wrong AAD or any tampering."""
    if len(sealed) < len(_MAGIC) + 2 or not sealed.startswith(_MAGIC):
        raise MalformedInput("not a ztgw SM2 envelope")
    n = int.from_bytes(sealed[3:5], "big")
    header, body = sealed[: 5 + n], sealed[5 + n :]
    if len(header) != 5 + n:
        raise MalformedInput("truncated SM2 envelope")
    content_key = private_key.decrypt(header[5:])
    if len(content_key) != 16:
        raise MalformedInput("envelope content key has the wrong size")
    return sm4.gcm_decrypt(content_key, body, header + aad)
