"""SM2 public-key cryptography (GB/T 32918.1-5-2016, GM/T 0003, GM/T 0009).

The safe layer: keys, sign/verify with a distinguishing identifier, encrypt/decrypt, and the
key, signature and ciphertext encodings. Every private-key operation and every scalar
multiplication runs in OpenSSL 3 (:mod:`._openssl`); this module only validates and
re-encodes bytes, so it contains no elliptic-curve arithmetic except the public on-curve
check of GB/T 32918.1 §6.2.

Encodings:

* signatures: DER ``SEQUENCE { r INTEGER, s INTEGER }`` (GM/T 0009 §7.3, what OpenSSL
  emits) or raw ``r || s`` (64 bytes, as in JWS);
* ciphertexts: DER ``SEQUENCE { x, y, hash OCTET STRING, ciphertext OCTET STRING }``
  (GM/T 0009 §7.2, C1C3C2, what OpenSSL 3 emits), raw ``04 || x || y || C3 || C2``
  (GB/T 32918.4-2016 order), and — read only — the legacy ``04 || x || y || C2 || C3``;
* keys: PKCS#8 / SubjectPublicKeyInfo with ``id-ecPublicKey`` + the ``sm2`` curve OID, as
  ``openssl genpkey -algorithm SM2`` writes them.
"""

from __future__ import annotations

import hmac as _std_hmac
from enum import StrEnum
from typing import Final

from . import _der, _openssl, _pem
from . import sm3 as _sm3
from .constants import MAX_ONESHOT_BYTES, SM2_DEFAULT_ID, SM2_MAX_ID_BYTES
from .errors import InvalidSignature, InvalidTag, MalformedInput

__all__ = [
    "DEFAULT_ID",
    "CiphertextFormat",
    "SM2PrivateKey",
    "SM2PublicKey",
    "SignatureEncoding",
    "ciphertext_from_der",
    "ciphertext_to_der",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "signature_from_der",
    "signature_to_der",
]

DEFAULT_ID: Final[bytes] = SM2_DEFAULT_ID

# Recommended curve parameters, GB/T 32918.5-2017 §A (sm2p256v1).
P: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B: Final = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX: Final = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY: Final = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

OID_EC_PUBLIC_KEY: Final = "1.2.840.10045.2.1"
OID_SM2_CURVE: Final = "1.2.156.10197.1.301"
OID_SM2_SM3_SIGNATURE: Final = "1.2.156.10197.1.501"

_ALG_ID: Final = _der.sequence(_der.oid(OID_EC_PUBLIC_KEY), _der.oid(OID_SM2_CURVE))
_COORD: Final = 32
_SM3_LEN: Final = 32


class SignatureEncoding(StrEnum):
    DER = "der"  # GM/T 0009 §7.3 SM2Signature, OpenSSL's output
    RAW = "raw"  # r || s, 32 bytes each (JWS style)


class CiphertextFormat(StrEnum):
    DER = "der"  # GM/T 0009 §7.2 SM2Cipher (C1C3C2), OpenSSL 3's output
    C1C3C2 = "c1c3c2"  # 04 || x || y || C3 || C2, GB/T 32918.4-2016
    C1C2C3 = "c1c2c3"  # 04 || x || y || C2 || C3, pre-2016 order; read only


# --------------------------------------------------------------------------- helpers


def _ident(id: bytes | str) -> bytes:
    ident = id.encode("utf-8") if isinstance(id, str) else bytes(id)
    if len(ident) > SM2_MAX_ID_BYTES:
        raise MalformedInput(f"SM2 identifier longer than {SM2_MAX_ID_BYTES} bytes")
    return ident


def _check_point(x: int, y: int) -> None:
    """GB/T 32918.1 §6.2.1 public key validation (cofactor 1: on the curve suffices)."""
    if not (0 <= x < P and 0 <= y < P):
        raise MalformedInput("point coordinate out of range")
    if (y * y - (x * x * x + A * x + B)) % P:
        raise MalformedInput("point is not on the SM2 curve")


def _decode_point(data: bytes) -> tuple[int, int]:
    if len(data) != 1 + 2 * _COORD or data[0] != 0x04:
        raise MalformedInput("expected an uncompressed SM2 point (04 || x || y)")
    x = int.from_bytes(data[1 : 1 + _COORD], "big")
    y = int.from_bytes(data[1 + _COORD :], "big")
    _check_point(x, y)
    return x, y


