"""A minimal, strict DER (X.690) encoder and decoder.

Only what ztgw needs for SM2 signatures (GM/T 0009 §7.3), SM2 ciphertexts (GM/T 0009 §7.2),
keys (RFC 5915, RFC 5208, RFC 5480) and X.509 (RFC 5280). The decoder accepts DER only:
definite, minimal lengths and minimal INTEGERs. Anything else raises
:class:`~ztgw.crypto.errors.MalformedInput`, never an ``IndexError``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from .errors import MalformedInput

# Universal tags (X.680 §8.4) as full identifier octets.
BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
IA5_STRING = 0x16
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30
SET = 0x31

_MAX_LENGTH_OCTETS = 4  # 4 GiB is far beyond anything ztgw decodes


# --------------------------------------------------------------------------- encoding


def encode_length(n: int) -> bytes:
    if n < 0:
        raise ValueError("negative length")
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(content)) + content


def integer(value: int) -> bytes:
    """Two's-complement minimal INTEGER."""
    length = (value + (value < 0)).bit_length() // 8 + 1
    return tlv(INTEGER, value.to_bytes(length, "big", signed=True))


def octet_string(data: bytes) -> bytes:
    return tlv(OCTET_STRING, data)


def bit_string(data: bytes, unused_bits: int = 0) -> bytes:
    return tlv(BIT_STRING, bytes([unused_bits]) + data)


def null() -> bytes:
    return b"\x05\x00"


def boolean(value: bool) -> bytes:
    return tlv(BOOLEAN, b"\xff" if value else b"\x00")


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError(f"invalid OID {dotted!r}")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return tlv(OID, bytes(out))


def sequence(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def set_of(*items: bytes) -> bytes:
    # DER SET OF: elements sorted by their encodings (X.690 §11.6)
    return tlv(SET, b"".join(sorted(items)))


def utf8_string(text: str) -> bytes:
    return tlv(UTF8_STRING, text.encode("utf-8"))


def printable_string(text: str) -> bytes:
    return tlv(PRINTABLE_STRING, text.encode("ascii"))


def explicit(number: int, content: bytes) -> bytes:
    """Context-specific, constructed ``[number] EXPLICIT``."""
    return tlv(0xA0 | number, content)


def implicit_primitive(number: int, content: bytes) -> bytes:
    return tlv(0x80 | number, content)


def x509_time(when: _dt.datetime) -> bytes:
    """RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050."""
    when = when.astimezone(_dt.UTC).replace(microsecond=0)
    if 1950 <= when.year < 2050:
        return tlv(UTC_TIME, when.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return tlv(GENERALIZED_TIME, when.strftime("%Y%m%d%H%M%SZ").encode("ascii"))


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True, slots=True)
class Element:
    """One decoded TLV: its identifier octet, its content and its complete encoding."""

    tag: int
    content: bytes
    encoded: bytes

    def expect(self, tag: int, what: str) -> Element:
        if self.tag != tag:
            raise MalformedInput(f"{what}: expected tag 0x{tag:02x}, got 0x{self.tag:02x}")
        return self

    def children(self) -> list[Element]:
        if not self.tag & 0x20:
            raise MalformedInput("primitive element has no children")
        return read_all(self.content)


def read_element(data: bytes, offset: int = 0) -> tuple[Element, int]:
    """Decode one TLV at ``offset``; return it and the offset just after it."""
    end = len(data)
    if offset + 2 > end:
        raise MalformedInput("truncated DER element")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise MalformedInput("multi-octet DER tags are not supported")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise MalformedInput("indefinite length is not DER")
    else:
        count = first & 0x7F
        if count > _MAX_LENGTH_OCTETS or pos + count > end:
            raise MalformedInput("bad DER length")
        raw = data[pos : pos + count]
        if raw[0] == 0:
            raise MalformedInput("non-minimal DER length")
        length = int.from_bytes(raw, "big")
        if length < 0x80:
            raise MalformedInput("non-minimal DER length")
        pos += count
    if pos + length > end:
        raise MalformedInput("DER length exceeds the data")
    return Element(tag, bytes(data[pos : pos + length]), bytes(data[offset : pos + length])), (
        pos + length
    )


def read_all(data: bytes) -> list[Element]:
    out: list[Element] = []
    offset = 0
    while offset < len(data):
        element, offset = read_element(data, offset)
        out.append(element)
    return out


def read_single(data: bytes, what: str = "DER") -> Element:
    """Decode exactly one TLV that spans all of ``data`` (no trailing bytes)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedInput(f"{what}: expected bytes")
    element, end = read_element(bytes(data))
    if end != len(data):
        raise MalformedInput(f"{what}: trailing data after DER element")
    return element


def read_sequence(data: bytes, what: str = "DER") -> list[Element]:
    return read_single(data, what).expect(SEQUENCE, what).children()


def decode_integer(element: Element, *, unsigned: bool = True) -> int:
    element.expect(INTEGER, "INTEGER")
    c = element.content
    if not c:
        raise MalformedInput("empty INTEGER")
    if len(c) > 1 and ((c[0] == 0 and c[1] < 0x80) or (c[0] == 0xFF and c[1] >= 0x80)):
        raise MalformedInput("non-minimal INTEGER")
    value = int.from_bytes(c, "big", signed=True)
    if unsigned and value < 0:
        raise MalformedInput("negative INTEGER")
    return value


def decode_oid(element: Element) -> str:
    element.expect(OID, "OBJECT IDENTIFIER")
    c = element.content
    if not c or c[-1] & 0x80:
        raise MalformedInput("bad OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    fresh = True
    for byte in c:
        if fresh and byte == 0x80:
            raise MalformedInput("non-minimal OID arc")
        value = (value << 7) | (byte & 0x7F)
        fresh = not byte & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in (*head, *arcs[1:]))


def decode_octet_string(element: Element) -> bytes:
    return element.expect(OCTET_STRING, "OCTET STRING").content


def decode_bit_string(element: Element) -> bytes:
    """Return the bits of a BIT STRING that must be a whole number of octets."""
    c = element.expect(BIT_STRING, "BIT STRING").content
    if not c or c[0] != 0:
        raise MalformedInput("BIT STRING with unused bits")
    return c[1:]


def decode_boolean(element: Element) -> bool:
    c = element.expect(BOOLEAN, "BOOLEAN").content
    if c not in (b"\x00", b"\xff"):
        raise MalformedInput("non-DER BOOLEAN")
    return c == b"\xff"


def decode_time(element: Element) -> _dt.datetime:
    try:
        text = element.content.decode("ascii")
        if element.tag == UTC_TIME and len(text) == 13 and text.endswith("Z"):
            parsed = _dt.datetime.strptime(text, "%y%m%d%H%M%SZ")
            if parsed.year >= 2050:  # RFC 5280 §4.1.2.5.1: YY >= 50 means 19YY
                parsed = parsed.replace(year=parsed.year - 100)
        elif element.tag == GENERALIZED_TIME and len(text) == 15 and text.endswith("Z"):
            parsed = _dt.datetime.strptime(text, "%Y%m%d%H%M%SZ")
        else:
            raise MalformedInput("time must be UTCTime/GeneralizedTime in Zulu, seconds")
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedInput(f"bad time value: {exc}") from None
    return parsed.replace(tzinfo=_dt.UTC)
