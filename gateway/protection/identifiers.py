"""Validated Chinese identifiers: check characters, structure and reference data.

Pure functions over strings (the only I/O is reading the packaged gazetteer, once):

- citizen identity number, GB 11643-1999 (18 characters, ISO 7064 MOD 11-2 check
  character; legacy 15-digit form and its conversion to 18, §5 / annex);
- unified social credit code (USCC), GB 32100-2015 (check character mod 31 over a
  31-character alphabet, §4.3) and the embedded organisation code, GB 11714-1997;
- bank card numbers: Luhn (ISO/IEC 7812-1 annex B) and the UnionPay 62 IIN range;
- mainland mobile numbers (11 digits, known carrier number blocks);
- administrative division codes, GB/T 2260 (a small embedded gazetteer).

Validators never raise on bad input; they answer ``False``. Parsers and converters raise
:class:`InvalidIdentifierError` (a :class:`ValueError`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from operator import mul
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "USCC_ALPHABET",
    "City",
    "District",
    "Gazetteer",
    "IdNumberInfo",
    "InvalidIdentifierError",
    "UsccInfo",
    "cn_mobile_carrier",
    "id15_to_id18",
    "id_check_char",
    "is_unionpay",
    "is_valid_cn_mobile",
    "is_valid_id_number",
    "is_valid_id_number_15",
    "is_valid_luhn",
    "is_valid_org_code",
    "is_valid_region_code",
    "is_valid_uscc",
    "load_gazetteer",
    "luhn_check_digit",
    "mobile_prefixes",
    "org_code_check_char",
    "parse_id_number",
    "parse_uscc",
    "uscc_check_char",
]


class InvalidIdentifierError(ValueError):
    """A string is not a well-formed identifier of the kind asked for."""


_DIGITS = frozenset("0123456789")


def _words(text: str) -> list[str]:
    return text.split()


# --------------------------------------------------------------------------------------
# GB/T 2260 — administrative division codes
# --------------------------------------------------------------------------------------

# First two digits of every province-level division in GB/T 2260, plus 81/82/83 used by
# residence permits of Hong Kong, Macao and Taiwan residents (GB 11643 numbers 810000…).
_PROVINCE_PREFIXES = frozenset(
    _words(
        "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 "
        "50 51 52 53 54 61 62 63 64 65 71 81 82 83"
    )
)


@dataclass(frozen=True, slots=True)
class City:
    """A prefecture-level city (for a municipality: its 市辖区, code xx0100)."""

    code: str
    name: str
    province_code: str
    province_name: str
    area_code: str  # long-distance telephone prefix, e.g. "020"


@dataclass(frozen=True, slots=True)
class District:
    """A county-level division (市辖区): the region code of ID numbers and addresses."""

    code: str
    name: str
    city: City

    @property
    def is_municipality(self) -> bool:
        return self.city.name == self.city.province_name

    @property
    def full_name(self) -> str:
        """Province + city + district, as written in an address (广东省广州市天河区)."""
        if self.is_municipality:
            return f"{self.city.province_name}{self.name}"
        return f"{self.city.province_name}{self.city.name}{self.name}"


@dataclass(frozen=True, slots=True)
class Gazetteer:
    """The embedded subset of GB/T 2260 (see ``gazetteer.json`` for its provenance)."""

    provinces: MappingProxyType[str, str]  # "440000" -> "广东省"
    cities: tuple[City, ...]
    districts: tuple[District, ...]
    by_code: MappingProxyType[str, District]

    def district(self, code: str) -> District | None:
        return self.by_code.get(code)


@cache
def load_gazetteer() -> Gazetteer:
    """Read the packaged gazetteer once."""
    raw = json.loads(
        resources.files(__package__ or "ztgw.gateway.protection")
        .joinpath("gazetteer.json")
        .read_text(encoding="utf-8")
    )
    provinces: dict[str, str] = {}
    cities: list[City] = []
    districts: list[District] = []
    for prov in raw["provinces"]:
        provinces[prov["code"]] = prov["name"]
        for c in prov["cities"]:
            city = City(c["code"], c["name"], prov["code"], prov["name"], c["area_code"])
            cities.append(city)
            districts.extend(District(d["code"], d["name"], city) for d in c["districts"])
    return Gazetteer(
        provinces=MappingProxyType(provinces),
        cities=tuple(cities),
        districts=tuple(districts),
        by_code=MappingProxyType({d.code: d for d in districts}),
    )


def is_valid_region_code(code: str, *, known_only: bool = False) -> bool:
    """Six digits with a real province prefix; with ``known_only``, a gazetteer district."""
    if len(code) != 6 or not _DIGITS.issuperset(code):
        return False
    if known_only:
        return code in load_gazetteer().by_code
    return code[:2] in _PROVINCE_PREFIXES and code[2:] != "0000"


# --------------------------------------------------------------------------------------
# GB 11643-1999 — citizen identity number
# --------------------------------------------------------------------------------------

# ISO 7064 MOD 11-2: weight of position i (1-based from the left) is 2**(18-i) mod 11.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_ASCII_BIAS = ord("0") * sum(_ID_WEIGHTS)
_ID_CHECK = "10X98765432"  # indexed by (sum mod 11); the value 10 is written 'X'
_ID_EARLIEST_BIRTH = date(1800, 1, 1)  # the standard's own example is born in 1880

Sex = Literal["男", "女"]


@dataclass(frozen=True, slots=True)
class IdNumberInfo:
    """What an identity number states about its holder (GB 11643-1999 §4)."""

    id_number: str  # always the 18-character form
    region_code: str
    birth_date: date
    sex: Sex  # odd sequence digit: male; even: female


def id_check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits (§5.2, ISO 7064 MOD 11-2)."""
    if len(first17) != 17 or not _DIGITS.issuperset(first17):
        raise InvalidIdentifierError("an ID number body is 17 digits")
    # Σ digitᵢ·wᵢ computed over the ASCII codes, minus the '0' bias (fast for bulk use)
    total = sum(map(mul, first17.encode("ascii"), _ID_WEIGHTS)) - _ID_ASCII_BIAS
    return _ID_CHECK[total % 11]


