"""SM2 X.509 certificates (RFC 5280 profile with GM/T 0015-2012 algorithms): issue, parse,
verify chains. Used for certificate login and client identity.

* **Issuing**: pyca ``cryptography`` cannot sign with SM2 and tongsuopy has no certificate
  builder, so the TBSCertificate is encoded here with the minimal DER encoder (:mod:`._der`)
  and signed SM2-with-SM3 (OID 1.2.156.10197.1.501) in OpenSSL, with the default
  identifier 1234567812345678 that GM/T 0015 and OpenSSL use for certificates.
* **Parsing** uses pyca ``cryptography``'s X.509 parser (vetted, strict DER); only the SM2
  SubjectPublicKeyInfo is taken from the TBS bytes because pyca does not know the curve.
* **Chain verification** (RFC 5280 §6 subset): signature, validity period, CA basic
  constraints and path length, keyCertSign on issuers, the leaf's key usage / extended key
  usage, unknown critical extensions refused. No revocation checking here (CRL/OCSP is the
  caller's policy), no name constraints, no policy mapping.
"""

from __future__ import annotations

import datetime as _dt
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509 as _x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from . import _der, _pem
from . import sm3 as _sm3
from .constants import SM2_DEFAULT_ID
from .errors import InvalidCertificate, InvalidSignature, MalformedInput
from .sm2 import OID_SM2_SM3_SIGNATURE, SM2PrivateKey, SM2PublicKey

__all__ = [
    "EKU",
    "Certificate",
    "Name",
    "build_certificate",
    "common_name",
    "create_ca",
    "issue_certificate",
    "load_certificate",
    "load_certificates",
    "verify_chain",
]

_MAX_DEPTH = 8
_SIG_ALG = _der.sequence(_der.oid(OID_SM2_SM3_SIGNATURE))

_NAME_OIDS = {
    "C": "2.5.4.6", "ST": "2.5.4.8", "L": "2.5.4.7", "O": "2.5.4.10", "OU": "2.5.4.11",
    "CN": "2.5.4.3", "SERIALNUMBER": "2.5.4.5", "EMAIL": "1.2.840.113549.1.9.1",
}
_KEY_USAGE_BITS = [
    "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
    "key_agreement", "key_cert_sign", "crl_sign",
]
_KNOWN_EXTENSIONS = {
    ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE, ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME, ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
}
EKU = {
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string,
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH.dotted_string,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING.dotted_string,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string,
}


# --------------------------------------------------------------------------- names


@dataclass(frozen=True, slots=True)
class Name:
    """A distinguished name as ordered (attribute, value) pairs, e.g. ``Name.of(C="CN",
    O="某某局", CN="张三")``. One attribute per RDN, encoded in the given order."""

    attributes: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, **attrs: str) -> Name:
        for attr in attrs:
            if attr.upper() not in _NAME_OIDS:
                raise MalformedInput(f"unsupported name attribute {attr!r}")
        return cls(tuple((k.upper(), v) for k, v in attrs.items()))

    def to_der(self) -> bytes:
        rdns = []
        for attr, value in self.attributes:
            if attr == "C":
                if len(value) != 2:
                    raise MalformedInput("country must be a 2-letter code")
                encoded = _der.printable_string(value)
            elif attr == "EMAIL":
                encoded = _der.tlv(_der.IA5_STRING, value.encode("ascii"))
            else:
                encoded = _der.utf8_string(value)
            rdns.append(_der.set_of(_der.sequence(_der.oid(_NAME_OIDS[attr]), encoded)))
        return _der.sequence(*rdns)


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True, slots=True)
class Certificate:
    """A parsed SM2 certificate. Build with :func:`load_certificate`."""

    der: bytes
    subject: str
    issuer: str
    subject_der: bytes
    issuer_der: bytes
    serial_number: int
    not_before: _dt.datetime
    not_after: _dt.datetime
    is_ca: bool
    path_length: int | None
    key_usage: frozenset[str]
    extended_key_usage: frozenset[str]
    subject_key_id: bytes | None
    authority_key_id: bytes | None
    dns_names: tuple[str, ...]
    emails: tuple[str, ...]
    critical_unknown: tuple[str, ...]
    tbs: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    _public_key: SM2PublicKey = field(repr=False)

    def public_key(self) -> SM2PublicKey:
        return self._public_key

    def fingerprint(self) -> bytes:
        """SM3 over the DER certificate."""
        return _sm3.digest(self.der)

    def to_pem(self) -> bytes:
        return _pem.encode("CERTIFICATE", self.der)

    def verify_signature(self, issuer_key: SM2PublicKey,
                         ids: Sequence[bytes] = (SM2_DEFAULT_ID,)) -> None:
        """Check the SM2 signature; ``ids`` lists the signer identifiers accepted."""
        for ident in ids:
            try:
                issuer_key.verify(self.signature, self.tbs, id=ident)
                return
            except InvalidSignature:
                continue
            except MalformedInput as exc:
                raise InvalidCertificate(f"malformed signature on {self.subject!r}: {exc}") \
                    from None
        raise InvalidCertificate(f"bad signature on {self.subject!r}")

    def is_self_issued(self) -> bool:
        return self.subject_der == self.issuer_der


