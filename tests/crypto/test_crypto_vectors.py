"""Standard example vectors (files under tests/vectors/, provenance in each file)."""

from __future__ import annotations

import hashlib

import crypto_reference_sm2 as ref
import pytest
from crypto_vectors import load

from ztgw.crypto import _der, sm2, sm3, sm4

SM3_VECTORS = load("sm3/gbt32905.txt")
SM4_VECTORS = load("sm4/gbt32907.txt")
SM4_MODES = load("sm4/modes.txt")
SM2_SIGN = load("sm2/sign.txt")
SM2_ENC = load("sm2/encrypt.txt")


@pytest.mark.parametrize("v", SM3_VECTORS, ids=lambda v: f"sm3-{v['COUNT']}")
def test_sm3_gbt32905(v: dict[str, str]) -> None:
    msg = bytes.fromhex(v["MSG"])
    assert sm3.digest(msg).hex() == v["DIGEST"]
    h = sm3.SM3()
    for i in range(0, len(msg), 7):
        h.update(msg[i : i + 7])
    assert h.hexdigest() == v["DIGEST"]
    # hashlib's SM3 (also OpenSSL) agrees
    assert hashlib.new("sm3", msg).hexdigest() == v["DIGEST"]


def _sm4_iterate(v: dict[str, str]) -> bytes:
    key, block = bytes.fromhex(v["KEY"]), bytes.fromhex(v["PLAINTEXT"])
    enc = sm4.SM4Encryptor("ecb", key)
    for _ in range(int(v["ITERATIONS"])):
        block = enc.update(block)
    return block


def test_sm4_gbt32907_single_block() -> None:
    v = SM4_VECTORS[0]
    key, pt = bytes.fromhex(v["KEY"]), bytes.fromhex(v["PLAINTEXT"])
    assert sm4.ecb_encrypt(key, pt).hex() == v["CIPHERTEXT"]
    assert sm4.ecb_decrypt(key, bytes.fromhex(v["CIPHERTEXT"])) == pt


def test_sm4_gbt32907_million_rounds() -> None:
    # ~1 s here, so not marked slow
    v = SM4_VECTORS[1]
    assert int(v["ITERATIONS"]) == 1_000_000
    assert _sm4_iterate(v).hex() == v["CIPHERTEXT"]


@pytest.mark.parametrize("v", SM4_MODES, ids=lambda v: v["MODE"])
def test_sm4_modes(v: dict[str, str]) -> None:
    key, iv = bytes.fromhex(v["KEY"]), bytes.fromhex(v["IV"])
    pt, ct = bytes.fromhex(v["PLAINTEXT"]), bytes.fromhex(v["CIPHERTEXT"])
    if v["MODE"] == "cbc":
        # draft-ribose vectors are unpadded; with PKCS#7 a full padding block follows
        out = sm4.cbc_encrypt(key, iv, pt)
        assert out[: len(ct)] == ct and len(out) == len(ct) + 16
        assert sm4.cbc_decrypt(key, iv, out) == pt
    elif v["MODE"] == "ctr":
        assert sm4.ctr_encrypt(key, iv, pt) == ct
        assert sm4.ctr_decrypt(key, iv, ct) == pt
    else:
        aad, tag = bytes.fromhex(v["AAD"]), bytes.fromhex(v["TAG"])
        sealed = sm4.gcm_encrypt(key, pt, aad, nonce=iv)
        assert sealed == iv + ct + tag
        assert sm4.gcm_decrypt(key, sealed, aad) == pt


@pytest.mark.parametrize("v", SM2_SIGN, ids=lambda v: v["CURVE"])
def test_sm2_sign_vector_reference(v: dict[str, str]) -> None:
    """The fixed-k example is reproduced exactly (test-only reference code)."""
    c = ref.CURVES[v["CURVE"]]
    d, k = int(v["D"], 16), int(v["K"], 16)
    ident, msg = v["ID"].encode(), v["MSG"].encode()
    Q = ref.public(c, d)
    if "ZA" in v:
        assert ref.z_value(c, ident, Q).hex() == v["ZA"]
    r, s = ref.sign(c, d, ident, msg, k)
    assert (r, s) == (int(v["R"], 16), int(v["S"], 16))
    assert ref.verify(c, Q, ident, msg, r, s)


def test_sm2_sign_vector_product() -> None:
    """The recommended-curve example verifies with the product (OpenSSL), and the
    product's own signatures with the example key verify in the reference."""
    (v,) = [v for v in SM2_SIGN if v["CURVE"] == "sm2p256v1"]
    key = sm2.SM2PrivateKey.from_private_value(int(v["D"], 16))
    pub = key.public_key()
    c = ref.CURVES["sm2p256v1"]
    assert (pub.x, pub.y) == ref.public(c, int(v["D"], 16))
    ident, msg = v["ID"].encode(), v["MSG"].encode()
    assert pub.z_value(ident) == ref.z_value(c, ident, (pub.x, pub.y))
    r, s = int(v["R"], 16), int(v["S"], 16)
    pub.verify(sm2.signature_to_der(r, s), msg, id=ident)
    pub.verify(r.to_bytes(32, "big") + s.to_bytes(32, "big"), msg, id=ident, encoding="raw")
    with pytest.raises(sm2.InvalidSignature):
        pub.verify(sm2.signature_to_der(r, s), msg, id=b"ALICE123@YAHOO.COM")
    r2, s2 = sm2.signature_from_der(key.sign(msg, id=ident))
    assert ref.verify(c, (pub.x, pub.y), ident, msg, r2, s2)


@pytest.mark.parametrize("v", SM2_ENC, ids=lambda v: v["CURVE"])
def test_sm2_encrypt_vector_reference(v: dict[str, str]) -> None:
    c = ref.CURVES[v["CURVE"]]
    Q = ref.public(c, int(v["D"], 16))
    x1, y1, c3, c2 = ref.encrypt(c, Q, v["MSG"].encode(), int(v["K"], 16))
    der = _der.sequence(_der.integer(x1), _der.integer(y1), _der.octet_string(c3),
                        _der.octet_string(c2))
    assert der.hex() == v["CIPHERTEXT"]


def test_sm2_encrypt_vector_product() -> None:
    (v,) = [v for v in SM2_ENC if v["CURVE"] == "sm2p256v1"]
    key = sm2.SM2PrivateKey.from_private_value(int(v["D"], 16))
    der = bytes.fromhex(v["CIPHERTEXT"])
    assert key.decrypt(der) == v["MSG"].encode()
    raw = sm2.ciphertext_from_der(der, "c1c3c2")
    assert key.decrypt(raw, "c1c3c2") == v["MSG"].encode()
    legacy = raw[:65] + raw[97:] + raw[65:97]  # C1 || C2 || C3
    assert key.decrypt(legacy, "c1c2c3") == v["MSG"].encode()


def test_sm2_kdf_matches_reference() -> None:
    for n in (1, 31, 32, 33, 100):
        assert sm3.kdf(b"shared secret", n) == ref.kdf(b"shared secret", n)
