"""One canonical form of every request path before any decision (OWASP API8, CWE-22).

The raw path is checked byte by byte *before* percent-decoding so that nothing can be smuggled
past a prefix match: encoded slashes/backslashes/dots, double encoding, NUL and control
characters, overlong or invalid UTF-8, ``;`` path parameters, ``.``/``..`` segments, empty
segments.  Anything doubtful is refused (400), never "repaired".
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

MAX_PATH_BYTES = 2048
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")
# percent-escapes that decode to path syntax or to another escape: always an attack here
_FORBIDDEN_ESCAPES = {b"2f", b"5c", b"2e", b"25", b"00", b"3b", b"3f", b"23"}
_ALLOWED_RAW = re.compile(rb"^/[A-Za-z0-9\-._~!$&'()*+,=:@/%]*$")


class PathRejected(ValueError):
    """The path is not in canonical form; the message says why (safe to show)."""


def canonical_path(raw: bytes) -> str:
    if not raw or len(raw) > MAX_PATH_BYTES:
        raise PathRejected("the request path is empty or too long")
    if not _ALLOWED_RAW.match(raw):
        raise PathRejected("the request path contains characters that must not appear in it")
    for m in _PCT.finditer(raw):
        if m.group(1).lower() in _FORBIDDEN_ESCAPES:
            raise PathRejected("the request path contains an encoded separator or escape")
    if b"%" in raw and _PCT.sub(b"", raw).count(b"%"):
        raise PathRejected("the request path contains a malformed percent-escape")
    decoded = unquote_to_bytes(raw)
    if any(b < 0x20 or b == 0x7F for b in decoded):
        raise PathRejected("the request path contains control characters")
    try:
        text = decoded.decode("utf-8", errors="strict")  # strict rejects overlong forms
    except UnicodeDecodeError as exc:
        raise PathRejected("the request path is not valid UTF-8") from exc
    segments = text.split("/")[1:]
    if text != "/" and text.endswith("/"):
        segments = segments[:-1]  # one trailing slash is tolerated and dropped
    for seg in segments:
        if seg in ("", ".", ".."):
            raise PathRejected("the request path contains empty, '.' or '..' segments")
    return "/" + "/".join(segments)
