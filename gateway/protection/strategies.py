"""Masking strategies: one compiled callable per field spec (GB/T 37964-2019 techniques).

=============  =========================================================================
strategy       effect (spec keys)
=============  =========================================================================
keep           first N / last M characters kept, the rest ``*`` (``first``, ``last``)
redact         every character ``*`` (length kept)
null           the value becomes null (CSV: empty)
pseudonym      consistent keyed pseudonym, HMAC-SM3 under the pseudonym key;
               ``format``: ``preserve`` (default: same shape, valid check characters) or
               ``hex`` (``p_`` + 16 hex digits)
token          reversible format-preserving token, FF1 over SM4 (SP 800-38G); check
               characters recomputed so the token passes validation; other values with fewer
               than 6 digits are redacted instead (FF1's minimum domain)
generalize     ``to``: ``year`` / ``month`` (dates, ID numbers), ``band`` (numbers, ``width``),
               ``district`` / ``city`` / ``province`` (addresses, via the gazetteer)
bucket         numbers → lower bound of their bucket (``width``)
noise          numbers ± keyed deterministic noise (``scale``: relative, or ``abs``); the
               same value always gets the same noise, so averaging repeated answers does
               not remove it
=============  =========================================================================

A value a strategy cannot transform (a non-number under ``bucket``, an unparseable date
under ``generalize``) is *redacted*, never passed through: masking fails closed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import date
from functools import lru_cache
from operator import methodcaller
from typing import Any

from ztgw.crypto import sm3
from ztgw.crypto.errors import MalformedInput
from ztgw.crypto.ff1 import ALPHABET as _FF1_DIGITS
from ztgw.crypto.ff1 import FF1

from .detectors import _COMPOUND_SURNAMES, _PROVINCE_NAMES, classify
from .identifiers import (
    USCC_ALPHABET,
    id_check_char,
    is_valid_cn_mobile,
    load_gazetteer,
    luhn_check_digit,
    org_code_check_char,
    uscc_check_char,
)
from .keys import ProtectionKeys

__all__ = [
    "KEYED_STRATEGIES",
    "MASK_CHAR",
    "MAX_KEEP",
    "STRATEGIES",
    "Masker",
    "Tokenizer",
    "UnenforceableMask",
    "column_of",
    "compile_masker",
    "generalize_address",
]

MASK_CHAR = "*"
MAX_KEEP = 64  # a "keep" longer than this is not masking any more
MAX_BUCKET = 1e15
STRATEGIES = frozenset({"keep", "redact", "null", "pseudonym", "token", "generalize", "bucket", "noise"})
KEYED_STRATEGIES = frozenset({"pseudonym", "token", "noise"})
_TOKEN_CACHE = 65536  # FF1 costs ~0.2 ms a value; repeated values are common
_COLUMN_FAST_LEN = 256  # column fast paths handle strings shorter than this by slicing
_ADDRESS_CACHE = 4096  # generalised address heads (province, city, county) → result
_ID_EPOCH = date(1900, 1, 1).toordinal()
_ID_DOMAIN = (date(2020, 1, 1).toordinal() - _ID_EPOCH) * 1000  # tokens are born 1900..2019

Masker = Callable[[Any], Any]


class UnenforceableMask(ValueError):
    """A mask obligation this gateway cannot carry out."""


# ------------------------------------------------------------------ keep / redact / null


def _keep(first: int, last: int) -> Masker:
    def mask(value: Any) -> Any:
        if value is None:
            return None
        text = str(value)
        n = len(text)
        if first + last >= n:
            # too short to show anything safely: reveal at most one char from the front
            return text[: min(first, 1)] + MASK_CHAR * (n - min(first, 1))
        return text[:first] + MASK_CHAR * (n - first - last) + (text[n - last:] if last else "")

    shown = first + last
    stars = [MASK_CHAR * (n - shown) for n in range(shown + 1, _COLUMN_FAST_LEN)]

    def column(values: list[Any]) -> list[Any]:
        # the same result as ``mask`` for each value: plain slicing for the common case of a
        # string longer than what is kept, the general path for everything else
        return [v[:first] + stars[len(v) - shown - 1] + v[len(v) - last:]
                if type(v) is str and shown < len(v) < _COLUMN_FAST_LEN else mask(v)
                for v in values] if last else [
                v[:first] + stars[len(v) - shown - 1]
                if type(v) is str and shown < len(v) < _COLUMN_FAST_LEN else mask(v)
                for v in values]

    return _with_column(mask, column, ("keep", first, last))


def _redact_one(value: Any) -> Any:
    return None if value is None else MASK_CHAR * len(str(value))


def _null_one(value: Any) -> Any:
    return None


class _ColumnMasker:
    """A masker with a batch form: ``column(values)`` == ``[mask(v) for v in values]``, with
    less interpreter work per value (masking.MaskPlan.records uses it column by column).
    ``inline`` describes the simplest strategies (``("keep", first, last)``, ``("redact",)``,
    ``("null",)``) so a plan can compile them into one loop over the records."""

    __slots__ = ("column", "inline", "mask")

    def __init__(self, mask: Masker, column: Callable[[list[Any]], list[Any]],
                 inline: tuple[Any, ...] | None = None) -> None:
        self.mask, self.column, self.inline = mask, column, inline

    def __call__(self, value: Any) -> Any:
        return self.mask(value)


def _with_column(mask: Masker, column: Callable[[list[Any]], list[Any]],
                 inline: tuple[Any, ...] | None = None) -> Masker:
    return _ColumnMasker(mask, column, inline)


_REDACTED = [MASK_CHAR * n for n in range(_COLUMN_FAST_LEN)]


def _redact_column(values: list[Any]) -> list[Any]:
    if values and set(map(type, values)) == {str} and max(map(len, values)) < _COLUMN_FAST_LEN:
        return list(map(_REDACTED.__getitem__, map(len, values)))  # all strings: no bytecode per value
    return [_REDACTED[len(v)] if type(v) is str and len(v) < _COLUMN_FAST_LEN else _redact_one(v)
            for v in values]


_redact = _with_column(_redact_one, _redact_column, ("redact",))
_null = _with_column(_null_one, lambda values: [None] * len(values), ("null",))


def column_of(masker: Masker) -> Callable[[list[Any]], list[Any]]:
    """The batch form of a masker (a generic list comprehension when it has none)."""
    col = getattr(masker, "column", None)
    if col is not None:
        return col  # type: ignore[no-any-return]
    return lambda values: [masker(v) for v in values]


# ------------------------------------------------------------------ pseudonyms (HMAC-SM3)

_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建文志林"
_SURNAME_POOL = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董"
_UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_LOWER = "abcdefghijkmnpqrstuvwxyz"


class _KeyStream:
    """Deterministic bytes from HMAC-SM3(key, label || counter)."""

    __slots__ = ("_buf", "_ctr", "_key", "_label", "_pos")

    def __init__(self, key: bytes, label: bytes) -> None:
        self._key, self._label, self._ctr, self._buf, self._pos = key, label, 0, b"", 0

    def below(self, n: int) -> int:
        if self._pos >= len(self._buf):
            self._buf = sm3.hmac(self._key, self._label + self._ctr.to_bytes(4, "big"))
            self._ctr += 1
            self._pos = 0
        # 16-bit draws: bias below 2**-10 for n <= 64 (pseudonyms are not key material)
        v = self._buf[self._pos] << 8 | self._buf[(self._pos + 1) % len(self._buf)]
        self._pos += 2
        return v % n

    def digits(self, k: int) -> str:
        return "".join(str(self.below(10)) for _ in range(k))


def _pseudo_chars(ks: _KeyStream, text: str) -> str:
    out = []
    for c in text:
        if c.isdigit() and c.isascii():
            out.append(str(ks.below(10)))
        elif "A" <= c <= "Z":
            out.append(_UPPER[ks.below(len(_UPPER))])
        elif "a" <= c <= "z":
            out.append(_LOWER[ks.below(len(_LOWER))])
        elif "\u4e00" <= c <= "\u9fff":
            out.append(_GIVEN[ks.below(len(_GIVEN))])
        else:
            out.append(c)
    return "".join(out)


def _pseudo_id(ks: _KeyStream) -> str:
    districts = load_gazetteer().districts
    region = districts[ks.below(len(districts))].code
    born = date.fromordinal(date(1940, 1, 1).toordinal() + ks.below(365 * 64))
    body = region + born.strftime("%Y%m%d") + ks.digits(3)
    return body + id_check_char(body)


def pseudonymize(key: bytes, text: str, kind: str | None) -> str:
    """A same-shaped stand-in for ``text``; equal inputs of one kind give equal outputs."""
    ks = _KeyStream(key, (kind or "-").encode() + b"\x00" + text.encode("utf-8"))
    if kind == "cn_id_number":
        return _pseudo_id(ks)
    if kind == "cn_mobile":
        digits = "".join(c for c in text if c.isdigit())[-11:]
        return digits[:3] + ks.digits(8) if is_valid_cn_mobile(digits) else _pseudo_chars(ks, text)
    if kind == "bank_card":
        body = text[:6] + ks.digits(len(text) - 7)
        return body + luhn_check_digit(body)
    if kind == "cn_uscc":
        org = "".join(USCC_ALPHABET[ks.below(31)] for _ in range(8))
        body = text[:8] + org + org_code_check_char(org)  # GB 11714 code inside stays valid
        return body + uscc_check_char(body)
    if kind == "cn_name":
        given = len(text) - (2 if text[:2] in _COMPOUND_SURNAMES else 1)
        return _SURNAME_POOL[ks.below(len(_SURNAME_POOL))] + "".join(
            _GIVEN[ks.below(len(_GIVEN))] for _ in range(max(given, 1)))
    if kind == "email":
        _, _, domain = text.rpartition("@")
        return "u" + "".join("0123456789abcdef"[ks.below(16)] for _ in range(10)) + "@" + domain
    return _pseudo_chars(ks, text)


def _pseudonym(key: bytes, kind: str | None, fmt: str) -> Masker:
    @lru_cache(maxsize=_TOKEN_CACHE)
    def one(text: str) -> str:
        if fmt == "hex":
            return "p_" + sm3.hmac(key, (kind or "-").encode() + b"\x00" + text.encode()).hex()[:16]
        return pseudonymize(key, text, kind or classify(text))

    def mask(value: Any) -> Any:
        return None if value is None else one(str(value))

    def column(values: list[Any]) -> list[Any]:
        return [one(v) if type(v) is str else mask(v) for v in values]

    return _with_column(mask, column)


# ------------------------------------------------------------------ FF1-SM4 tokens


class Tokenizer:
    """Reversible format-preserving tokens: FF1 over SM4 on the digits of a value.

    The tweak is the detector id, so one person's ID number gets the same token in every
    field (tokens stay joinable) but an ID number and a card number never share a mapping.
    Check characters (GB 11643, Luhn, GB 32100) are left out of the encryption and
    recomputed, so tokens pass validation and decryption recomputes the original's.
    """

    def __init__(self, key: bytes) -> None:
        self._ff1 = FF1(key, 10)
        self._ff1_31 = FF1(key, 31)  # the USCC alphabet, as numerals 0..30

    def _split(self, text: str, kind: str | None) -> tuple[str, str, str]:
        """(kept prefix, encrypted part, check-character marker)."""
        if kind == "cn_mobile" and len(text) == 11:
            return text[:3], text[3:], ""  # the carrier block stays valid
        if kind == "bank_card" and len(text) >= 16:
            return text[:6], text[6:-1], "?"  # the IIN (issuing bank) stays
        return "", text, ""

    def _uscc(self, text: str, *, encrypt: bool) -> str:
        """Registration authority, category and region kept; the 8-character organisation-code
        body encrypted over the 31-character USCC alphabet (FF1 radix 31); the GB 11714 and
        GB 32100 check characters recomputed."""
        numerals = "".join(_FF1_DIGITS[USCC_ALPHABET.index(c)] for c in text[8:16])
        tweak = b"ztgw-token/cn_uscc"
        out = (self._ff1_31.encrypt if encrypt else self._ff1_31.decrypt)(numerals, tweak)
        org = "".join(USCC_ALPHABET[_FF1_DIGITS.index(c)] for c in out)
        body = text[:8] + org + org_code_check_char(org)
        return body + uscc_check_char(body)

    def _id_number(self, text: str, *, encrypt: bool) -> str:
        """Region code kept; (birth date, sequence) → another *valid* pair by FF1 with cycle
        walking over N = days since 1900-01-01 · 1000 + sequence (SP 800-38G §C)."""
        born = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
        n = (born.toordinal() - _ID_EPOCH) * 1000 + int(text[14:17])
        if not 0 <= n < _ID_DOMAIN:
            raise ValueError("birth date outside the token domain")
        tweak = b"ztgw-token/cn_id_number"
        step = self._ff1.encrypt if encrypt else self._ff1.decrypt
        s = f"{n:08d}"
        while True:
            s = step(s, tweak)
            if int(s) < _ID_DOMAIN:
                break
        days, seq = divmod(int(s), 1000)
        body = text[:6] + date.fromordinal(_ID_EPOCH + days).strftime("%Y%m%d") + f"{seq:03d}"
        return body + id_check_char(body)

    def _crypt(self, text: str, kind: str | None, *, encrypt: bool) -> str:
        if kind == "cn_id_number" and len(text) == 18 and text[:17].isdigit():
            return self._id_number(text, encrypt=encrypt)
        if kind == "cn_uscc" and len(text) == 18 and all(c in USCC_ALPHABET for c in text):
            return self._uscc(text, encrypt=encrypt)
        prefix, body, check = self._split(text, kind)
        if sum(c.isdigit() and c.isascii() for c in body) < 6:
            raise ValueError("fewer than 6 digits: FF1's domain is too small")
        tweak = b"ztgw-token/" + (kind or "-").encode()
        crypt = self._ff1.encrypt_digits if encrypt else self._ff1.decrypt_digits
        out = prefix + crypt(body, tweak)
        if check:
            out += luhn_check_digit(out)
        return out

    def tokenize(self, text: str, kind: str | None = None) -> str:
        return self._crypt(text, kind, encrypt=True)

    def detokenize(self, token: str, kind: str | None = None) -> str:
        return self._crypt(token, kind, encrypt=False)


def _token(key: bytes, kind: str | None) -> Masker:
    tok = Tokenizer(key)

    @lru_cache(maxsize=_TOKEN_CACHE)
    def one(text: str) -> str:
        try:
            return tok.tokenize(text, kind or classify(text))
        except (ValueError, MalformedInput):
            return MASK_CHAR * len(text)  # fail closed

    def mask(value: Any) -> Any:
        return None if value is None else one(str(value))

    def column(values: list[Any]) -> list[Any]:
        return [one(v) if type(v) is str else mask(v) for v in values]

    return _with_column(mask, column)


# ------------------------------------------------------------------ generalisation

_DATE = re.compile(r"(\d{4})[-/.年](\d{1,2})(?:[-/.月](\d{1,2})日?)?")


def _date_parts(text: str) -> tuple[str, str] | None:
    if len(text) in (15, 18) and classify(text) == "cn_id_number":
        born = text[6:14] if len(text) == 18 else "19" + text[6:12]
        return born[:4], born[4:6]
    m = _DATE.match(text)
    if m is None or not 1 <= int(m.group(2)) <= 12:
        return None
    return m.group(1), m.group(2).zfill(2)


# every atom of _address_head() is a Chinese character; its alternatives span at most
# 8 (province) + 11 (city) + 11 (county) characters
_ADDRESS_LOOKAHEAD = 30
_CJK_RUN = re.compile(rf"[\u4e00-\u9fff]{{0,{_ADDRESS_LOOKAHEAD}}}")
_CJK_RUN_LINES = re.compile(rf"^[\u4e00-\u9fff]{{0,{_ADDRESS_LOOKAHEAD}}}", re.MULTILINE)
_GROUP0 = methodcaller("group")


@lru_cache(maxsize=1)
def _address_head() -> re.Pattern[str]:
    """province? city? county — longest known names first, generic suffixes as fallback."""
    gaz = load_gazetteer()
    provinces = "|".join(sorted(set(_PROVINCE_NAMES), key=len, reverse=True))
    cities = "|".join(sorted({c.name for c in gaz.cities}, key=len, reverse=True))
    return re.compile(
        rf"(?P<province>{provinces})?"
        rf"(?P<city>{cities}|[\u4e00-\u9fff]{{1,8}}?(?:市|自治州|地区|盟))?"
        r"(?P<county>[\u4e00-\u9fff]{1,8}?(?:自治县|自治旗|区|县|旗|市))?"
    )


def generalize_address(text: str, level: str) -> str | None:
    """The ``province`` / ``city`` / ``district`` prefix of a Chinese address, or None."""
    m = _address_head().match(text)
    if m is None:
        return None
    return _address_level(m.group("province", "city", "county"), level)


@lru_cache(maxsize=_ADDRESS_CACHE)
def _address_level(head: tuple[str | None, str | None, str | None], level: str) -> str | None:
    """The generalisation from the matched (province, city, county) alone: cached, since
    every address of a district shares it."""
    prov, city, county = head
    municipality = prov is not None and prov.endswith("市")
    if municipality and city is not None and county is None:
        county, city = city, None  # 北京市朝阳区: the "city" alternative swallowed nothing real
    if level == "province":
        return prov
    if level == "city":
        if municipality:
            return prov
        return (prov or "") + city if city else None
    if county is None or (city is None and not municipality):
        return None
    return (prov or "") + (city or "") + county


def _generalize(to: str, width: float) -> Masker:
    def mask(value: Any) -> Any:
        if value is None:
            return None
        if to == "band":
            x = _number(value)
            if x is None:
                return _redact(value)
            lo = math.floor(x / width) * width
            lo_s = _fmt_num(lo)
            return f"{lo_s}-{_fmt_num(lo + width - (1 if float(width).is_integer() else 0))}"
        text = str(value)
        if to in ("year", "month"):
            parts = _date_parts(text)
            if parts is None:
                return _redact(value)
            return parts[0] if to == "year" else f"{parts[0]}-{parts[1]}"
        out = generalize_address(text, to)
        return out if out is not None else _redact(value)

    if to in ("year", "month"):
        def dates(values: list[Any]) -> list[Any]:
            # dates repeat (birth dates of a page): cached; ID numbers (15/18) never are
            return [_date_general(v, to) if type(v) is str and len(v) <= 10 else mask(v) for v in values]

        return _with_column(mask, dates)
    if to == "band":
        return mask

    def addresses(values: list[Any]) -> list[Any]:
        # The head pattern consists of Chinese characters only and looks at most
        # _ADDRESS_LOOKAHEAD of them, so its match is decided by the leading run of Chinese
        # characters: addresses on one street share it. Cached for this batch only.
        match, run = _address_head().match, _CJK_RUN.match
        if values and set(map(type, values)) == {str}:  # the common case, mostly in C
            # one regex pass over the column joined by newlines: a run per line (a value
            # holding a newline makes more lines than values, and the per-value way is used)
            keys = _CJK_RUN_LINES.findall("\n".join(values))
            if len(keys) != len(values):
                keys = list(map(_GROUP0, map(run, values)))
            heads: dict[str, Any] = {}
            for key in set(keys):
                m = match(key)
                r = _address_level(m.group("province", "city", "county"), to) if m else None
                heads[key] = r
            if None not in heads.values():
                return list(map(heads.__getitem__, keys))
        seen: dict[str, Any] = {}
        out: list[Any] = []
        append = out.append
        for v in values:
            if type(v) is str:
                key = run(v).group()  # type: ignore[union-attr]
                r = seen.get(key)
                if r is None:
                    m = match(key)
                    r = _address_level(m.group("province", "city", "county"), to) if m else None
                    seen[key] = r = r if r is not None else False
                if r is not False:
                    append(r)
                    continue
            append(mask(v))
        return out

    return _with_column(mask, addresses)


@lru_cache(maxsize=_TOKEN_CACHE)
def _date_general(text: str, to: str) -> str:
    parts = _date_parts(text)
    if parts is None:
        return MASK_CHAR * len(text)
    return parts[0] if to == "year" else f"{parts[0]}-{parts[1]}"


# ------------------------------------------------------------------ numbers


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    try:
        x = float(str(value).strip())
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _decimals(value: Any) -> int:
    text = repr(value) if isinstance(value, float) else str(value)
    return len(text.partition(".")[2]) if "." in text and "e" not in text.lower() else 0


def _bucket(width: float) -> Masker:
    def mask(value: Any) -> Any:
        x = _number(value)
        if x is None:
            return None
        lo = math.floor(x / width) * width
        if isinstance(value, int) or (isinstance(value, str) and "." not in value):
            return int(lo)
        return lo if isinstance(value, float) else _fmt_num(lo)

    return mask


def _noise(key: bytes, scale: float, absolute: float) -> Masker:
    def mask(value: Any) -> Any:
        x = _number(value)
        if x is None:
            return None
        h = sm3.hmac(key, repr(x).encode())
        u = int.from_bytes(h[:8], "big") / 2**64 * 2 - 1  # uniform in [-1, 1)
        y = x + u * (absolute if absolute else scale * abs(x))
        places = _decimals(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return round(y)
        y = round(y, places)
        return y if isinstance(value, float) else (f"{y:.{places}f}" if places else str(round(y)))

    return mask


# ------------------------------------------------------------------ compilation


def _int(spec: Mapping[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    raw = spec.get(name, default)
    if isinstance(raw, bool) or not isinstance(raw, int) or not lo <= raw <= hi:
        raise UnenforceableMask(f"{name!r} must be an integer in [{lo}, {hi}]")
    return raw


def _positive(spec: Mapping[str, Any], name: str, default: float | None) -> float:
    raw = spec.get(name, default)
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw <= MAX_BUCKET:
        raise UnenforceableMask(f"{name!r} must be a positive number")
    return float(raw)


_SPEC_KEYS = {
    "keep": {"first", "last"}, "redact": set(), "null": set(), "pseudonym": {"format"},
    "token": set(), "generalize": {"to", "width"}, "bucket": {"width"}, "noise": {"scale", "abs"},
}


def compile_masker(spec: Mapping[str, Any], keys: ProtectionKeys | None = None,
                   kind: str | None = None) -> Masker:
    """Compile one field spec; anything not understood raises :class:`UnenforceableMask`.

    ``kind`` is the detector id when the field was selected by type (formats pseudonyms
    and tokens without classifying each value again).
    """
    if not isinstance(spec, Mapping):
        raise UnenforceableMask("a field spec is a mapping with a 'strategy'")
    strategy = spec.get("strategy", "redact")
    if strategy not in STRATEGIES:
        raise UnenforceableMask(f"unknown masking strategy {strategy!r}")
    extra = set(spec) - _SPEC_KEYS[strategy] - {"strategy"}
    if extra:
        raise UnenforceableMask(f"{strategy!r} does not take {sorted(extra)}")
    if strategy in KEYED_STRATEGIES and keys is None:
        raise UnenforceableMask(f"{strategy!r} needs the protection keys, none configured")
    if strategy == "keep":
        if not isinstance(spec.get("first", 0), int) or not isinstance(spec.get("last", 0), int):
            raise UnenforceableMask("keep needs integer 'first'/'last'")
        return _keep(_int(spec, "first", 0, 0, MAX_KEEP), _int(spec, "last", 0, 0, MAX_KEEP))
    if strategy == "redact":
        return _redact
    if strategy == "null":
        return _null
    if strategy == "pseudonym":
        fmt = spec.get("format", "preserve")
        if fmt not in ("preserve", "hex"):
            raise UnenforceableMask("pseudonym 'format' is 'preserve' or 'hex'")
        assert keys is not None
        return _pseudonym(keys.pseudonym, kind, fmt)
    if strategy == "token":
        assert keys is not None
        return _token(keys.token, kind)
    if strategy == "generalize":
        to = spec.get("to")
        if to not in ("year", "month", "band", "district", "city", "province"):
            raise UnenforceableMask("generalize 'to' is year|month|band|district|city|province")
        width = _positive(spec, "width", 10) if to == "band" else 1.0
        return _generalize(to, width)
    if strategy == "bucket":
        return _bucket(_positive(spec, "width", None))
    # noise
    assert keys is not None
    if ("scale" in spec) == ("abs" in spec):
        raise UnenforceableMask("noise takes exactly one of 'scale' (relative) or 'abs'")
    scale = _positive(spec, "scale", 1.0) if "scale" in spec else 0.0
    if scale > 1:
        raise UnenforceableMask("noise 'scale' is a fraction in (0, 1]")
    absolute = _positive(spec, "abs", 1.0) if "abs" in spec else 0.0
    return _noise(keys.noise, scale, absolute)