def _parse_date(yyyymmdd: str) -> date | None:
    try:
        return date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return None


_TODAY: list[Any] = [0.0, date.min]  # (monotonic time to re-read the clock, today)


def _today() -> date:
    """date.today(), read at most once a second (it is asked for every ID number validated)."""
    now = time.monotonic()
    if now >= _TODAY[0]:
        _TODAY[0], _TODAY[1] = now + 1.0, date.today()
    return _TODAY[1]  # type: ignore[no-any-return]


def _birth_ok(born: date | None, today: date | None) -> bool:
    return born is not None and _ID_EARLIEST_BIRTH <= born <= (today or _today())


def _month_ends() -> dict[str, str]:
    """'YYYYMM' → its last day 'DD', for every month from 1800 to 2199."""
    out = {}
    for y in range(_ID_EARLIEST_BIRTH.year, 2200):
        for m in range(1, 13):
            nxt = date(y + (m == 12), m % 12 + 1, 1)
            out[f"{y:04d}{m:02d}"] = f"{(nxt - date(y, m, 1)).days:02d}"
    return out


_MONTH_END = _month_ends()
_TODAY_YMD = ["00000000"]  # today as YYYYMMDD, refreshed only when a later date is met


def _born_by_today(ymd: str) -> bool:
    """``ymd`` (a real date, YYYYMMDD) is not after today. The cached day only grows stale
    towards the past, so a date on or before it needs no clock read."""
    if ymd <= _TODAY_YMD[0]:
        return True
    _TODAY_YMD[0] = _today().strftime("%Y%m%d")
    return ymd <= _TODAY_YMD[0]


