"""SM2 certificates: issue, parse, verify chains; cross-checked with openssl x509/verify."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from crypto_vectors import needs_openssl, openssl

from ztgw.crypto import sm2, x509
from ztgw.crypto.errors import InvalidCertificate, MalformedInput

ROOT_KEY = sm2.generate_key()
SUB_KEY = sm2.generate_key()
LEAF_KEY = sm2.generate_key()
ROOT = x509.create_ca(x509.Name.of(C="CN", O="某市大数据局", CN="ztgw Test Root"), ROOT_KEY,
                      path_length=1)
SUB = x509.issue_certificate(ROOT, ROOT_KEY, x509.Name.of(C="CN", CN="ztgw Issuing CA"),
                             SUB_KEY.public_key(), is_ca=True, path_length=0, days=1000)
LEAF = x509.issue_certificate(SUB, SUB_KEY, x509.Name.of(C="CN", O="某委办局", CN="张三"),
                              LEAF_KEY.public_key(), emails=["zhangsan@example.gov.cn"])


def test_parse_fields() -> None:
    assert ROOT.is_ca and ROOT.path_length == 1 and ROOT.is_self_issued()
    assert ROOT.key_usage == {"key_cert_sign", "crl_sign"}
    assert LEAF.subject == "CN=张三,O=某委办局,C=CN"
    assert x509.common_name(LEAF) == "张三"
    assert not LEAF.is_ca and LEAF.key_usage == {"digital_signature"}
    assert LEAF.extended_key_usage == {x509.EKU["client_auth"]}
    assert LEAF.emails == ("zhangsan@example.gov.cn",)
    assert LEAF.public_key() == LEAF_KEY.public_key()
    assert LEAF.authority_key_id == SUB.subject_key_id
    assert LEAF.not_after <= SUB.not_after
    assert x509.load_certificate(LEAF.to_pem()) == LEAF
    assert x509.load_certificates(LEAF.to_pem() + SUB.to_pem()) == [LEAF, SUB]


def test_chain_verifies() -> None:
    path = x509.verify_chain(LEAF, [ROOT], [SUB])
    assert path == [LEAF, SUB, ROOT]


def test_chain_failures() -> None:
    with pytest.raises(InvalidCertificate, match="no trusted issuer"):
        x509.verify_chain(LEAF, [ROOT])  # intermediate missing
    other_root = x509.create_ca(x509.Name.of(CN="other"), sm2.generate_key())
    with pytest.raises(InvalidCertificate):
        x509.verify_chain(LEAF, [other_root], [SUB])
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=5000)
    with pytest.raises(InvalidCertificate, match="not valid at"):
        x509.verify_chain(LEAF, [ROOT], [SUB], at=future)
    with pytest.raises(InvalidCertificate, match="server_auth"):
        x509.verify_chain(LEAF, [ROOT], [SUB], required_eku="server_auth")
    with pytest.raises(InvalidCertificate, match="key usage"):
        x509.verify_chain(LEAF, [ROOT], [SUB], required_key_usage=["key_encipherment"])
    # an end-entity certificate cannot issue
    fake = x509.issue_certificate(SUB, SUB_KEY, x509.Name.of(CN="not a ca"),
                                  LEAF_KEY.public_key())
    grandchild = x509.build_certificate(
        subject=x509.Name.of(CN="victim"), public_key=sm2.generate_key().public_key(),
        issuer=fake.subject_der, issuer_key=LEAF_KEY,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
        not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
        is_ca=False, key_usage=["digital_signature"],
    )
    with pytest.raises(InvalidCertificate, match="not allowed to issue"):
        x509.verify_chain(grandchild, [ROOT], [SUB, fake])
    # path length: SUB has pathLen 0, so a CA below it cannot issue
    sub2_key = sm2.generate_key()
    sub2 = x509.issue_certificate(SUB, SUB_KEY, x509.Name.of(CN="sub2"), sub2_key.public_key(),
                                  is_ca=True)
    leaf2 = x509.issue_certificate(sub2, sub2_key, x509.Name.of(CN="leaf2"),
                                   sm2.generate_key().public_key())
    with pytest.raises(InvalidCertificate, match="path length"):
        x509.verify_chain(leaf2, [ROOT], [SUB, sub2])


def test_tampered_certificate() -> None:
    der = bytearray(LEAF.der)
    idx = der.find("张三".encode())
    der[idx + 2] ^= 0x01
    tampered = x509.load_certificate(bytes(der))
    with pytest.raises(InvalidCertificate, match="signature"):
        x509.verify_chain(tampered, [ROOT], [SUB])


def test_rejects_non_sm2_and_garbage() -> None:
    with pytest.raises(MalformedInput):
        x509.load_certificate(b"\x30\x03\x02\x01\x01")
    with pytest.raises(MalformedInput):
        x509.load_certificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(MalformedInput):
        x509.issue_certificate(LEAF, LEAF_KEY, x509.Name.of(CN="x"), LEAF_KEY.public_key())


@needs_openssl
def test_openssl_reads_and_verifies_our_chain(tmp_path: Path) -> None:
    (tmp_path / "root.pem").write_bytes(ROOT.to_pem())
    (tmp_path / "sub.pem").write_bytes(SUB.to_pem())
    (tmp_path / "leaf.pem").write_bytes(LEAF.to_pem())
    text = openssl("x509", "-in", str(tmp_path / "leaf.pem"), "-noout", "-text").stdout
    assert b"SM2-with-SM3" in text and b"Digital Signature" in text
    # OpenSSL 3.0 uses an empty SM2 ID for certificate signatures unless told otherwise,
    # and -vfyopt distid applies to the depth-0 certificate only: check each link.
    for ca, cert, extra in (("root.pem", "sub.pem", []),
                            ("sub.pem", "leaf.pem", ["-partial_chain", "-purpose", "sslclient"])):
        res = openssl("verify", "-vfyopt", "distid:1234567812345678", *extra, "-CAfile",
                      str(tmp_path / ca), str(tmp_path / cert), check=False)
        assert res.returncode == 0, res.stdout + res.stderr
    # and without the identifier OpenSSL rejects the signature: the ID really is in use
    res = openssl("verify", "-CAfile", str(tmp_path / "root.pem"), str(tmp_path / "sub.pem"),
                  check=False)
    assert res.returncode != 0


@needs_openssl
def test_we_verify_openssl_issued_certificates(tmp_path: Path) -> None:
    ca_key, leaf_key = sm2.generate_key(), sm2.generate_key()
    (tmp_path / "ca.key").write_bytes(ca_key.to_pem())
    (tmp_path / "leaf.key").write_bytes(leaf_key.to_pem())
    openssl("req", "-x509", "-new", "-key", str(tmp_path / "ca.key"), "-sm3", "-sigopt",
            "distid:1234567812345678", "-subj", "/C=CN/O=OpenSSL CA/CN=root", "-days", "30",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-out", str(tmp_path / "ca.pem"))
    openssl("req", "-new", "-key", str(tmp_path / "leaf.key"), "-sm3", "-sigopt",
            "distid:1234567812345678", "-subj", "/CN=client", "-out", str(tmp_path / "leaf.csr"))
    (tmp_path / "ext").write_text("keyUsage=critical,digitalSignature\n"
                                  "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", str(tmp_path / "leaf.csr"), "-CA", str(tmp_path / "ca.pem"),
            "-CAkey", str(tmp_path / "ca.key"), "-sm3", "-sigopt", "distid:1234567812345678",
            "-vfyopt", "distid:1234567812345678", "-days", "10", "-extfile",
            str(tmp_path / "ext"), "-out", str(tmp_path / "leaf.pem"))
    ca = x509.load_certificate((tmp_path / "ca.pem").read_bytes())
    leaf = x509.load_certificate((tmp_path / "leaf.pem").read_bytes())
    assert x509.verify_chain(leaf, [ca]) == [leaf, ca]
    assert leaf.public_key() == leaf_key.public_key()