def _encode_point(x: int, y: int) -> bytes:
    return b"\x04" + x.to_bytes(_COORD, "big") + y.to_bytes(_COORD, "big")


def _spki(x: int, y: int) -> bytes:
    return _der.sequence(_ALG_ID, _der.bit_string(_encode_point(x, y)))


def _check_key_algorithm(alg: _der.Element) -> None:
    """Accept id-ecPublicKey with the sm2 curve, or the bare sm2 OID some GmSSL builds use."""
    parts = alg.expect(_der.SEQUENCE, "AlgorithmIdentifier").children()
    if not parts:
        raise MalformedInput("empty AlgorithmIdentifier")
    algo = _der.decode_oid(parts[0])
    params = _der.decode_oid(parts[1]) if len(parts) == 2 else None
    if len(parts) > 2:
        raise MalformedInput("bad AlgorithmIdentifier")
    if algo == OID_EC_PUBLIC_KEY and params == OID_SM2_CURVE:
        return
    if algo == OID_SM2_CURVE and params in (None, OID_SM2_CURVE):
        return
    raise MalformedInput(f"not an SM2 key (algorithm {algo}, parameters {params})")


# --------------------------------------------------------------------------- signatures


def signature_from_der(signature: bytes) -> tuple[int, int]:
    """Strictly parse a DER SM2 signature; r and s must lie in [1, n-1] (GB/T 32918.2 §7.1)."""
    parts = _der.read_sequence(signature, "SM2 signature")
    if len(parts) != 2:
        raise MalformedInput("SM2 signature must hold exactly r and s")
    r, s = (_der.decode_integer(p) for p in parts)
    _check_rs(r, s)
    return r, s


def signature_to_der(r: int, s: int) -> bytes:
    _check_rs(r, s)
    return _der.sequence(_der.integer(r), _der.integer(s))


def _check_rs(r: int, s: int) -> None:
    if not (1 <= r < N and 1 <= s < N):
        raise MalformedInput("signature r or s outside [1, n-1]")


def _raw_to_rs(signature: bytes) -> tuple[int, int]:
    if len(signature) != 2 * _COORD:
        raise MalformedInput("raw SM2 signature must be 64 bytes (r || s)")
    r = int.from_bytes(signature[:_COORD], "big")
    s = int.from_bytes(signature[_COORD:], "big")
    _check_rs(r, s)
    return r, s


# --------------------------------------------------------------------------- ciphertexts


def ciphertext_to_der(ciphertext: bytes, fmt: CiphertextFormat | str) -> bytes:
    """Convert any supported SM2 ciphertext encoding to GM/T 0009 DER, validating C1."""
    fmt = CiphertextFormat(fmt)
    if not isinstance(ciphertext, bytes | bytearray):
        raise MalformedInput("ciphertext must be bytes")
    ciphertext = bytes(ciphertext)
    if fmt is CiphertextFormat.DER:
        x, y, c3, c2 = _parse_der_ciphertext(ciphertext)
    else:
        head = 1 + 2 * _COORD
        if len(ciphertext) < head + _SM3_LEN + 1:
            raise MalformedInput("SM2 ciphertext too short")
        x, y = _decode_point(ciphertext[:head])
        if fmt is CiphertextFormat.C1C3C2:
            c3, c2 = ciphertext[head : head + _SM3_LEN], ciphertext[head + _SM3_LEN :]
        else:
            c2, c3 = ciphertext[head:-_SM3_LEN], ciphertext[-_SM3_LEN:]
    return _der.sequence(
        _der.integer(x), _der.integer(y), _der.octet_string(c3), _der.octet_string(c2)
    )


def ciphertext_from_der(der: bytes, fmt: CiphertextFormat | str) -> bytes:
    """Re-encode a DER SM2 ciphertext as ``fmt`` (DER or raw C1C3C2; C1C2C3 is refused)."""
    fmt = CiphertextFormat(fmt)
    if fmt is CiphertextFormat.DER:
        return der
    if fmt is CiphertextFormat.C1C2C3:
        raise MalformedInput("C1C2C3 is accepted for reading only; write C1C3C2")
    x, y, c3, c2 = _parse_der_ciphertext(der)
    return _encode_point(x, y) + c3 + c2


