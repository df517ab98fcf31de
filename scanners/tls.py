"""``ztgw scan tls URL``: protocols, cipher suites, certificate, expiry and key type.

Each protocol version is tried on its own connection (the local OpenSSL's security level
may refuse the oldest ones even as a client: those are reported as ``not negotiated``).
The certificate is read without trusting it first, then verified separately, so an
untrusted or expired certificate is reported instead of hiding every other finding.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
import warnings
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from .errors import BadInput
from .targets import check_target

SM2_OID = bytes.fromhex("06082a811ccf5501822d")  # 1.2.156.10197.1.301 (SM2 curve / key), DER
VERSIONS = {
    "TLSv1.0": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
WEAK_PROTOCOLS = frozenset({"TLSv1.0", "TLSv1.1"})
WEAK_CIPHER_WORDS = ("RC4", "DES", "NULL", "EXPORT", "MD5", "anon", "CBC3")
EXPIRY_WARN_DAYS = 30
TIMEOUT = 5.0


def _ctx(version: ssl.TLSVersion | None, verify: bool, ca: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cafile=ca) if ca else ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # reading the certificate is the point: verified below
    if version is not None:
        with contextlib.suppress(ValueError), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # probing old versions is the point
            ctx.minimum_version = ctx.maximum_version = version
        if version < ssl.TLSVersion.TLSv1_2:
            with contextlib.suppress(ssl.SSLError):
                ctx.set_ciphers("ALL:@SECLEVEL=0")
    return ctx


def _handshake(addr: str, port: int, sni: str, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection((addr, port), timeout=TIMEOUT)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def _describe_cert(der: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {"sm2": SM2_OID in der}
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            out["key"] = f"RSA-{key.key_size}"
        elif isinstance(key, ec.EllipticCurvePublicKey):
            out["key"] = f"EC-{key.curve.name}"
        elif isinstance(key, ed25519.Ed25519PublicKey):
            out["key"] = "Ed25519"
        else:
            out["key"] = type(key).__name__
        not_after = cert.not_valid_after_utc
        out.update(subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
                   not_before=cert.not_valid_before_utc.isoformat(), not_after=not_after.isoformat(),
                   days_left=(not_after - datetime.now(UTC)).days,
                   signature_algorithm=cert.signature_algorithm_oid._name)
    except Exception:  # an SM2 certificate: cryptography has no SM2 keys
        out["key"] = "SM2" if out["sm2"] else "unknown"
        try:
            from ztgw.crypto.x509 import load_certificate

            c = load_certificate(der)
            out.update({k: str(getattr(c, k)) for k in ("subject", "issuer", "not_after")
                        if hasattr(c, k)})
        except Exception:  # noqa: S110 - the key type is still reported
            pass
    if out["sm2"]:
        out["key"] = "SM2"
    return out


def scan_tls(url: str, *, allowed: tuple[str, ...] = (), ca: str | None = None) -> dict[str, Any]:
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme != "https" or not parts.hostname:
        raise BadInput("give an https:// URL")
    host, port = parts.hostname, parts.port or 443
    addr = check_target(host, allowed)
    started = time.monotonic()
    findings: list[dict[str, str]] = []
    report: dict[str, Any] = {"url": f"https://{host}:{port}", "address": addr, "protocols": {},
                              "findings": findings}
    for name, version in VERSIONS.items():
        try:
            with _handshake(addr, port, host, _ctx(version, False, None)) as s:
                cipher = s.cipher()
                report["protocols"][name] = {"negotiated": True, "cipher": cipher[0] if cipher else None,
                                             "bits": cipher[2] if cipher else None}
                der = s.getpeercert(binary_form=True)
                if der and "certificate" not in report:
                    report["certificate"] = _describe_cert(der)
        except (OSError, ssl.SSLError) as exc:
            report["protocols"][name] = {"negotiated": False, "error": type(exc).__name__}
    if not any(p["negotiated"] for p in report["protocols"].values()):
        raise BadInput(f"no TLS handshake with {host}:{port}")
    try:
        with _handshake(addr, port, host, _ctx(None, True, ca)):
            report["trusted"] = True
    except ssl.SSLCertVerificationError as exc:
        report["trusted"] = False
        findings.append({"severity": "high",
                         "finding": f"certificate not trusted: {exc.verify_message}"})
    except (OSError, ssl.SSLError) as exc:
        report["trusted"] = False
        findings.append({"severity": "high", "finding": f"verification failed: {exc}"})
    for name in WEAK_PROTOCOLS:
        if report["protocols"][name]["negotiated"]:
            findings.append({"severity": "high", "finding": f"{name} accepted"})
    for name, p in report["protocols"].items():
        if p.get("cipher") and any(w in p["cipher"] for w in WEAK_CIPHER_WORDS):
            findings.append({"severity": "high",
                             "finding": f"weak cipher {p['cipher']} with {name}"})
    cert = report.get("certificate", {})
    days = cert.get("days_left")
    if isinstance(days, int):
        if days < 0:
            findings.append({"severity": "critical", "finding": "certificate expired"})
        elif days < EXPIRY_WARN_DAYS:
            findings.append({"severity": "medium",
                             "finding": f"certificate expires in {days} days"})
    key = str(cert.get("key", ""))
    if key.startswith("RSA-") and int(key[4:]) < 2048:
        findings.append({"severity": "high", "finding": f"weak key {key}"})
    report["seconds"] = round(time.monotonic() - started, 3)
    return report
