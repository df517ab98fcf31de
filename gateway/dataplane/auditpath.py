"""No clear personal data in the audited request path (issue 9: "no clear PII in events").

Record routes carry the record key in the path (``/api/population/persons/{id_number}``), and
attackers put whatever they like there.  Before a path enters an access event:

* every run of 7 or more digits (an ID number, mobile, bank card, passport or landline number,
  also inside an injection payload) is masked the way Chinese systems display such numbers —
  18-digit ID ``110101********1234`` (region code and last four kept), mobile ``138****5678``,
  shorter runs keep the last four only;
* e-mail addresses keep their first character and domain (``z***@example.cn``);
* runs of two or more CJK characters (names, addresses) keep their first character
  (``张*``, ``北*****``), in clear or percent-encoded form.

What detection needs survives: the shape of the segment, injection syntax, short numbers, and
the last four digits of an identifier (sequential reads of ``…1000``, ``…1001`` … still show as
an enumeration).  Investigators link the reads of one record through ``ztgw.data.subject``, a
keyed HMAC-SM3 pseudonym of the record key (:func:`subject_ref`): the same record gives the
same pseudonym under one gateway key, and nobody without the key can test a guess.
"""

from __future__ import annotations

import re

from ztgw.crypto import sm3

_DIGIT_RUN = re.compile(r"[0-9]{7,}[Xx]?")
_EMAIL = re.compile(r"([A-Za-z0-9._+-])[A-Za-z0-9._+-]*(@|%40)(?=[A-Za-z0-9-]+\.)")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]{2,}")
# two or more percent-encoded 3-byte UTF-8 characters (a path the canonicaliser refused keeps
# its raw, encoded form in the event)
_CJK_ENCODED = re.compile(r"(?:%[Ee][0-9A-Fa-f]%[89ABab][0-9A-Fa-f]%[89ABab][0-9A-Fa-f]){2,}")
_SUBJECT_LABEL = b"ztgw-audit-subject/"
# anything mask_path could change: a 7-digit run, an e-mail or percent-escape, a non-Latin letter
_NEEDS_WORK = re.compile(r"[0-9]{7}|[@%\u3400-\U0010ffff]")


def _digits(m: re.Match[str]) -> str:
    run = m.group(0)
    n = len(run)
    if n >= 15:
        return run[:6] + "*" * (n - 10) + run[-4:]
    if n >= 11:
        return run[:3] + "*" * (n - 7) + run[-4:]
    return "*" * (n - 4) + run[-4:]


def _cjk(m: re.Match[str]) -> str:
    s = m.group(0)
    return s[0] + "*" * (len(s) - 1)


def _cjk_encoded(m: re.Match[str]) -> str:
    s = m.group(0)
    return s[:9] + "*" * (len(s) // 9 - 1)


def mask_path(path: str) -> str:
    """The path with identifier-shaped personal data masked (idempotent, cheap when there is
    nothing to mask: one scan of a short string)."""
    if not _NEEDS_WORK.search(path):
        return path
    out = _DIGIT_RUN.sub(_digits, path)
    if "@" in out or "%40" in out:
        out = _EMAIL.sub(lambda m: m.group(1) + "***" + m.group(2), out)
    if "%" in out:
        out = _CJK_ENCODED.sub(_cjk_encoded, out)
    return _CJK.sub(_cjk, out)


def subject_ref(key: bytes, value: str) -> str:
    """Keyed pseudonym of a data subject's record key: ``hs3:`` + 32 hex digits of
    HMAC-SM3(key, label ‖ value)."""
    return "hs3:" + sm3.hmac(key, _SUBJECT_LABEL + value.encode("utf-8")).hex()[:32]
