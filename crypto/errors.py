"""The error tree of ztgw.crypto.

Foreign errors (OpenSSL, cryptography, joserfc) are translated into these in one place per
module, so callers never see a backend's exception type. Verification failures have their own
branch, so malformed input is never mistaken for forged data::

    CryptoError
    ├── MalformedInput        (also ValueError) bad encoding, invalid point, out-of-range r/s
    ├── VerificationFailed    the input was well formed but did not authenticate
    │   ├── InvalidSignature  SM2 / JWS signature does not match
    │   ├── InvalidTag        AEAD tag or SM2 C3 check failed: wrong key, AAD or tampering
    │   ├── InvalidCertificate  chain does not verify (signature, validity, CA rules, usage)
    │   ├── InvalidClaims     JWT signature fine, claims not (expired, wrong iss/aud/typ)
    │   └── InvalidPassword   password does not match its verifier
    ├── KeyNotFound           (also LookupError) no key with that id in the key set / store
    ├── UnsupportedAlgorithm  algorithm not allowed here (RFC 8725 §3.1 allow-lists)
    └── BackendUnavailable    the native library is missing or too old
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
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


class CryptoError(Exception):
    """Base class of every error raised by ztgw.crypto."""


class MalformedInput(CryptoError, ValueError):
    """Input that is not a well-formed key, signature, ciphertext or encoding.

    Raised *before* any secret-dependent computation; it says nothing about authenticity.
    """


class VerificationFailed(CryptoError):
    """Well-formed input that failed cryptographic verification (possible tampering)."""


class InvalidSignature(VerificationFailed):
    """The signature does not verify under this key, identifier and message."""


class InvalidTag(VerificationFailed):
    """Authenticated decryption failed: wrong key, wrong AAD, or modified ciphertext."""


class InvalidCertificate(VerificationFailed):
    """A certificate or chain failed validation; the message says which rule."""


class InvalidClaims(VerificationFailed):
    """A JWT whose signature verified but whose claims are not acceptable."""


class InvalidPassword(VerificationFailed):
    """The password does not match the stored verifier."""


class KeyNotFound(CryptoError, LookupError):
    """No key with the requested identifier."""


class UnsupportedAlgorithm(CryptoError):
    """The algorithm is unknown or not on the allow-list for this call or key."""


class BackendUnavailable(CryptoError):
    """The native cryptographic library could not be loaded or lacks a needed algorithm."""