def _key_id(public_key: SM2PublicKey) -> bytes:
    # RFC 7093 §2 method 4 style: leftmost 160 bits of a hash of the subjectPublicKey bits
    return _sm3.digest(public_key.to_point())[:20]


def _key_usage_ext(usages: Iterable[str]) -> bytes:
    bits = 0
    for u in usages:
        if u not in _KEY_USAGE_BITS:
            raise MalformedInput(f"unknown key usage {u!r}")
        bits |= 1 << (7 - _KEY_USAGE_BITS.index(u))
    if not bits:
        raise MalformedInput("key usage must not be empty")
    unused = (bits & -bits).bit_length() - 1  # DER named bits: drop trailing zeros
    return _der.bit_string(bytes([bits]), unused)


def _extension(oid: str, critical: bool, value: bytes) -> bytes:
    parts = [_der.oid(oid)]
    if critical:
        parts.append(_der.boolean(True))
    parts.append(_der.octet_string(value))
    return _der.sequence(*parts)


def build_certificate(
    *,
    subject: Name,
    public_key: SM2PublicKey,
    issuer: Name | bytes,
    issuer_key: SM2PrivateKey,
    not_before: _dt.datetime,
    not_after: _dt.datetime,
    is_ca: bool,
    key_usage: Iterable[str],
    path_length: int | None = None,
    extended_key_usage: Iterable[str] = (),
    dns_names: Sequence[str] = (),
    emails: Sequence[str] = (),
    serial_number: int | None = None,
) -> Certificate:
    """Encode and sign a v3 certificate (the hazardous builder; prefer the two helpers).

    ``issuer`` may be DER bytes so the issuer field equals the CA's subject byte for byte.
    """
    if not_after <= not_before:
        raise MalformedInput("not_after must be later than not_before")
    serial = serial_number if serial_number is not None else secrets.randbits(159) | 1 << 152
    exts = []
    bc = [_der.boolean(True)] if is_ca else []
    if is_ca and path_length is not None:
        bc.append(_der.integer(path_length))
    exts.append(_extension(ExtensionOID.BASIC_CONSTRAINTS.dotted_string, True,
                           _der.sequence(*bc)))
    exts.append(_extension(ExtensionOID.KEY_USAGE.dotted_string, True,
                           _key_usage_ext(key_usage)))
    ekus = [EKU.get(e, e) for e in extended_key_usage]
    if ekus:
        exts.append(_extension(ExtensionOID.EXTENDED_KEY_USAGE.dotted_string, False,
                               _der.sequence(*(_der.oid(o) for o in ekus))))
    if dns_names or emails:
        names = [_der.tlv(0x82, d.encode("ascii")) for d in dns_names]
        names += [_der.tlv(0x81, e.encode("ascii")) for e in emails]
        exts.append(_extension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME.dotted_string, False,
                               _der.sequence(*names)))
    exts.append(_extension(ExtensionOID.SUBJECT_KEY_IDENTIFIER.dotted_string, False,
                           _der.octet_string(_key_id(public_key))))
    exts.append(_extension(ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string, False,
                           _der.sequence(_der.implicit_primitive(
                               0, _key_id(issuer_key.public_key())))))
    tbs = _der.sequence(
        _der.explicit(0, _der.integer(2)),
        _der.integer(serial),
        _SIG_ALG,
        issuer if isinstance(issuer, bytes) else issuer.to_der(),
        _der.sequence(_der.x509_time(not_before), _der.x509_time(not_after)),
        subject.to_der(),
        public_key.to_der(),
        _der.explicit(3, _der.sequence(*exts)),
    )
    signature = issuer_key.sign(tbs, id=SM2_DEFAULT_ID)
    return load_certificate(_der.sequence(tbs, _SIG_ALG, _der.bit_string(signature)))


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


