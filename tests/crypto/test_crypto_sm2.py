"""SM2 safe API: keys, encodings and the distinction between bad input and forgery."""

from __future__ import annotations

import pytest

from ztgw.crypto import _der, sm2
from ztgw.crypto.errors import InvalidSignature, InvalidTag, MalformedInput


@pytest.fixture(scope="module")
def key() -> sm2.SM2PrivateKey:
    return sm2.generate_key()


def test_sign_verify_default_and_custom_id(key: sm2.SM2PrivateKey) -> None:
    pub = key.public_key()
    sig = key.sign(b"data")
    pub.verify(sig, b"data")
    pub.verify(sig, b"data", id=sm2.DEFAULT_ID)
    with pytest.raises(InvalidSignature):
        pub.verify(sig, b"data", id="someone-else")
    with pytest.raises(InvalidSignature):
        pub.verify(sig, b"other")
    sig2 = key.sign(b"data", id="用户@机构")
    pub.verify(sig2, b"data", id="用户@机构".encode())
    assert sig != key.sign(b"data")  # fresh k every time


def test_raw_and_der_signatures(key: sm2.SM2PrivateKey) -> None:
    pub = key.public_key()
    raw = key.sign(b"m", encoding="raw")
    assert len(raw) == 64
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    pub.verify(sm2.signature_to_der(r, s), b"m")
    with pytest.raises(MalformedInput):
        pub.verify(raw, b"m")  # raw bytes are not DER
    with pytest.raises(MalformedInput):
        pub.verify(raw[:63], b"m", encoding="raw")


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 1), (1, 0), (sm2.N, 1), (1, sm2.N), (sm2.N + 5, 7)],
)
def test_out_of_range_rs_is_malformed(key: sm2.SM2PrivateKey, r: int, s: int) -> None:
    der = _der.sequence(_der.integer(r), _der.integer(s))
    with pytest.raises(MalformedInput):
        key.public_key().verify(der, b"m")
    raw = r.to_bytes(33, "big")[-32:] + s.to_bytes(33, "big")[-32:]
    if r < 2**256 and s < 2**256 and not (1 <= r < sm2.N and 1 <= s < sm2.N):
        with pytest.raises(MalformedInput):
            key.public_key().verify(raw, b"m", encoding="raw")


def test_non_canonical_der_is_malformed(key: sm2.SM2PrivateKey) -> None:
    sig = key.sign(b"m")
    r, s = sm2.signature_from_der(sig)
    padded = b"\x02\x21\x00" + r.to_bytes(32, "big") if r >> 255 == 0 else None
    if padded is not None:  # non-minimal INTEGER
        body = padded + _der.integer(s)
        with pytest.raises(MalformedInput):
            key.public_key().verify(_der.tlv(0x30, body), b"m")
    with pytest.raises(MalformedInput):
        key.public_key().verify(sig + b"\x00", b"m")  # trailing data
    long_len = b"\x30\x81" + bytes([len(sig) - 2]) + sig[2:]
    with pytest.raises(MalformedInput):
        key.public_key().verify(long_len, b"m")  # non-minimal length
    with pytest.raises(MalformedInput):
        key.public_key().verify(b"", b"m")
    with pytest.raises(MalformedInput):
        key.public_key().verify(_der.sequence(_der.integer(r)), b"m")


def test_invalid_points_rejected() -> None:
    with pytest.raises(MalformedInput):
        sm2.SM2PublicKey.from_numbers(1, 1)
    with pytest.raises(MalformedInput):
        sm2.SM2PublicKey.from_numbers(sm2.P, 0)
    with pytest.raises(MalformedInput):
        sm2.SM2PublicKey.from_point(b"\x02" + bytes(32))
    with pytest.raises(MalformedInput):
        sm2.SM2PublicKey.from_point(b"\x04" + bytes(64))  # (0, 0) is not on the curve
    good = sm2.generate_key().public_key().to_point()
    bad = good[:-1] + bytes([good[-1] ^ 1])
    with pytest.raises(MalformedInput):
        sm2.load_public_key(bad)


def test_key_round_trips(key: sm2.SM2PrivateKey) -> None:
    assert sm2.load_private_key(key.to_pem()).public_key() == key.public_key()
    assert sm2.load_private_key(key.to_der()).private_bytes() == key.private_bytes()
    assert sm2.SM2PrivateKey.from_private_bytes(key.private_bytes()).public_key() == \
        key.public_key()
    pub = key.public_key()
    for data in (pub.to_pem(), pub.to_der(), pub.to_point(), pub.to_pem().decode()):
        assert sm2.load_public_key(data) == pub
    assert pub.fingerprint() == sm2.load_public_key(pub.to_der()).fingerprint()
    assert "PRIVATE" not in repr(key) and key.private_bytes().hex() not in repr(key)