def _parse_der_ciphertext(der: bytes) -> tuple[int, int, bytes, bytes]:
    parts = _der.read_sequence(der, "SM2 ciphertext")
    if len(parts) != 4:
        raise MalformedInput("SM2 ciphertext must hold x, y, hash and ciphertext")
    x, y = _der.decode_integer(parts[0]), _der.decode_integer(parts[1])
    c3, c2 = _der.decode_octet_string(parts[2]), _der.decode_octet_string(parts[3])
    _check_point(x, y)
    if len(c3) != _SM3_LEN:
        raise MalformedInput("SM2 ciphertext hash (C3) must be 32 bytes")
    if not c2:
        raise MalformedInput("SM2 ciphertext has an empty C2")
    return x, y, c3, c2


# --------------------------------------------------------------------------- keys


class SM2PublicKey:
    """An SM2 public key on the recommended curve. Immutable; safe to share across threads."""

    __slots__ = ("_pkey", "_x", "_y")

    def __init__(self, pkey: _openssl.PKey, x: int, y: int) -> None:
        self._pkey = pkey
        self._x = x
        self._y = y

    # -- construction
    @classmethod
    def from_numbers(cls, x: int, y: int) -> SM2PublicKey:
        _check_point(x, y)
        return cls(_openssl.load_public_der(_spki(x, y)), x, y)

    @classmethod
    def from_point(cls, point: bytes) -> SM2PublicKey:
        """From the uncompressed point ``04 || x || y``."""
        return cls.from_numbers(*_decode_point(bytes(point)))

    @classmethod
    def from_der(cls, der: bytes) -> SM2PublicKey:
        """From a DER SubjectPublicKeyInfo."""
        parts = _der.read_sequence(der, "SubjectPublicKeyInfo")
        if len(parts) != 2:
            raise MalformedInput("bad SubjectPublicKeyInfo")
        _check_key_algorithm(parts[0])
        return cls.from_point(_der.decode_bit_string(parts[1]))

    @classmethod
    def from_pem(cls, pem: bytes | str) -> SM2PublicKey:
        return cls.from_der(_pem.decode(pem, ("PUBLIC KEY",))[1])

    # -- inspection / export
    @property
    def x(self) -> int:
        return self._x

    @property
    def y(self) -> int:
        return self._y

    def to_point(self) -> bytes:
        return _encode_point(self._x, self._y)

    def to_der(self) -> bytes:
        return _spki(self._x, self._y)

    def to_pem(self) -> bytes:
        return _pem.encode("PUBLIC KEY", self.to_der())

    def fingerprint(self) -> bytes:
        """SM3 of the DER SubjectPublicKeyInfo: a stable key identifier."""
        return _sm3.digest(self.to_der())

    def z_value(self, id: bytes | str = DEFAULT_ID) -> bytes:
        """Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A), GB/T 32918.2 §5.5."""
        ident = _ident(id)
        parts = [(len(ident) * 8).to_bytes(2, "big"), ident]
        parts += [v.to_bytes(_COORD, "big") for v in (A, B, GX, GY, self._x, self._y)]
        return _sm3.digest(b"".join(parts))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SM2PublicKey) and (self._x, self._y) == (other._x, other._y)

    def __hash__(self) -> int:
        return hash((self._x, self._y))

    def __repr__(self) -> str:
        return f"<SM2PublicKey {self.fingerprint()[:8].hex()}>"

    # -- operations
    def verify(self, signature: bytes, data: bytes, *, id: bytes | str = DEFAULT_ID,
               encoding: SignatureEncoding | str = SignatureEncoding.DER) -> None:
        """Verify an SM2 signature over ``data`` (GB/T 32918.2 §7).

        Raises :class:`MalformedInput` for a signature that is not a well-formed encoding
        with r, s in [1, n-1], and :class:`InvalidSignature` for one that does not verify.
        """
        if not isinstance(signature, bytes | bytearray):
            raise MalformedInput("signature must be bytes")
        enc = SignatureEncoding(encoding)
        if enc is SignatureEncoding.RAW:
            r, s = _raw_to_rs(bytes(signature))
            der = signature_to_der(r, s)
        else:
            signature_from_der(bytes(signature))
            der = bytes(signature)
        if not _openssl.sm2_verify(self._pkey, _ident(id), der, data):
            raise InvalidSignature("SM2 signature does not verify")

    def encrypt(self, plaintext: bytes,
                format: CiphertextFormat | str = CiphertextFormat.DER) -> bytes:
        """SM2 encryption (GB/T 32918.4 §6.1) with a fresh random k drawn by OpenSSL."""
        if not plaintext:
            raise MalformedInput("SM2 cannot encrypt an empty message")
        if len(plaintext) > MAX_ONESHOT_BYTES:
            raise MalformedInput("message too large for SM2; use envelope.seal")
        return ciphertext_from_der(_openssl.sm2_encrypt(self._pkey, plaintext), format)


