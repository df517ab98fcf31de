"""Detectors for Chinese personal data that *validate* what a pattern finds.

A pattern only proposes a candidate; each candidate is then checked the way the issuing
standard defines it (GB 11643 check character, GB 32100 check character, Luhn + UnionPay
IIN, carrier number blocks, area codes, ``ipaddress``, the GB/T 2260 gazetteer, a surname
list). Decoys such as an 18-digit order number with a wrong check digit are therefore not
reported.

Two entry points:

- :func:`classify` — is this whole value one identifier, and of which type?
- :func:`find_all` — every identifier embedded in free text, with its span.

Detector ids (stable; used in mask obligations and in ``ztgw scan pii``) are listed in
:data:`DETECTOR_IDS`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import cache

from .identifiers import _MOBILE_CARRIERS as _MOBILE_CARRIERS
from .identifiers import _PROVINCE_PREFIXES as _PROVINCE_PREFIXES
from .identifiers import (
    is_unionpay,
    is_valid_cn_mobile,
    is_valid_id_number,
    is_valid_id_number_15,
    is_valid_luhn,
    is_valid_org_code,
    is_valid_region_code,
    is_valid_uscc,
    load_gazetteer,
)

__all__ = [
    "DETECTOR_IDS",
    "STRONG",
    "SURNAMES",
    "Match",
    "classify",
    "find_all",
    "is_cn_name",
    "is_valid_bank_card",
    "is_valid_cn_landline",
    "is_valid_cn_passport",
    "is_valid_cn_plate",
]

DETECTOR_IDS: tuple[str, ...] = (
    "cn_id_number", "cn_mobile", "cn_landline", "bank_card", "cn_uscc", "email", "ipv4", "ipv6",
    "cn_passport", "cn_plate", "cn_name", "cn_address",
)
# Detectors with a check character or a closed reference list: one hit is evidence. The
# others (names, passports, plates, addresses) need corroboration at column level.
STRONG = frozenset({"cn_id_number", "cn_uscc", "bank_card", "cn_mobile", "email", "ipv4", "ipv6"})


@dataclass(frozen=True, slots=True)
class Match:
    type: str
    start: int
    end: int
    value: str


# ------------------------------------------------------------------ reference data


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# The common surnames (2020 census order, top ~300) and compound surnames.
_SINGLE_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董潘袁蔡蒋余于杜叶程"
    "魏苏吕丁任卢姚沈钟姜崔谭陆范汪廖石金韦贾夏付傅方邹熊白孟秦邱侯江尹薛闫阎段雷龙黎史陶贺毛"
    "郝顾龚邵万覃武钱戴严莫孔向常汤康易乔赖文施洪辛柯庄樊殷甘耿关兰焦俞左柳牛童申祝葛鲍"
    "季温聂纪邢舒涂华芦卓尚房霍喻岳鲁裴谷陈黎翟蒙安倪牟洪褚滕项骆齐单包符苗伍查毕梅巫"
    "路盛麦屈佘宁景丛车包丘苑阮解尤凌宫臧储冉路窦应晏卞谈籍蓝靳艾邬鞠隋刁桂饶廉池云"
    "计费古米胥封官边冷游阚郎时揭曲闵栾粟母晋荣商宗乐欧"
)
_COMPOUND_SURNAMES = frozenset(
    _words("欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙")
    + _words("宇文 司徒 夏侯 轩辕 令狐 钟离 端木 南宫 西门")
)
SURNAMES = frozenset(_SINGLE_SURNAMES) | _COMPOUND_SURNAMES
# A short CJK value ending in one of these is a place, an organisation or a category.
_NOT_NAME_SUFFIX = frozenset("区县市省族路街道镇乡村局院司行部厅委办会所处科站队组室楼号户婚业类型级")

_USCC_REGIONS = _PROVINCE_PREFIXES | {"10"}
_PLATE_PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PROVINCE_NAMES = (
    _words("北京市 天津市 上海市 重庆市 河北省 山西省 辽宁省 吉林省 黑龙江省 江苏省")
    + _words("浙江省 安徽省 福建省 江西省 山东省 河南省 湖北省 湖南省 广东省 海南省")
    + _words("四川省 贵州省 云南省 陕西省 甘肃省 青海省 台湾省 内蒙古自治区")
    + _words("广西壮族自治区 西藏自治区 宁夏回族自治区 新疆维吾尔自治区")
    + _words("香港特别行政区 澳门特别行政区")
)

# Long-distance area codes: 010 and 02x are three digits; every other code is 0 + 3 digits
# with a first digit 3..9 (YD/T 2137 numbering plan).


def _area_code_ok(code: str) -> bool:
    if len(code) == 3:
        return code == "010" or code.startswith("02")
    return len(code) == 4 and code[1] in "3456789"


def is_valid_cn_landline(s: str) -> bool:
    """``0AA(A)-NNNNNNN(N)`` or ``(0AA)NNNNNNNN``, with a plausible area code."""
    m = re.fullmatch(r"\(?(0\d{2,3})\)?[- ]?([2-8]\d{6,7})(?:-\d{1,5})?", s.strip())
    if not m:
        return False
    code, local = m.group(1), m.group(2)
    if not _area_code_ok(code):
        return False
    # a seven-digit local number goes with a four-digit area code only
    return len(local) == 8 or len(code) == 4


def is_valid_bank_card(s: str) -> bool:
    """16-19 digits passing Luhn, in UnionPay's 62 range (or 16-digit Visa/Mastercard IINs
    issued by Chinese banks)."""
    if not is_valid_luhn(s):
        return False
    if is_unionpay(s):
        return True
    return len(s) == 16 and (s[0] == "4" or "51" <= s[:2] <= "55")


_PASSPORT = re.compile(r"[EG]\d{8}|E[A-HJ-NP-Z]\d{7}|[DSP]E?\d{7}|[HM]\d{8,10}")


def is_valid_cn_passport(s: str) -> bool:
    """Ordinary (E/G), diplomatic/service/official (D/S/P) and HK/Macao permit (H/M) formats.

    The printed number carries no check character (only the MRZ does), so this is a
    format check; corroborate with context or column statistics."""
    return _PASSPORT.fullmatch(s) is not None


_PLATE = re.compile(
    rf"[{_PLATE_PROVINCES}][A-HJ-NP-Z][·•]?"
    r"(?:[DF][A-HJ-NP-Z0-9]\d{4}|\d{5}[DF]|[A-HJ-NP-Z0-9]{4}[A-HJ-NP-Z0-9挂学警港澳])"
)


def is_valid_cn_plate(s: str) -> bool:
    """GA 36 plates: province abbreviation, issuing-office letter, five characters (no I/O);
    new-energy plates (GA 36-2018 amendment) have six, with D/F for the fuel type."""
    if _PLATE.fullmatch(s) is None:
        return False
    tail = s[2:].lstrip("·•")
    return sum(c.isalpha() and c.isascii() for c in tail) <= 3 or len(tail) == 6


_CJK_NAME = re.compile("[\u4e00-\u9fff]{2,4}")


def is_cn_name(s: str) -> bool:
    """2-4 CJK characters starting with a known surname, not ending like a place/category."""
    if not 2 <= len(s) <= 4 or _CJK_NAME.fullmatch(s) is None:
        return False
    if s[-1] in _NOT_NAME_SUFFIX:
        return False
    if s[:2] in _COMPOUND_SURNAMES:
        return len(s) >= 3
    return s[0] in SURNAMES


@cache
def _address_re() -> re.Pattern[str]:
    gaz = load_gazetteer()
    names = set(_PROVINCE_NAMES) | {c.name for c in gaz.cities}
    heads = "|".join(sorted((re.escape(n) for n in names), key=len, reverse=True))
    return re.compile(
        rf"(?:{heads})[\u4e00-\u9fff0-9A-Za-z\-#（）()]{{1,40}}?"
        r"(?:\d+[号弄巷]|[\u4e00-\u9fff]{1,6}村(?:\d+组)?)"
        r"(?:\d+(?:号楼|栋|幢|单元|层|楼|室|号))*"
    )


_COUNTY_UNIT = re.compile(r"[区县旗]|市.+市")


def _is_address(s: str) -> bool:
    m = _address_re().fullmatch(s)
    if m is None:
        return False
    # a county-level unit (区/县/旗/county-level 市) must follow the province or city
    return _COUNTY_UNIT.search(s) is not None


# ------------------------------------------------------------------ whole values


def _uscc_ok(s: str) -> bool:
    """GB 32100 check character *and* the structure behind it: a province-level (or national,
    10) region prefix and a GB 11714 organisation code with its own check character — a
    random 18-character string passes the check character alone one time in 31."""
    return is_valid_uscc(s) and s[2:4] in _USCC_REGIONS and is_valid_org_code(s[8:17])


def _id_shaped(s: str) -> bool:
    """18 digits with a real region code and birth date: an ID number with a wrong check
    character is a typo or a decoy, never a card number."""
    if len(s) != 18 or not is_valid_region_code(s[:6]):
        return False
    try:
        date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    return True



# Short values that are *not* identifiers repeat in every page (民族, 性别, dates, district
# names): remember them. Identifiers are never cached (no personal data kept around).
_NEGATIVE: dict[str, None] = {}
_NEGATIVE_MAX = 1 << 15
_NEGATIVE_LEN = 16


def classify(value: str) -> str | None:
    """The detector id of ``value`` when the whole value is one identifier, else ``None``."""
    if value in _NEGATIVE:
        return None
    kind = _classify(value)
    if kind is None and len(value) <= _NEGATIVE_LEN:
        if len(_NEGATIVE) >= _NEGATIVE_MAX:
            _NEGATIVE.clear()
        _NEGATIVE[value] = None
    return kind


def _classify(value: str) -> str | None:
    s = value.strip()
    n = len(s)
    if n < 2 or n > 80:
        return None
    c0 = s[0]
    if c0.isdigit():
        if s.isdigit():
            if n == 11:  # is_valid_cn_mobile, inline: ASCII digits in a carrier block
                return "cn_mobile" if s.isascii() and s[:3] in _MOBILE_CARRIERS else None
            if (n == 18 and is_valid_id_number(s)) or (n == 15 and is_valid_id_number_15(s)):
                return "cn_id_number"
            if n == 18 and _uscc_ok(s) and not _id_shaped(s):
                return "cn_uscc"
            if 16 <= n <= 19 and is_valid_bank_card(s) and not _id_shaped(s):
                return "bank_card"
            return None  # bare digit runs are too ambiguous for a landline
        if n == 18:
            if s[17] in "Xx" and is_valid_id_number(s[:17] + "X"):
                return "cn_id_number"
            if _uscc_ok(s):
                return "cn_uscc"
        return _classify_punctuated(s)
    if n == 18 and _uscc_ok(s):
        return "cn_uscc"
    if c0.isascii():
        return _classify_punctuated(s)
    if c0 in _PLATE_PROVINCES and n <= 9 and is_valid_cn_plate(s):
        return "cn_plate"
    if is_cn_name(s):
        return "cn_name"
    if n >= 6 and _is_address(s):
        return "cn_address"
    return None


_MOBILE_FORMATTED = re.compile(r"(?:\+86|0086|86)?[- ]?(1\d{2})[- ]?(\d{4})[- ]?(\d{4})")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}")


def _classify_punctuated(s: str) -> str | None:
    if "@" in s:
        return "email" if _EMAIL.fullmatch(s) and ".." not in s else None
    if ":" in s:
        try:
            ipaddress.IPv6Address(s)
        except ValueError:
            return None
        return "ipv6"
    if s.count(".") == 3 and s.replace(".", "").isdigit():
        try:
            ipaddress.IPv4Address(s)
        except ValueError:
            return None
        return "ipv4"
    m = _MOBILE_FORMATTED.fullmatch(s)
    if m and is_valid_cn_mobile("".join(m.groups())):
        return "cn_mobile"
    if is_valid_cn_landline(s) and not s.isdigit():
        return "cn_landline"
    if is_valid_cn_passport(s):
        return "cn_passport"
    return None


# ------------------------------------------------------------------ free text

_NAME_CONTEXT = "姓名|名字|联系人|申请人|法定代表人|法人代表|法人|户主|患者|收件人|经办人|持卡人|当事人"
_FREE = re.compile(
    r"(?P<email>[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24})"
    r"|(?P<ipv4>(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]))"
    r"|(?P<ipv6>(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{1,4}:|:){2,7}(?:[0-9A-Fa-f]{1,4}|:)(?![0-9A-Fa-f:]))"
    r"|(?P<mobile>(?<![\d+])(?:\+86[- ]?|0086[- ]?)?1[3-9]\d(?:[- ]\d{4}){2}(?!\d)"
    r"|\+86[- ]?1[3-9]\d{9}(?!\d))"
    r"|(?P<landline>(?<![\d])(?:\(0\d{2,3}\)|0\d{2,3}-)\s?[2-8]\d{6,7}(?:-\d{1,5})?(?!\d))"
    r"|(?P<token>(?<![0-9A-Za-z])[0-9A-Z][0-9A-Za-z]{7,18}(?![0-9A-Za-z]))"
    rf"|(?P<plate>(?<![A-Za-z0-9])[{_PLATE_PROVINCES}][A-HJ-NP-Z][·•]?[A-HJ-NP-Z0-9]{{4,5}}[挂学警港澳]?(?![A-Za-z0-9]))"
    rf"|(?:(?:{_NAME_CONTEXT})(?:[:：是为]|\s)*(?P<name>[\u4e00-\u9fff]{{2,4}}))"
    r"|(?P<name2>[\u4e00-\u9fff]{2,3})(?=先生|女士|同志)"
)
_PASSPORT_CONTEXT = ("护照", "passport", "Passport", "PASSPORT")


def _token_type(tok: str, text: str, start: int) -> str | None:
    n = len(tok)
    if tok.isdigit():
        if n == 18 and is_valid_id_number(tok):
            return "cn_id_number"
        if n == 15 and is_valid_id_number_15(tok):
            return "cn_id_number"
        if n == 18 and _uscc_ok(tok) and not _id_shaped(tok):
            return "cn_uscc"
        if n == 11 and is_valid_cn_mobile(tok):
            return "cn_mobile"
        if 16 <= n <= 19 and is_valid_bank_card(tok) and not _id_shaped(tok):
            return "bank_card"
        return None
    if n == 18:
        if tok[17] in "Xx" and tok[:17].isdigit() and is_valid_id_number(tok[:17] + "X"):
            return "cn_id_number"
        if _uscc_ok(tok):
            return "cn_uscc"
        return None
    if n <= 11 and is_valid_cn_passport(tok):
        before = text[max(0, start - 12):start]
        if any(k in before for k in _PASSPORT_CONTEXT):
            return "cn_passport"
    return None


# What every free-text pattern needs in ASCII text (plates and names need Chinese characters):
# '@' (email), '.' (IPv4), ':' (IPv6), 7 alphanumerics in a row (tokens: ID numbers, cards,
# USCCs, passports, bare or +86 mobiles, landline numbers) or 3 digits, a separator and 4
# digits (a mobile written 138-0013-8000). Text without any of them holds no identifier.
_ASCII_MAYBE = re.compile(r"[@.:]|[0-9A-Za-z]{7}|\d{3}[- ]\d{4}")


def find_all(text: str, types: Iterable[str] | None = None) -> list[Match]:
    """Every validated identifier in ``text`` (non-overlapping, left to right).

    Names are reported only with context (姓名：…, …先生); passports only after 护照/passport.
    ``types`` restricts the result to some detector ids.
    """
    if text.isascii() and _ASCII_MAYBE.search(text) is None:
        return []  # a date, a code, a short word: nothing the patterns below could match
    return _find_all(text, types)


def _find_all(text: str, types: Iterable[str] | None = None) -> list[Match]:
    wanted = None if types is None else frozenset(types)
    out: list[Match] = []
    for m in _FREE.finditer(text):
        kind = m.lastgroup
        start, end = m.span(kind)  # type: ignore[arg-type]
        value = text[start:end]
        t: str | None
        if kind == "token":
            t = _token_type(value, text, start)
        elif kind == "email":
            t = "email" if ".." not in value else None
        elif kind == "ipv4":
            t = "ipv4" if _classify_punctuated(value) == "ipv4" else None
        elif kind == "ipv6":
            t = "ipv6" if _classify_punctuated(value) == "ipv6" else None
        elif kind == "mobile":
            t = "cn_mobile" if _classify_punctuated(value) == "cn_mobile" else None
        elif kind == "landline":
            t = "cn_landline" if is_valid_cn_landline(value) else None
        elif kind == "plate":
            t = "cn_plate" if is_valid_cn_plate(value) else None
        else:  # name, name2
            t = "cn_name" if is_cn_name(value) else None
        if t is not None and (wanted is None or t in wanted):
            out.append(Match(t, start, end, value))
    # an address starts with a province or city name (Chinese characters): ASCII text holds none
    if (wanted is None or "cn_address" in wanted) and not text.isascii():
        taken = [(m.start, m.end) for m in out]
        for m in _address_re().finditer(text):
            s, e = m.span()
            if _is_address(m.group()) and not any(a < e and s < b for a, b in taken):
                out.append(Match("cn_address", s, e, m.group()))
        out.sort(key=lambda m: m.start)
    return out
