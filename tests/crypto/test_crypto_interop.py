"""Cross-checks in both directions with the OpenSSL 3 command line and with gmssl 3.2.2.

gmssl is a *reference only*: it draws nonces from ``random`` (we pass k from ``secrets``),
its constructor's ``lstrip("04")`` corrupts keys starting with 0/4 (we pass x||y without
the 04 prefix), it encodes ciphertexts as x||y||... without the 04 byte, its encrypt
default is C1C2C3 and its decrypt never checks C3.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from crypto_vectors import needs_openssl, openssl
from gmssl import func as gm_func
from gmssl import sm2 as gm_sm2

from ztgw.crypto import sm2, sm3, sm4
from ztgw.crypto.constants import SM2_DEFAULT_ID

DISTID = "distid:" + SM2_DEFAULT_ID.decode()


@pytest.fixture(scope="module")
def key() -> sm2.SM2PrivateKey:
    return sm2.generate_key()


# --------------------------------------------------------------------------- OpenSSL CLI


@needs_openssl
def test_openssl_reads_our_keys_and_we_read_its(tmp_path: Path, key: sm2.SM2PrivateKey) -> None:
    (tmp_path / "k.pem").write_bytes(key.to_pem())
    out = openssl("pkey", "-in", str(tmp_path / "k.pem"), "-pubout").stdout
    assert sm2.load_public_key(out) == key.public_key()
    openssl("genpkey", "-algorithm", "SM2", "-out", str(tmp_path / "o.pem"))
    theirs = sm2.load_private_key((tmp_path / "o.pem").read_bytes())
    pub = openssl("pkey", "-in", str(tmp_path / "o.pem"), "-pubout").stdout
    assert sm2.load_public_key(pub) == theirs.public_key()
    # DER SEC1 too, and our PKCS#8 re-encodes byte-identically to OpenSSL's
    sec1 = openssl("pkey", "-in", str(tmp_path / "o.pem"), "-outform", "DER").stdout
    assert sm2.load_private_key(sec1).public_key() == theirs.public_key()
    pkcs8 = openssl("pkcs8", "-topk8", "-nocrypt", "-in", str(tmp_path / "o.pem"),
                    "-outform", "DER").stdout
    assert theirs.to_der() == pkcs8
    (tmp_path / "p.pem").write_bytes(key.public_key().to_pem())
    text = openssl("pkey", "-pubin", "-in", str(tmp_path / "p.pem"), "-text", "-noout").stdout
    assert b"SM2" in text or b"sm2" in text


@needs_openssl
@pytest.mark.parametrize("ident", [SM2_DEFAULT_ID.decode(), "ALICE123@YAHOO.COM"])
def test_openssl_signatures_both_ways(tmp_path: Path, key: sm2.SM2PrivateKey, ident: str) -> None:
    msg = secrets.token_bytes(100)
    (tmp_path / "m").write_bytes(msg)
    (tmp_path / "k.pem").write_bytes(key.to_pem())
    (tmp_path / "p.pem").write_bytes(key.public_key().to_pem())
    # ours -> openssl
    (tmp_path / "sig").write_bytes(key.sign(msg, id=ident))
    res = openssl("pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey",
                  str(tmp_path / "p.pem"), "-in", str(tmp_path / "m"), "-sigfile",
                  str(tmp_path / "sig"), "-pkeyopt", f"distid:{ident}", check=False)
    assert res.returncode == 0, res.stderr
    # a different identifier must fail in OpenSSL too
    res = openssl("pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey",
                  str(tmp_path / "p.pem"), "-in", str(tmp_path / "m"), "-sigfile",
                  str(tmp_path / "sig"), "-pkeyopt", "distid:other", check=False)
    assert res.returncode != 0
    # openssl -> ours
    openssl("pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey", str(tmp_path / "k.pem"),
            "-in", str(tmp_path / "m"), "-out", str(tmp_path / "osig"), "-pkeyopt",
            f"distid:{ident}")
    key.public_key().verify((tmp_path / "osig").read_bytes(), msg, id=ident)
    with pytest.raises(sm2.InvalidSignature):
        key.public_key().verify((tmp_path / "osig").read_bytes(), msg + b"x", id=ident)


@needs_openssl
def test_openssl_sm2_encryption_both_ways(tmp_path: Path, key: sm2.SM2PrivateKey) -> None:
    msg = secrets.token_bytes(77)
    (tmp_path / "k.pem").write_bytes(key.to_pem())
    (tmp_path / "p.pem").write_bytes(key.public_key().to_pem())
    (tmp_path / "ct").write_bytes(key.public_key().encrypt(msg))
    out = openssl("pkeyutl", "-decrypt", "-inkey", str(tmp_path / "k.pem"), "-in",
                  str(tmp_path / "ct")).stdout
    assert out == msg
    (tmp_path / "m").write_bytes(msg)
    openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", str(tmp_path / "p.pem"), "-in",
            str(tmp_path / "m"), "-out", str(tmp_path / "oct"))
    assert key.decrypt((tmp_path / "oct").read_bytes()) == msg


@needs_openssl
def test_openssl_sm3(tmp_path: Path) -> None:
    data = secrets.token_bytes(5000)
    (tmp_path / "d").write_bytes(data)
    out = openssl("dgst", "-sm3", "-r", str(tmp_path / "d")).stdout.split()[0].decode()
    assert out == sm3.digest(data).hex()
    hkey = secrets.token_bytes(32)
    out = openssl("dgst", "-sm3", "-mac", "HMAC", "-macopt", f"hexkey:{hkey.hex()}", "-r",
                  str(tmp_path / "d")).stdout.split()[0].decode()
    assert out == sm3.hmac(hkey, data).hex()


@needs_openssl
def test_openssl_sm4_cbc_both_ways(tmp_path: Path) -> None:
    k, iv = sm4.generate_key(), secrets.token_bytes(16)
    data = secrets.token_bytes(1000)
    (tmp_path / "ct").write_bytes(sm4.cbc_encrypt(k, iv, data))
    out = openssl("enc", "-d", "-sm4-cbc", "-K", k.hex(), "-iv", iv.hex(), "-in",
                  str(tmp_path / "ct")).stdout
    assert out == data
    (tmp_path / "pt").write_bytes(data)
    ct = openssl("enc", "-sm4-cbc", "-K", k.hex(), "-iv", iv.hex(), "-in",
                 str(tmp_path / "pt")).stdout
    assert sm4.cbc_decrypt(k, iv, ct) == data


# --------------------------------------------------------------------------- gmssl


def _gm(key: sm2.SM2PrivateKey | None, pub: sm2.SM2PublicKey, mode: int = 1) -> gm_sm2.CryptSM2:
    xy = pub.to_point()[1:].hex()  # no "04": avoids gmssl's lstrip("04") corruption
    d = key.private_bytes().hex() if key is not None else ""
    return gm_sm2.CryptSM2(private_key=d, public_key=xy, mode=mode)


def _k() -> str:
    return f"{secrets.randbelow(sm2.N - 1) + 1:064x}"


@pytest.fixture()
def secure_gmssl_nonces(monkeypatch: pytest.MonkeyPatch) -> None:
    # gmssl's encrypt has no k parameter and uses random.choice: give it secrets instead
    monkeypatch.setattr(gm_func, "random_hex", lambda n: secrets.token_hex(n // 2))


def test_gmssl_signatures_both_ways(key: sm2.SM2PrivateKey) -> None:
    pub = key.public_key()
    gm = _gm(key, pub)
    for _ in range(3):
        msg = secrets.token_bytes(50)
        assert gm.verify_with_sm3(key.sign(msg, encoding="raw").hex(), msg)
        pub.verify(bytes.fromhex(gm.sign_with_sm3(msg, _k())), msg, encoding="raw")


def test_gmssl_key_with_leading_zero_or_four() -> None:
    """The lstrip("04") trap: find keys whose x starts with 0 or 4 and check interop."""
    for _ in range(200):
        key = sm2.generate_key()
        if key.public_key().to_point()[1:].hex()[0] in "04":
            break
    msg = b"leading digit"
    assert _gm(key, key.public_key()).verify_with_sm3(key.sign(msg, encoding="raw").hex(), msg)


def test_gmssl_encryption_both_ways(key: sm2.SM2PrivateKey, secure_gmssl_nonces: None) -> None:
    pub = key.public_key()
    msg = secrets.token_bytes(40)
    # ours (raw C1C3C2) -> gmssl mode 1 (which wants no 04 prefix)
    ct = pub.encrypt(msg, format="c1c3c2")
    assert _gm(key, pub, mode=1).decrypt(ct[1:]) == msg
    # gmssl default mode 0 = C1C2C3 -> ours (legacy read)
    legacy = b"\x04" + _gm(None, pub, mode=0).encrypt(msg)
    assert key.decrypt(legacy, format="c1c2c3") == msg
    modern = b"\x04" + _gm(None, pub, mode=1).encrypt(msg)
    assert key.decrypt(modern, format="c1c3c2") == msg
    assert key.decrypt(sm2.ciphertext_to_der(modern, "c1c3c2")) == msg