class SM2PrivateKey:
    """An SM2 private key. The scalar lives in OpenSSL memory; export only on request."""

    __slots__ = ("_pkey", "_public")

    def __init__(self, pkey: _openssl.PKey) -> None:
        self._pkey = pkey
        _, x, y = _parse_ec_private_key(_openssl.export_private_der(pkey))
        if x is None or y is None:  # require_public=True already guarantees this
            raise MalformedInput("ECPrivateKey without public key")
        self._public = SM2PublicKey(_openssl.load_public_der(_spki(x, y)), x, y)

    # -- construction
    @classmethod
    def generate(cls) -> SM2PrivateKey:
        """A fresh key from OpenSSL's DRBG (GB/T 32918.1 §6.1)."""
        return cls(_openssl.generate_sm2())

    @classmethod
    def from_private_value(cls, d: int) -> SM2PrivateKey:
        """From the scalar d in [1, n-2] (GB/T 32918.1 §6.1: 1 + d must be invertible)."""
        if not 1 <= d <= N - 2:
            raise MalformedInput("SM2 private value outside [1, n-2]")
        raw = d.to_bytes(_COORD, "big")
        point = _openssl.sm2_public_point(raw)
        inner = _der.sequence(
            _der.integer(1),
            _der.octet_string(raw),
            _der.explicit(0, _der.oid(OID_SM2_CURVE)),
            _der.explicit(1, _der.bit_string(point)),
        )
        return cls(_openssl.load_private_der(inner))

    @classmethod
    def from_private_bytes(cls, d: bytes) -> SM2PrivateKey:
        if len(d) != _COORD:
            raise MalformedInput("SM2 private key must be 32 bytes")
        return cls.from_private_value(int.from_bytes(d, "big"))

    @classmethod
    def from_der(cls, der: bytes) -> SM2PrivateKey:
        """From DER PKCS#8 (RFC 5208) or RFC 5915 ECPrivateKey; unencrypted."""
        parts = _der.read_sequence(der, "private key")
        # PKCS#8 has an AlgorithmIdentifier SEQUENCE second; RFC 5915 has an OCTET STRING.
        if len(parts) >= 3 and parts[1].tag == _der.SEQUENCE:
            if _der.decode_integer(parts[0]) not in (0, 1):
                raise MalformedInput("unsupported PKCS#8 version")
            _check_key_algorithm(parts[1])
            inner = _der.decode_octet_string(parts[2])
        else:
            inner = der
        d, x, y = _parse_ec_private_key(inner, require_public=False)
        key = cls.from_private_value(d)
        if x is not None and (x, y) != (key._public.x, key._public.y):
            raise MalformedInput("embedded public key does not match the private key")
        return key

    @classmethod
    def from_pem(cls, pem: bytes | str) -> SM2PrivateKey:
        label, der = _pem.decode(
            pem, ("PRIVATE KEY", "EC PRIVATE KEY", "SM2 PRIVATE KEY", "ENCRYPTED PRIVATE KEY")
        )
        if label == "ENCRYPTED PRIVATE KEY":
            raise MalformedInput(
                "password-encrypted PEM keys are not supported; use the ztgw keystore"
            )
        return cls.from_der(der)

    # -- export
    def public_key(self) -> SM2PublicKey:
        return self._public

    def private_bytes(self) -> bytes:
        """The 32-byte scalar. Handle as a secret: for the keystore and tests only."""
        d, _, _ = _parse_ec_private_key(_openssl.export_private_der(self._pkey))
        return d.to_bytes(_COORD, "big")

    def to_der(self) -> bytes:
        """Unencrypted PKCS#8 as OpenSSL 3 writes it."""
        d = int.from_bytes(self.private_bytes(), "big")
        inner = _der.sequence(
            _der.integer(1),
            _der.octet_string(d.to_bytes(_COORD, "big")),
            _der.explicit(1, _der.bit_string(self._public.to_point())),
        )
        return _der.sequence(_der.integer(0), _ALG_ID, _der.octet_string(inner))

    def to_pem(self) -> bytes:
        return _pem.encode("PRIVATE KEY", self.to_der())

    def __repr__(self) -> str:
        return f"<SM2PrivateKey for {self._public.fingerprint()[:8].hex()}>"

    # -- operations
    def sign(self, data: bytes, *, id: bytes | str = DEFAULT_ID,
             encoding: SignatureEncoding | str = SignatureEncoding.DER) -> bytes:
        """SM2 signature of ``data`` with Z computed from ``id`` (GB/T 32918.2 §6.1).

        k comes from OpenSSL's DRBG for every signature.
        """
        der = _openssl.sm2_sign(self._pkey, _ident(id), data)
        if SignatureEncoding(encoding) is SignatureEncoding.RAW:
            r, s = signature_from_der(der)
            return r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big")
        return der

    def decrypt(self, ciphertext: bytes,
                format: CiphertextFormat | str = CiphertextFormat.DER) -> bytes:
        """SM2 decryption (GB/T 32918.4 §7.1).

        :class:`MalformedInput` for an unparsable ciphertext or a C1 not on the curve;
        :class:`InvalidTag` when C3 does not match (wrong key or modified data).
        """
        der = ciphertext_to_der(ciphertext, format)
        plaintext = _openssl.sm2_decrypt(self._pkey, der)
        if plaintext is None:
            raise InvalidTag("SM2 decryption failed: C3 mismatch (wrong key or modified data)")
        return plaintext