def create_ca(name: Name, key: SM2PrivateKey, *, days: int = 3650,
              path_length: int | None = None) -> Certificate:
    """A self-signed SM2 root CA certificate (keyCertSign, cRLSign)."""
    now = _now()
    return build_certificate(
        subject=name, public_key=key.public_key(), issuer=name, issuer_key=key,
        not_before=now - _dt.timedelta(minutes=5), not_after=now + _dt.timedelta(days=days),
        is_ca=True, path_length=path_length, key_usage=("key_cert_sign", "crl_sign"),
    )


def issue_certificate(
    issuer_cert: Certificate,
    issuer_key: SM2PrivateKey,
    subject: Name,
    public_key: SM2PublicKey,
    *,
    days: int = 365,
    is_ca: bool = False,
    path_length: int | None = None,
    key_usage: Iterable[str] | None = None,
    extended_key_usage: Iterable[str] = ("client_auth",),
    dns_names: Sequence[str] = (),
    emails: Sequence[str] = (),
) -> Certificate:
    """Issue a certificate under ``issuer_cert``. Defaults: an end-entity client cert."""
    if not issuer_key.public_key() == issuer_cert.public_key():
        raise MalformedInput("issuer key does not match the issuer certificate")
    if not issuer_cert.is_ca:
        raise MalformedInput("issuer certificate is not a CA")
    now = _now()
    usage = key_usage or (("key_cert_sign", "crl_sign") if is_ca else ("digital_signature",))
    not_after = min(now + _dt.timedelta(days=days), issuer_cert.not_after)
    return build_certificate(
        subject=subject, public_key=public_key,
        issuer=issuer_cert.subject_der, issuer_key=issuer_key,
        not_before=now - _dt.timedelta(minutes=5), not_after=not_after, is_ca=is_ca,
        path_length=path_length, key_usage=usage,
        extended_key_usage=() if is_ca else extended_key_usage,
        dns_names=dns_names, emails=emails,
    )


# --------------------------------------------------------------------------- parsing