def is_valid_id_number(s: str, *, today: date | None = None, known_region: bool = False) -> bool:
    """An 18-character GB 11643 number: digits, real birth date, region prefix, check char.

    ``today`` bounds the birth date (default: the current date); ``known_region`` also
    requires the region code to be a district of the embedded gazetteer.
    """
    if len(s) != 18:
        return False
    body = s[:17]
    if not (body.isascii() and body.isdigit()):
        return False
    # ISO 7064 MOD 11-2: the weights are 2^(17-i) mod 11, and 13 ≡ 2 (mod 11), so the weighted
    # sum is 2 · (the 17 digits read in base 13) mod 11 — one C-level int() per number.
    if _ID_CHECK[2 * int(body, 13) % 11] != s[17]:
        return False
    if known_region:
        if s[:6] not in load_gazetteer().by_code:
            return False
    elif s[:2] not in _PROVINCE_PREFIXES or s[2:6] == "0000":
        return False
    last = _MONTH_END.get(s[6:12])  # also bounds the year: 1800 … 2199
    day = s[12:14]
    if last is None or not ("01" <= day <= last):
        return False
    if today is not None:
        return s[6:14] <= today.strftime("%Y%m%d")
    return _born_by_today(s[6:14])


def is_valid_id_number_15(s: str, *, known_region: bool = False) -> bool:
    """A legacy 15-digit number (region, YYMMDD of a 19xx birth, 3-digit sequence)."""
    if len(s) != 15 or not _DIGITS.issuperset(s):
        return False
    return is_valid_region_code(s[:6], known_only=known_region) and _birth_ok(
        _parse_date("19" + s[6:12]), None
    )


def id15_to_id18(s: str) -> str:
    """Upgrade a legacy 15-digit number: insert the century "19" and append the check char."""
    if not is_valid_id_number_15(s):
        raise InvalidIdentifierError("not a valid 15-digit ID number")
    body = s[:6] + "19" + s[6:]
    return body + id_check_char(body)


def parse_id_number(s: str, *, today: date | None = None) -> IdNumberInfo:
    """Validate an 18- or 15-character number and say what it states."""
    if len(s) == 15:
        s = id15_to_id18(s)
    if not is_valid_id_number(s, today=today):
        raise InvalidIdentifierError("not a valid GB 11643 ID number")
    born = _parse_date(s[6:14])
    assert born is not None  # checked by is_valid_id_number
    return IdNumberInfo(s, s[:6], born, "男" if int(s[16]) % 2 else "女")


# --------------------------------------------------------------------------------------
# GB 32100-2015 — unified social credit code; GB 11714-1997 — organisation code
# --------------------------------------------------------------------------------------

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, S, V, Z (§4.2)
_USCC_VALUE = MappingProxyType({c: i for i, c in enumerate(USCC_ALPHABET)})
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1, 3, 9, 27, 19, 26, 16, …, 28

# GB 11714: 8 body characters (digits or capital letters, A=10 … Z=35) and a check char.
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_BODY_ALPHABET = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class UsccInfo:
    """The parts of a USCC (GB 32100-2015 §4.1)."""

    uscc: str
    registration_authority: str  # e.g. '9' market regulation, '5' civil affairs
    organization_category: str  # under '9': '1' enterprise, '2' sole trader, '3' co-op
    region_code: str
    org_code: str  # the 9-character GB 11714 organisation code