def _parse_ec_private_key(
    der: bytes, *, require_public: bool = True
) -> tuple[int, int | None, int | None]:
    """RFC 5915 ECPrivateKey → (d, x, y); the curve, if named, must be sm2."""
    parts = _der.read_sequence(der, "ECPrivateKey")
    if len(parts) < 2 or _der.decode_integer(parts[0]) != 1:
        raise MalformedInput("bad ECPrivateKey")
    raw = _der.decode_octet_string(parts[1])
    if len(raw) > _COORD or not raw:
        raise MalformedInput("bad SM2 private value length")
    d = int.from_bytes(raw, "big")
    x = y = None
    for extra in parts[2:]:
        if extra.tag == 0xA0:
            params = extra.children()
            if len(params) != 1 or _der.decode_oid(params[0]) != OID_SM2_CURVE:
                raise MalformedInput("EC private key is not on the SM2 curve")
        elif extra.tag == 0xA1:
            inner = extra.children()
            if len(inner) != 1:
                raise MalformedInput("bad ECPrivateKey public key")
            x, y = _decode_point(_der.decode_bit_string(inner[0]))
        else:
            raise MalformedInput("unexpected field in ECPrivateKey")
    if require_public and x is None:
        raise MalformedInput("ECPrivateKey without public key")
    return d, x, y


# --------------------------------------------------------------------------- module API


def generate_key() -> SM2PrivateKey:
    """A fresh SM2 key pair."""
    return SM2PrivateKey.generate()


def load_private_key(data: bytes | str) -> SM2PrivateKey:
    """Load a PEM (PKCS#8 / EC PRIVATE KEY) or DER private key."""
    if isinstance(data, str) or bytes(data).lstrip().startswith(b"-----"):
        return SM2PrivateKey.from_pem(data)
    return SM2PrivateKey.from_der(bytes(data))


def load_public_key(data: bytes | str) -> SM2PublicKey:
    """Load a PEM or DER SubjectPublicKeyInfo, or a raw ``04 || x || y`` point."""
    if isinstance(data, str) or bytes(data).lstrip().startswith(b"-----"):
        return SM2PublicKey.from_pem(data)
    raw = bytes(data)
    if len(raw) == 1 + 2 * _COORD and raw[0] == 0x04:
        return SM2PublicKey.from_point(raw)
    return SM2PublicKey.from_der(raw)


def same_public_key(a: SM2PublicKey, b: SM2PublicKey) -> bool:
    """Constant-time comparison of two public keys' encodings."""
    return _std_hmac.compare_digest(a.to_point(), b.to_point())
