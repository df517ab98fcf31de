"""SM4 (GB/T 32907-2016) in ECB, CBC (PKCS#7), CTR and GCM (NIST SP 800-38D, RFC 8998).

OpenSSL does the block cipher through pyca ``cryptography``. Prefer :func:`gcm_encrypt`
/ :func:`gcm_decrypt`: the only mode here that authenticates. ECB exists for standard test
vectors and legacy interop; CBC and CTR for interop with peers that add their own MAC.

One-shot GCM wire format: ``nonce (12) || ciphertext || tag (16)``.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag as _PycaInvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .constants import GCM_NONCE_BYTES, GCM_TAG_BYTES, SM4_BLOCK_BYTES, SM4_KEY_BYTES
from .errors import InvalidTag, MalformedInput

__all__ = [
    "Mode",
    "SM4Decryptor",
    "SM4Encryptor",
    "cbc_decrypt",
    "cbc_encrypt",
    "ctr_decrypt",
    "ctr_encrypt",
    "decrypt_stream",
    "ecb_decrypt",
    "ecb_encrypt",
    "encrypt_stream",
    "gcm_decrypt",
    "gcm_encrypt",
    "generate_key",
]

_CHUNK = 1 << 16


class Mode(StrEnum):
    ECB = "ecb"
    CBC = "cbc"
    CTR = "ctr"
    GCM = "gcm"


def generate_key() -> bytes:
    """A fresh 128-bit SM4 key from the OS CSPRNG."""
    return secrets.token_bytes(SM4_KEY_BYTES)


def _algo(key: bytes) -> algorithms.SM4:
    if not isinstance(key, bytes | bytearray) or len(key) != SM4_KEY_BYTES:
        raise MalformedInput("SM4 key must be 16 bytes")
    return algorithms.SM4(bytes(key))


def _mode(mode: Mode, iv: bytes | None, tag: bytes | None = None) -> modes.Mode:
    if mode is Mode.ECB:
        if iv:
            raise MalformedInput("ECB takes no IV")
        return modes.ECB()  # noqa: S305 - GB/T 32907 vectors and legacy interop only
    if iv is None:
        raise MalformedInput(f"{mode.value.upper()} needs an IV/nonce")
    if mode is Mode.GCM:
        if len(iv) != GCM_NONCE_BYTES:
            raise MalformedInput("GCM nonce must be 12 bytes")
        return modes.GCM(bytes(iv), tag, min_tag_length=GCM_TAG_BYTES)
    if len(iv) != SM4_BLOCK_BYTES:
        raise MalformedInput(f"{mode.value.upper()} IV must be 16 bytes")
    return modes.CBC(bytes(iv)) if mode is Mode.CBC else modes.CTR(bytes(iv))


class SM4Encryptor:
    """Streaming encryption: ``update()`` any number of times, then ``finalize()``.

    CBC pads with PKCS#7 in ``finalize``; ECB requires whole blocks; GCM authenticates
    ``aad`` and exposes the 16-byte ``tag`` after ``finalize``.
    """

    def __init__(self, mode: Mode | str, key: bytes, iv: bytes | None = None,
                 aad: bytes = b"") -> None:
        self.mode = Mode(mode)
        cipher: Any = Cipher(_algo(key), _mode(self.mode, iv))
        self._ctx: Any = cipher.encryptor()  # AEAD context for GCM
        self._padder = padding.PKCS7(128).padder() if self.mode is Mode.CBC else None
        self._ecb_len = 0
        if self.mode is Mode.GCM:
            if aad:
                self._ctx.authenticate_additional_data(aad)
        elif aad:
            raise MalformedInput(f"{self.mode.value.upper()} cannot authenticate AAD; use GCM")
        self.tag: bytes | None = None

    def update(self, data: bytes) -> bytes:
        if self._padder is not None:
            data = self._padder.update(data)
        self._ecb_len += len(data)
        out: bytes = self._ctx.update(data)
        return out

    def finalize(self) -> bytes:
        out: bytes = b""
        if self._padder is not None:
            out = self._ctx.update(self._padder.finalize())
        if self.mode is Mode.ECB and self._ecb_len % SM4_BLOCK_BYTES:
            raise MalformedInput("ECB input must be a multiple of 16 bytes")
        out += self._ctx.finalize()
        if self.mode is Mode.GCM:
            self.tag = self._ctx.tag
        return out


class SM4Decryptor:
    """Streaming decryption.

    For GCM the caller either passes ``tag`` up front or lets the decryptor treat the
    last 16 bytes of the stream as the tag. Plaintext returned by ``update`` is
    **unauthenticated** until ``finalize`` returns without raising :class:`InvalidTag`;
    callers writing to storage must discard the output on failure.
    """

    def __init__(self, mode: Mode | str, key: bytes, iv: bytes | None = None,
                 aad: bytes = b"", tag: bytes | None = None) -> None:
        self.mode = Mode(mode)
        if tag is not None and len(tag) != GCM_TAG_BYTES:
            raise MalformedInput("GCM tag must be 16 bytes")
        self._algo = _algo(key)
        self._iv = iv
        self._tag = tag
        cipher: Any = Cipher(self._algo, _mode(self.mode, iv))
        self._ctx: Any = cipher.decryptor()
        self._unpadder = padding.PKCS7(128).unpadder() if self.mode is Mode.CBC else None
        self._held = b""  # trailing bytes that may be the GCM tag
        self._total = 0
        if self.mode is Mode.GCM:
            if aad:
                self._ctx.authenticate_additional_data(aad)
        elif aad:
            raise MalformedInput(f"{self.mode.value.upper()} cannot authenticate AAD; use GCM")

    def update(self, data: bytes) -> bytes:
        self._total += len(data)
        if self.mode is Mode.GCM and self._tag is None:
            buf = self._held + data
            data, self._held = buf[:-GCM_TAG_BYTES], buf[-GCM_TAG_BYTES:]
        out: bytes = self._ctx.update(data)
        if self._unpadder is not None:
            out = self._unpadder.update(out)
        return out

    def finalize(self) -> bytes:
        if self.mode is Mode.GCM:
            tag = self._tag if self._tag is not None else self._held
            if len(tag) != GCM_TAG_BYTES:
                raise MalformedInput("GCM ciphertext shorter than its tag")
            try:
                return bytes(self._ctx.finalize_with_tag(tag))
            except _PycaInvalidTag:
                raise InvalidTag("SM4-GCM authentication failed") from None
        if self.mode in (Mode.ECB, Mode.CBC) and self._total % SM4_BLOCK_BYTES:
            raise MalformedInput("ciphertext is not a multiple of 16 bytes")
        out: bytes = self._ctx.finalize()
        if self._unpadder is not None:
            try:
                out = self._unpadder.update(out) + self._unpadder.finalize()
            except ValueError:
                # No integrity in CBC: a padding error says "wrong key or modified data".
                raise MalformedInput("bad PKCS#7 padding (wrong key or modified data)") from None
        return out


def _oneshot_encrypt(mode: Mode, key: bytes, iv: bytes | None, data: bytes) -> bytes:
    enc = SM4Encryptor(mode, key, iv)
    return enc.update(data) + enc.finalize()


def _oneshot_decrypt(mode: Mode, key: bytes, iv: bytes | None, data: bytes) -> bytes:
    dec = SM4Decryptor(mode, key, iv)
    return dec.update(data) + dec.finalize()


def ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """Raw SM4-ECB over whole blocks, no padding. For test vectors and legacy interop only."""
    return _oneshot_encrypt(Mode.ECB, key, None, data)


def ecb_decrypt(key: bytes, data: bytes) -> bytes:
    return _oneshot_decrypt(Mode.ECB, key, None, data)


def cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """SM4-CBC with PKCS#7 padding (as ``openssl enc -sm4-cbc``). No integrity."""
    return _oneshot_encrypt(Mode.CBC, key, iv, plaintext)


def cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    return _oneshot_decrypt(Mode.CBC, key, iv, ciphertext)


def ctr_encrypt(key: bytes, nonce: bytes, data: bytes) -> bytes:
    """SM4-CTR with a 16-byte initial counter block. No integrity; never reuse a nonce."""
    return _oneshot_encrypt(Mode.CTR, key, nonce, data)


ctr_decrypt = ctr_encrypt


def gcm_encrypt(key: bytes, plaintext: bytes, aad: bytes = b"",
                nonce: bytes | None = None) -> bytes:
    """SM4-GCM: returns ``nonce || ciphertext || tag``; the nonce is random unless given.

    Pass ``nonce`` only for test vectors or a deterministic counter you manage: a repeated
    (key, nonce) pair destroys GCM's confidentiality and integrity.
    """
    nonce = secrets.token_bytes(GCM_NONCE_BYTES) if nonce is None else nonce
    enc = SM4Encryptor(Mode.GCM, key, nonce, aad)
    body = enc.update(plaintext) + enc.finalize()
    assert enc.tag is not None
    return bytes(nonce) + body + enc.tag


def gcm_decrypt(key: bytes, sealed: bytes, aad: bytes = b"") -> bytes:
    """Inverse of :func:`gcm_encrypt`; raises :class:`InvalidTag` on any tampering."""
    if not isinstance(sealed, bytes | bytearray) or len(sealed) < GCM_NONCE_BYTES + GCM_TAG_BYTES:
        raise MalformedInput("SM4-GCM message shorter than nonce and tag")
    nonce = bytes(sealed[:GCM_NONCE_BYTES])
    tag = bytes(sealed[-GCM_TAG_BYTES:])
    dec = SM4Decryptor(Mode.GCM, key, nonce, aad, tag=tag)
    return dec.update(bytes(sealed[GCM_NONCE_BYTES:-GCM_TAG_BYTES])) + dec.finalize()


def encrypt_stream(src: BinaryIO, dst: BinaryIO, mode: Mode | str, key: bytes,
                   iv: bytes | None = None, aad: bytes = b"") -> bytes | None:
    """Encrypt ``src`` into ``dst`` in 64 KiB chunks; for GCM the tag is appended and returned."""
    enc = SM4Encryptor(mode, key, iv, aad)
    while chunk := src.read(_CHUNK):
        dst.write(enc.update(chunk))
    dst.write(enc.finalize())
    if enc.tag is not None:
        dst.write(enc.tag)
    return enc.tag


def decrypt_stream(src: BinaryIO, dst: BinaryIO, mode: Mode | str, key: bytes,
                   iv: bytes | None = None, aad: bytes = b"") -> None:
    """Decrypt ``src`` into ``dst``. For GCM the stream ends with the tag; on
    :class:`InvalidTag` the bytes already written to ``dst`` must be discarded."""
    dec = SM4Decryptor(mode, key, iv, aad)
    while chunk := src.read(_CHUNK):
        dst.write(dec.update(chunk))
    dst.write(dec.finalize())
