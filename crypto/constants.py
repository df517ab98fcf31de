"""Security-relevant constants of ztgw.crypto, in one visible place, each with its reason."""

from __future__ import annotations

from typing import Final

#: GM/T 0009-2012 §10 / GB/T 35276-2017: the default SM2 distinguishing identifier when the
#: parties agreed on none. OpenSSL 3 has *no* default: pass ``distid:1234567812345678``.
SM2_DEFAULT_ID: Final[bytes] = b"1234567812345678"

#: GB/T 32918.2 §5.5: ENTL is a 16-bit bit length, so the identifier is < 8192 bytes;
#: OpenSSL 3 refuses id_len >= 65535 // 8, so 8190 is the longest that interoperates.
SM2_MAX_ID_BYTES: Final[int] = 8190

#: SM4 block and key size in bytes (GB/T 32907).
SM4_KEY_BYTES: Final[int] = 16
SM4_BLOCK_BYTES: Final[int] = 16

#: GCM nonce: 96 bits random (NIST SP 800-38D §8.2.2 RBG construction); with random nonces a
#: key must encrypt fewer than 2**32 messages — the keystore rotates data keys well before.
GCM_NONCE_BYTES: Final[int] = 12
#: Full 128-bit tags only; truncated tags weaken forgery resistance (SP 800-38D App. C).
GCM_TAG_BYTES: Final[int] = 16

#: PBKDF2-HMAC-SM3 for stored password verifiers. 600,000 mirrors the OWASP 2023 figure for
#: PBKDF2-HMAC-SHA256 (SM3 costs about the same per block); the minimum refuses weak verifiers.
PBKDF2_DEFAULT_ITERATIONS: Final[int] = 600_000
PBKDF2_MIN_ITERATIONS: Final[int] = 100_000
PBKDF2_SALT_BYTES: Final[int] = 16
PBKDF2_HASH_BYTES: Final[int] = 32

#: HMAC keys shorter than the SM3 output weaken HMAC-SM3 (RFC 2104 §3; RFC 8725 §3.5).
HMAC_MIN_KEY_BYTES: Final[int] = 16

#: Upper bound for one-shot in-memory operations; larger inputs must use the streaming APIs.
MAX_ONESHOT_BYTES: Final[int] = 64 * 1024 * 1024

#: FF1 (NIST SP 800-38G): the domain radix**minlen must be >= 1,000,000 (SP 800-38G Rev. 1
#: §5.2); the maximum length keeps the Feistel numerals bounded.
FF1_MIN_DOMAIN: Final[int] = 1_000_000
FF1_MAX_LEN: Final[int] = 256

#: JOSE algorithms ztgw signs and verifies (RFC 8725 §3.1/§3.2); never "none", never HS*
#: for tokens that cross a trust boundary.
JWS_ALGORITHMS: Final[frozenset[str]] = frozenset(
    {"SM2SM3", "ES256", "RS256", "EdDSA", "Ed25519"}
)
