"""Client-certificate identity (mTLS) through a real `ztgw serve` over HTTPS: a verified
certificate mapped to a client acts as that client; an unmapped or foreign certificate gives
no identity; a certificate-bound token (RFC 8705 cnf x5t#S256) works only with its certificate."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from scale.services import backend_env

from .conftest import ZTGW, free_port, stop_processes, wait_http

PERSONS = "/api/population/persons?page=1&size=2"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: Any, issuer: str, issuer_key: Any, *, ca: bool = False,
          server: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(
            __import__("ipaddress").ip_address("127.0.0.1"))]), critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: Any) -> tuple[str, str]:
    crt, pem = path.with_suffix(".crt"), path.with_suffix(".key")
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return str(crt), str(pem)


def _x5t(cert: x509.Certificate) -> str:
    der = cert.public_bytes(serialization.Encoding.DER)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def mtls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("ztgw-mtls")
    ca_key, rogue_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("ztgw test CA", ca_key, "ztgw test CA", ca_key, ca=True)
    rogue_ca = _cert("rogue CA", rogue_key, "rogue CA", rogue_key, ca=True)
    (tmp / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files: dict[str, tuple[str, str]] = {}
    certs: dict[str, x509.Certificate] = {}
    for name, issuer, ikey, server in (("server", "ztgw test CA", ca_key, True),
                                       ("police", "ztgw test CA", ca_key, False),
                                       ("unmapped", "ztgw test CA", ca_key, False),
                                       ("rogue", "rogue CA", rogue_key, False)):
        key = ec.generate_private_key(ec.SECP256R1())
        certs[name] = _cert(f"{name}.test", key, issuer, ikey, server=server)
        files[name] = _write(tmp / name, certs[name], key)
    del rogue_ca
    port, up_port = free_port(), free_port()
    home = tmp / "home"
    env = {**{k: v for k, v in os.environ.items() if k != "ZTGW_CONFIG"}, "ZTGW_HOME": str(home),
           "ZTGW_TLS_CERTFILE": files["server"][0], "ZTGW_TLS_KEYFILE": files["server"][1],
           "ZTGW_TLS_CLIENT_CA": str(tmp / "ca.pem"),
           "ZTGW_CLIENT_CERTIFICATES": json.dumps({_x5t(certs["police"]): "demo-police"}),
           **backend_env()}  # ZTGW_TEST_BACKEND=postgres: its own PostgreSQL database + Redis prefix
    subprocess.run([*ZTGW, "init"], env=env, check=True, capture_output=True, timeout=60)
    seeded = subprocess.run([*ZTGW, "demo", "seed", "--json", "--upstream-url",
                             f"http://127.0.0.1:{up_port}"], env=env, check=True,
                            capture_output=True, text=True, timeout=60)
    procs = [subprocess.Popen([*ZTGW, "demo", "upstream", "--port", str(up_port)], env=env),
             subprocess.Popen([*ZTGW, "serve", "--port", str(port)], env=env)]
    try:
        wait_http(f"http://127.0.0.1:{up_port}/api/population/persons?size=1", procs[0])
        ctx = ssl.create_default_context(cafile=str(tmp / "ca.pem"))
        base = f"https://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/healthz", verify=ctx, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if procs[1].poll() is not None:
                raise RuntimeError("ztgw serve exited")
            __import__("time").sleep(0.1)
        yield {"base": base, "ca": str(tmp / "ca.pem"), "files": files, "certs": certs,
               "accounts": json.loads(seeded.stdout)}
    finally:
        stop_processes(procs)


def _client(m: dict[str, Any], who: str | None) -> httpx.Client:
    ctx = ssl.create_default_context(cafile=m["ca"])
    if who is not None:
        ctx.load_cert_chain(*m["files"][who])
    return httpx.Client(base_url=m["base"], verify=ctx, timeout=10)


def test_a_mapped_certificate_is_a_client_identity(mtls: dict[str, Any]) -> None:
    with _client(mtls, "police") as c:
        r = c.get(PERSONS)
    assert r.status_code == 200, r.text
    assert "*" in r.json()["items"][0]["mobile"]  # demo-police's masks applied


def test_no_or_unmapped_certificate_gives_no_identity(mtls: dict[str, Any]) -> None:
    for who in (None, "unmapped"):
        with _client(mtls, who) as c:
            r = c.get(PERSONS)
        assert r.status_code == 401, (who, r.text)


def test_a_certificate_from_another_ca_is_refused_at_the_handshake(mtls: dict[str, Any]) -> None:
    with pytest.raises(httpx.HTTPError), _client(mtls, "rogue") as c:
        r = c.get(PERSONS)
        assert r.status_code != 200


def test_tokens_work_over_https_and_the_issuer_is_https(mtls: dict[str, Any]) -> None:
    secret = next(c["client_secret"] for c in mtls["accounts"]["clients"]
                  if c["client_id"] == "demo-police")
    with _client(mtls, None) as c:
        meta = c.get("/.well-known/openid-configuration").json()
        assert meta["issuer"].startswith("https://")
        tok = c.post("/oauth2/token", data={"grant_type": "client_credentials"},
                     auth=("demo-police", secret)).json()["access_token"]
        assert c.get(PERSONS, headers={"Authorization": f"Bearer {tok}"}).status_code == 200
