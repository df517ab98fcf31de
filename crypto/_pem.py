"""PEM (RFC 7468) encoding and strict decoding."""

from __future__ import annotations

import base64
import binascii
import re

from .errors import MalformedInput

_PEM_RE = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL
)


def encode(label: str, der: bytes) -> bytes:
    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"\n".join(
        [f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----".encode(), b""]
    )


def decode(data: bytes | str, labels: tuple[str, ...]) -> tuple[str, bytes]:
    """Return (label, DER) of the first PEM block whose label is in ``labels``."""
    if isinstance(data, str):
        data = data.encode("ascii", "replace")
    for match in _PEM_RE.finditer(data):
        label = match.group(1).decode("ascii")
        if label in labels:
            body = b"".join(match.group(2).split())
            try:
                return label, base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise MalformedInput(f"bad base64 in PEM {label}") from None
    raise MalformedInput(f"no PEM block of type {' / '.join(labels)}")


def decode_all(data: bytes | str, label: str) -> list[bytes]:
    """Every PEM block with ``label`` (e.g. a certificate chain file)."""
    if isinstance(data, str):
        data = data.encode("ascii", "replace")
    out: list[bytes] = []
    for match in _PEM_RE.finditer(data):
        if match.group(1).decode("ascii") == label:
            try:
                out.append(base64.b64decode(b"".join(match.group(2).split()), validate=True))
            except (binascii.Error, ValueError):
                raise MalformedInput(f"bad base64 in PEM {label}") from None
    return out