def load_certificate(data: bytes | str) -> Certificate:
    """Parse one PEM or DER SM2-with-SM3 certificate."""
    if isinstance(data, str) or bytes(data).lstrip().startswith(b"-----"):
        data = _pem.decode(data, ("CERTIFICATE",))[1]
    der = bytes(data)
    try:
        cert = _x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise MalformedInput(f"not a DER X.509 certificate: {exc}") from None
    if cert.signature_algorithm_oid.dotted_string != OID_SM2_SM3_SIGNATURE:
        raise MalformedInput(f"not an SM2-with-SM3 certificate ({cert.signature_algorithm_oid})")
    if cert.version is not _x509.Version.v3:
        raise MalformedInput("only X.509 v3 certificates are accepted")
    tbs_parts = _der.read_sequence(cert.tbs_certificate_bytes, "TBSCertificate")
    if len(tbs_parts) < 7 or tbs_parts[0].tag != 0xA0:
        raise MalformedInput("unexpected TBSCertificate layout")
    if tbs_parts[2].encoded != _der.read_sequence(der)[1].encoded:
        raise MalformedInput("inner and outer signature algorithms differ")
    public_key = SM2PublicKey.from_der(tbs_parts[6].encoded)

    def ext(oid: _x509.ObjectIdentifier) -> object | None:
        try:
            return cert.extensions.get_extension_for_oid(oid).value
        except _x509.ExtensionNotFound:
            return None

    try:
        bc = ext(ExtensionOID.BASIC_CONSTRAINTS)
        ku = ext(ExtensionOID.KEY_USAGE)
        eku = ext(ExtensionOID.EXTENDED_KEY_USAGE)
        san = ext(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        ski = ext(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
        aki = ext(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
        unknown = tuple(e.oid.dotted_string for e in cert.extensions
                        if e.critical and e.oid not in _KNOWN_EXTENSIONS)
    except (ValueError, _x509.DuplicateExtension) as exc:
        raise MalformedInput(f"bad certificate extension: {exc}") from None
    usages: set[str] = set()
    if isinstance(ku, _x509.KeyUsage):
        usages = {u for u in _KEY_USAGE_BITS if getattr(ku, u)}
    return Certificate(
        der=der,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        subject_der=cert.subject.public_bytes(),
        issuer_der=cert.issuer.public_bytes(),
        serial_number=cert.serial_number,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_ca=bool(isinstance(bc, _x509.BasicConstraints) and bc.ca),
        path_length=bc.path_length if isinstance(bc, _x509.BasicConstraints) else None,
        key_usage=frozenset(usages),
        extended_key_usage=frozenset(
            o.dotted_string for o in eku) if isinstance(eku, _x509.ExtendedKeyUsage)
        else frozenset(),
        subject_key_id=ski.digest if isinstance(ski, _x509.SubjectKeyIdentifier) else None,
        authority_key_id=aki.key_identifier
        if isinstance(aki, _x509.AuthorityKeyIdentifier) else None,
        dns_names=tuple(san.get_values_for_type(_x509.DNSName))
        if isinstance(san, _x509.SubjectAlternativeName) else (),
        emails=tuple(san.get_values_for_type(_x509.RFC822Name))
        if isinstance(san, _x509.SubjectAlternativeName) else (),
        critical_unknown=unknown,
        tbs=cert.tbs_certificate_bytes,
        signature=cert.signature,
        _public_key=public_key,
    )


def load_certificates(data: bytes | str) -> list[Certificate]:
    """Every certificate in a PEM bundle."""
    return [load_certificate(der) for der in _pem.decode_all(data, "CERTIFICATE")]


def common_name(cert: Certificate) -> str | None:
    parsed = _x509.load_der_x509_certificate(cert.der)
    attrs = parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


# --------------------------------------------------------------------------- chains


def _check_validity(cert: Certificate, at: _dt.datetime) -> None:
    if not cert.not_before <= at <= cert.not_after:
        raise InvalidCertificate(
            f"{cert.subject!r} is not valid at {at.isoformat()} "
            f"({cert.not_before.isoformat()} .. {cert.not_after.isoformat()})"
        )
    if cert.critical_unknown:
        raise InvalidCertificate(
            f"{cert.subject!r} has unsupported critical extensions {cert.critical_unknown}"
        )


def _issued_by(child: Certificate, parent: Certificate) -> bool:
    if child.issuer_der != parent.subject_der:
        return False
    return not (child.authority_key_id and parent.subject_key_id
                and child.authority_key_id != parent.subject_key_id)


def verify_chain(
    leaf: Certificate,
    trust_anchors: Sequence[Certificate],
    intermediates: Sequence[Certificate] = (),
    *,
    at: _dt.datetime | None = None,
    required_key_usage: Iterable[str] = ("digital_signature",),
    required_eku: str | None = "client_auth",
    signature_ids: Sequence[bytes] = (SM2_DEFAULT_ID,),
) -> list[Certificate]:
    """Verify ``leaf`` up to one of ``trust_anchors``; return the path leaf → anchor.

    ``signature_ids``: SM2 identifiers accepted for certificate signatures. The standard
    one is 1234567812345678 (GM/T 0015); OpenSSL 3.0 signs certificates with an *empty* ID
    unless given ``-sigopt distid:...``, so add ``b""`` to accept such certificates.
    Raises :class:`InvalidCertificate` (a :class:`VerificationFailed`) with the reason.
    """
    at = at or _dt.datetime.now(_dt.UTC)
    _check_validity(leaf, at)
    missing = set(required_key_usage) - leaf.key_usage
    if missing:
        raise InvalidCertificate(f"leaf lacks key usage {sorted(missing)}")
    if required_eku is not None:
        oid = EKU.get(required_eku, required_eku)
        if leaf.extended_key_usage and oid not in leaf.extended_key_usage:
            raise InvalidCertificate(f"leaf is not valid for {required_eku}")
    anchors = {a.der for a in trust_anchors}
    path = [leaf]
    current = leaf
    pool = [*intermediates, *trust_anchors]
    while current.der not in anchors:
        if len(path) > _MAX_DEPTH:
            raise InvalidCertificate("certificate path too long")
        candidates = [c for c in pool if _issued_by(current, c) and c.der != current.der]
        if not candidates:
            raise InvalidCertificate(f"no trusted issuer found for {current.subject!r}")
        errors: list[str] = []
        for parent in candidates:
            try:
                current.verify_signature(parent.public_key(), signature_ids)
            except InvalidCertificate as exc:
                errors.append(str(exc))
                continue
            break
        else:
            raise InvalidCertificate("; ".join(errors))
        _check_validity(parent, at)
        if not parent.is_ca or "key_cert_sign" not in parent.key_usage:
            raise InvalidCertificate(f"{parent.subject!r} is not allowed to issue certificates")
        # RFC 5280 §4.2.1.9: pathLen counts non-self-issued intermediates below the CA
        below = sum(1 for c in path[1:] if not c.is_self_issued())
        if parent.path_length is not None and below > parent.path_length:
            raise InvalidCertificate(f"path length constraint of {parent.subject!r} exceeded")
        path.append(parent)
        current = parent
    return path