def uscc_check_char(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters (§4.3)."""
    if len(first17) != 17:
        raise InvalidIdentifierError("a USCC body is 17 characters")
    try:
        total = sum(_USCC_VALUE[c] * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    except KeyError:
        raise InvalidIdentifierError("character outside the USCC alphabet") from None
    return USCC_ALPHABET[(31 - total % 31) % 31]


def is_valid_uscc(s: str) -> bool:
    """18 characters over the USCC alphabet, six-digit region code, correct check char."""
    if len(s) != 18 or not _USCC_VALUE.keys() >= set(s):
        return False
    if not _DIGITS.issuperset(s[2:8]):
        return False
    return uscc_check_char(s[:17]) == s[17]


def parse_uscc(s: str) -> UsccInfo:
    if not is_valid_uscc(s):
        raise InvalidIdentifierError("not a valid GB 32100 unified social credit code")
    return UsccInfo(s, s[0], s[1], s[2:8], s[8:17])


def org_code_check_char(first8: str) -> str:
    """The GB 11714 check character: 11 - (Σ cᵢwᵢ mod 11), 10 → 'X', 11 → '0'."""
    if len(first8) != 8 or not _ORG_BODY_ALPHABET.issuperset(first8):
        raise InvalidIdentifierError("an organisation code body is 8 digits or capitals")
    total = sum(int(c, 36) * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    value = 11 - total % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def is_valid_org_code(s: str) -> bool:
    """A 9-character GB 11714 organisation code (the hyphen form 'XXXXXXXX-X' too)."""
    if len(s) == 10 and s[8] == "-":
        s = s[:8] + s[9]
    if len(s) != 9 or not _ORG_BODY_ALPHABET.issuperset(s[:8]):
        return False
    return org_code_check_char(s[:8]) == s[8]


# --------------------------------------------------------------------------------------
# Bank cards — Luhn (ISO/IEC 7812-1) and UnionPay
# --------------------------------------------------------------------------------------


def _luhn_sum(digits: str, *, double_last: bool) -> int:
    total = 0
    double = double_last
    for c in reversed(digits):
        d = ord(c) - 48
        if double:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        double = not double
    return total


def luhn_check_digit(payload: str) -> str:
    """The digit to append to ``payload`` so the whole passes the Luhn check."""
    if not payload or not _DIGITS.issuperset(payload):
        raise InvalidIdentifierError("a Luhn payload is one or more digits")
    return str((10 - _luhn_sum(payload, double_last=True) % 10) % 10)


def is_valid_luhn(s: str) -> bool:
    """At least two digits whose Luhn sum is a multiple of ten."""
    if len(s) < 2 or not _DIGITS.issuperset(s):
        return False
    return _luhn_sum(s, double_last=False) % 10 == 0


def is_unionpay(card: str) -> bool:
    """A 16-19 digit card number in UnionPay's 62 IIN range (check digit not tested)."""
    return 16 <= len(card) <= 19 and _DIGITS.issuperset(card) and card.startswith("62")


# --------------------------------------------------------------------------------------
# Mainland mobile numbers
# --------------------------------------------------------------------------------------

# Three-digit number blocks allotted by MIIT for public mobile voice service. Two-digit
# blocks inside 134 (1349: satellite) and data-only 14x blocks are left out on purpose.
_MOBILE_CARRIERS: MappingProxyType[str, str] = MappingProxyType(
    {
        **dict.fromkeys(
            _words(
                "134 135 136 137 138 139 147 150 151 152 157 158 159 172 178 182 183 184 187 188 195 197 198"
            ),
            "中国移动",
        ),
        **dict.fromkeys(_words("130 131 132 145 155 156 166 175 176 185 186 196"), "中国联通"),
        **dict.fromkeys(_words("133 149 153 173 177 180 181 189 190 191 193 199"), "中国电信"),
        "192": "中国广电",
        **dict.fromkeys(_words("162 165 167 170 171"), "虚拟运营商"),
    }
)


def cn_mobile_carrier(s: str) -> str | None:
    """The carrier owning the number's block, or ``None`` if ``s`` is not a mobile number."""
    if len(s) != 11 or not _DIGITS.issuperset(s):
        return None
    return _MOBILE_CARRIERS.get(s[:3])


def is_valid_cn_mobile(s: str) -> bool:
    """11 digits, ``1[3-9]…``, in a known carrier block (no ``+86`` prefix, no spaces)."""
    return cn_mobile_carrier(s) is not None


def mobile_prefixes() -> tuple[str, ...]:
    """The known three-digit blocks, in order (for generators and scanners)."""
    return tuple(sorted(_MOBILE_CARRIERS))