def test_private_key_rejections(key: sm2.SM2PrivateKey) -> None:
    for d in (0, sm2.N - 1, sm2.N, -1):
        with pytest.raises(MalformedInput):
            sm2.SM2PrivateKey.from_private_value(d)
    with pytest.raises(MalformedInput):
        sm2.load_private_key(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
        )
    with pytest.raises(MalformedInput):
        sm2.load_private_key(b"not a key")
    # a PKCS#8 whose embedded public key belongs to another key
    other = sm2.generate_key()
    parts = _der.read_sequence(key.to_der())
    inner = _der.sequence(
        _der.integer(1),
        _der.octet_string(key.private_bytes()),
        _der.explicit(1, _der.bit_string(other.public_key().to_point())),
    )
    forged = _der.sequence(parts[0].encoded, parts[1].encoded, _der.octet_string(inner))
    with pytest.raises(MalformedInput, match="does not match"):
        sm2.load_private_key(forged)


def test_non_sm2_keys_rejected() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p256 = ec.generate_private_key(ec.SECP256R1())
    pem = p256.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    with pytest.raises(MalformedInput):
        sm2.load_private_key(pem)
    pub = p256.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(MalformedInput):
        sm2.load_public_key(pub)


@pytest.mark.parametrize("fmt", ["der", "c1c3c2"])
def test_encrypt_decrypt_formats(key: sm2.SM2PrivateKey, fmt: str) -> None:
    ct = key.public_key().encrypt(b"secret message", format=fmt)
    assert key.decrypt(ct, format=fmt) == b"secret message"
    other = sm2.generate_key()
    with pytest.raises(InvalidTag):
        other.decrypt(ct, format=fmt)


def test_ciphertext_rejections(key: sm2.SM2PrivateKey) -> None:
    pub = key.public_key()
    with pytest.raises(MalformedInput):
        pub.encrypt(b"")
    with pytest.raises(MalformedInput):
        pub.encrypt(b"x", format="c1c2c3")  # legacy order is read-only
    raw = pub.encrypt(b"hello", format="c1c3c2")
    with pytest.raises(MalformedInput):
        key.decrypt(raw[:97], format="c1c3c2")  # no C2
    with pytest.raises(MalformedInput):
        key.decrypt(b"\x05" + raw[1:], format="c1c3c2")
    bad_point = raw[:64] + bytes([raw[64] ^ 1]) + raw[65:]
    with pytest.raises(MalformedInput):
        key.decrypt(bad_point, format="c1c3c2")
    tampered = raw[:-1] + bytes([raw[-1] ^ 1])
    with pytest.raises(InvalidTag):
        key.decrypt(tampered, format="c1c3c2")
    with pytest.raises(MalformedInput):
        key.decrypt(b"\x30\x00")


def test_identifier_too_long(key: sm2.SM2PrivateKey) -> None:
    with pytest.raises(MalformedInput):
        key.sign(b"m", id=b"x" * 8191)
    key.public_key().verify(key.sign(b"m", id=b"x" * 8190), b"m", id=b"x" * 8190)


def test_threads_share_keys_safely(key: sm2.SM2PrivateKey) -> None:
    """Per-thread cached contexts: concurrent use with several identifiers stays correct."""
    from concurrent.futures import ThreadPoolExecutor

    pub = key.public_key()

    def work(n: int) -> int:
        ident = f"user-{n % 3}"
        for i in range(40):
            msg = f"{n}-{i}".encode()
            sig = key.sign(msg, id=ident)
            pub.verify(sig, msg, id=ident)
            with pytest.raises(InvalidSignature):
                pub.verify(sig, msg, id="user-x")
        return n

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert sorted(pool.map(work, range(8))) == list(range(8))


def test_many_identifiers_evict_cleanly(key: sm2.SM2PrivateKey) -> None:
    sigs = [(f"id-{i}", key.sign(b"m", id=f"id-{i}")) for i in range(20)]
    for ident, sig in reversed(sigs):
        key.public_key().verify(sig, b"m", id=ident)


def test_sec1_without_public_key_loads(key: sm2.SM2PrivateKey) -> None:
    sec1 = _der.sequence(_der.integer(1), _der.octet_string(key.private_bytes()),
                         _der.explicit(0, _der.oid(sm2.OID_SM2_CURVE)))
    assert sm2.load_private_key(sec1).public_key() == key.public_key()
    bare = _der.sequence(_der.integer(1), _der.octet_string(key.private_bytes()))
    assert sm2.load_private_key(bare).public_key() == key.public_key()
    wrong_curve = _der.sequence(_der.integer(1), _der.octet_string(key.private_bytes()),
                                _der.explicit(0, _der.oid("1.2.840.10045.3.1.7")))
    with pytest.raises(MalformedInput):
        sm2.load_private_key(wrong_curve)
