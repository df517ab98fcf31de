"""ztgw commercial cryptography: SM2 / SM3 / SM4 (GB/T 32918, 32905, 32907).

Safe recipes, one concept per module (see docs/crypto.md)::

    from ztgw.crypto import sm2, sm3, sm4, passwords
    key = sm2.generate_key()
    sig = key.sign(b"checkpoint", id="ztgw-audit")
    key.public_key().verify(sig, b"checkpoint", id="ztgw-audit")   # raises InvalidSignature
    tag = sm3.hmac(secret, b"pseudonym input")
    sealed = sm4.gcm_encrypt(data_key, b"plaintext", aad=b"context")

Modules: ``sm2``, ``sm3``, ``sm4``, ``passwords``, ``ff1``, ``fields``, ``keystore``,
``envelope``, ``x509``, ``jose``, ``cli`` and ``errors``. Nothing here imports the rest of
ztgw; hazardous pieces (``_openssl``, ``_der``, ``_pem``) are private.
"""

from __future__ import annotations

from .errors import (
    CryptoError,
    InvalidCertificate,
    InvalidClaims,
    InvalidPassword,
    InvalidSignature,
    InvalidTag,
    KeyNotFound,
    MalformedInput,
    UnsupportedAlgorithm,
    VerificationFailed,
)

__all__ = [
    "CryptoError",
    "InvalidCertificate",
    "InvalidClaims",
    "InvalidPassword",
    "InvalidSignature",
    "InvalidTag",
    "KeyNotFound",
    "MalformedInput",
    "UnsupportedAlgorithm",
    "VerificationFailed",
]
