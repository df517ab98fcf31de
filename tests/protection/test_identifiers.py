"""Identifier validators: published examples and the error-detection properties of each code.

Provenance of the fixed examples:
- 11010519491231002X, 440524188001010014: the worked examples in GB 11643-1999 annex A.
- 91350100M000100Y43: the example code in GB 32100-2015.
- 914403001922038216 (华为技术有限公司), 91440300708461136T (深圳市腾讯计算机系统有限公司),
  91330100799655058B (阿里巴巴（中国）有限公司): published on the national enterprise credit
  information publicity system; their embedded organisation codes pass GB 11714 too.
- 79927398713: the Luhn example from ISO/IEC 7812-1 annex B (and Wikipedia).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgw.gateway.protection.identifiers import (
    USCC_ALPHABET,
    InvalidIdentifierError,
    cn_mobile_carrier,
    id15_to_id18,
    id_check_char,
    is_unionpay,
    is_valid_cn_mobile,
    is_valid_id_number,
    is_valid_id_number_15,
    is_valid_luhn,
    is_valid_org_code,
    is_valid_region_code,
    is_valid_uscc,
    load_gazetteer,
    luhn_check_digit,
    mobile_prefixes,
    org_code_check_char,
    parse_id_number,
    parse_uscc,
    uscc_check_char,
)

GAZ = load_gazetteer()
ID_CHARS = "0123456789X"

# ---------------------------------------------------------------- GB 11643 ID numbers


@pytest.mark.parametrize("s", ["11010519491231002X", "440524188001010014"])
def test_published_id_examples_are_valid(s: str) -> None:
    assert is_valid_id_number(s)


def test_parse_id_number() -> None:
    info = parse_id_number("11010519491231002X")
    assert info.region_code == "110105"
    assert info.birth_date == date(1949, 12, 31)
    assert info.sex == "女"  # sequence 002: even
    assert parse_id_number("440524188001010014").sex == "男"  # sequence 001: odd


def test_check_char_x_and_weights() -> None:
    assert id_check_char("11010519491231002") == "X"
    with pytest.raises(InvalidIdentifierError):
        id_check_char("1101051949123100")
    with pytest.raises(InvalidIdentifierError):
        id_check_char("1101051949123100A")


@pytest.mark.parametrize(
    "s",
    [
        "",
        "11010519491231002x",  # the check character is a capital X
        "11010519491231002",  # 17 characters
        "110105194912310021",  # wrong check digit
        "110105194902300021",  # 30 February (check char recomputed below)
        "000000194912310021",
        "99010519491231002X",
        "1101051949123100２X",  # full-width digit
    ],
)
def test_invalid_id_numbers(s: str) -> None:
    assert not is_valid_id_number(s)


def test_impossible_dates_fail_even_with_right_check_char() -> None:
    for body in ("11010519490230002", "11010517990101002", "11010520991231002"):
        assert not is_valid_id_number(body + id_check_char(body), today=date(2025, 1, 1))


def test_future_birth_date_depends_on_today() -> None:
    body = "11010520300101002"
    s = body + id_check_char(body)
    assert not is_valid_id_number(s, today=date(2025, 1, 1))
    assert is_valid_id_number(s, today=date(2031, 1, 1))


def test_known_region_option() -> None:
    body = "13112119800101002"  # 131121 is a real-looking Hebei code outside the gazetteer
    s = body + id_check_char(body)
    assert is_valid_id_number(s)
    assert not is_valid_id_number(s, known_region=True)
    assert is_valid_id_number("11010519491231002X", known_region=True)


def test_15_digit_legacy_form() -> None:
    assert is_valid_id_number_15("110105491231002")
    assert id15_to_id18("110105491231002") == "11010519491231002X"
    assert parse_id_number("110105491231002").id_number == "11010519491231002X"
    assert not is_valid_id_number_15("110105490231002")  # 31 February 1949
    assert not is_valid_id_number_15("11010549123100X")
    with pytest.raises(InvalidIdentifierError):
        id15_to_id18("110105491331002")


@st.composite
def valid_id_numbers(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from([d.code for d in GAZ.districts]))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2024, 12, 31)))
    seq = draw(st.integers(0, 999))
    body = f"{region}{born:%Y%m%d}{seq:03d}"
    return body + id_check_char(body)


@given(valid_id_numbers())
def test_generated_id_numbers_are_valid(s: str) -> None:
    assert is_valid_id_number(s, known_region=True)
    info = parse_id_number(s)
    assert info.sex == ("男" if int(s[16]) % 2 else "女")


@given(valid_id_numbers(), st.integers(0, 17), st.sampled_from(ID_CHARS))
def test_any_single_character_change_invalidates_id_number(s: str, i: int, c: str) -> None:
    if s[i] == c:
        return
    assert not is_valid_id_number(s[:i] + c + s[i + 1 :])


# ---------------------------------------------------------------- GB 32100 USCC

PUBLISHED_USCC = [
    "91350100M000100Y43",
    "914403001922038216",
    "91440300708461136T",
    "91330100799655058B",
]


@pytest.mark.parametrize("s", PUBLISHED_USCC)
def test_published_uscc_examples_are_valid(s: str) -> None:
    assert is_valid_uscc(s)
    assert uscc_check_char(s[:17]) == s[17]
    assert is_valid_org_code(s[8:17])


def test_parse_uscc() -> None:
    info = parse_uscc("914403001922038216")
    assert (info.registration_authority, info.organization_category) == ("9", "1")
    assert info.region_code == "440300"
    assert info.org_code == "192203821"
    with pytest.raises(InvalidIdentifierError):
        parse_uscc("914403001922038217")


def test_uscc_weights_are_powers_of_three() -> None:
    # the weights written in GB 32100 §4.3
    expected = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    body = "0" * 17
    for i, w in enumerate(expected):
        probe = body[:i] + "1" + body[i + 1 :]
        assert uscc_check_char(probe) == USCC_ALPHABET[(31 - w) % 31]


@pytest.mark.parametrize(
    "s",
    [
        "",
        "91350100M000100Y4",
        "91350100M000100Y44",
        "91350100M000100I43",  # I is not in the alphabet
        "91350100m000100Y43",
        "91A50100M000100Y43",  # region code must be digits
    ],
)
def test_invalid_uscc(s: str) -> None:
    assert not is_valid_uscc(s)


def test_uscc_check_char_rejects_foreign_characters() -> None:
    with pytest.raises(InvalidIdentifierError):
        uscc_check_char("91350100O00010OY4")


@st.composite
def valid_usccs(draw: st.DrawFn) -> str:
    head = draw(st.sampled_from(["91", "92", "93", "11", "12", "51", "52", "53", "Y1"]))
    region = draw(st.sampled_from([d.code for d in GAZ.districts]))
    org = draw(st.text(alphabet=USCC_ALPHABET, min_size=9, max_size=9))
    body = head + region + org
    return body + uscc_check_char(body)


@given(valid_usccs())
def test_generated_usccs_are_valid(s: str) -> None:
    assert is_valid_uscc(s)


@given(valid_usccs(), st.integers(0, 17), st.sampled_from(USCC_ALPHABET))
def test_any_single_character_change_invalidates_uscc(s: str, i: int, c: str) -> None:
    if s[i] == c:
        return
    assert not is_valid_uscc(s[:i] + c + s[i + 1 :])


def test_org_code() -> None:
    assert org_code_check_char("19220382") == "1"
    assert is_valid_org_code("19220382-1")
    assert not is_valid_org_code("192203822")
    assert org_code_check_char("MA5DXXXX") in "0123456789X"


# ---------------------------------------------------------------- Luhn / UnionPay


def test_luhn_published_example() -> None:
    assert is_valid_luhn("79927398713")
    assert luhn_check_digit("7992739871") == "3"
    assert not is_valid_luhn("79927398710")
    assert not is_valid_luhn("7")
    assert not is_valid_luhn("7992 7398 713")
    with pytest.raises(InvalidIdentifierError):
        luhn_check_digit("")


card_payloads = st.text(alphabet="0123456789", min_size=15, max_size=18)


@given(card_payloads)
def test_luhn_check_digit_makes_valid(payload: str) -> None:
    assert is_valid_luhn(payload + luhn_check_digit(payload))


@given(card_payloads, st.integers(0, 18), st.integers(1, 9))
def test_luhn_catches_every_single_digit_error(payload: str, i: int, delta: int) -> None:
    card = payload + luhn_check_digit(payload)
    i %= len(card)
    wrong = str((int(card[i]) + delta) % 10)
    assert not is_valid_luhn(card[:i] + wrong + card[i + 1 :])


@given(card_payloads, st.integers(0, 17))
def test_luhn_catches_adjacent_transpositions_except_09(payload: str, i: int) -> None:
    card = payload + luhn_check_digit(payload)
    i %= len(card) - 1
    a, b = card[i], card[i + 1]
    if a == b:
        return
    swapped = card[:i] + b + a + card[i + 2 :]
    assert is_valid_luhn(swapped) == ({a, b} == {"0", "9"})


def test_unionpay() -> None:
    card = "6222020200112233" + "44"
    card += luhn_check_digit(card)
    assert is_unionpay(card) and is_valid_luhn(card)
    assert not is_unionpay("4111111111111111")
    assert not is_unionpay("62220202")


# ---------------------------------------------------------------- mobile numbers


@pytest.mark.parametrize(
    ("s", "carrier"),
    [
        ("13800138000", "中国移动"),
        ("18612345678", "中国联通"),
        ("18912345678", "中国电信"),
        ("19212345678", "中国广电"),
        ("17012345678", "虚拟运营商"),
    ],
)
def test_known_mobile_blocks(s: str, carrier: str) -> None:
    assert is_valid_cn_mobile(s)
    assert cn_mobile_carrier(s) == carrier


@pytest.mark.parametrize(
    "s",
    [
        "",
        "1380013800",
        "138001380000",
        "12012345678",
        "10086123456",
        "+8613800138000",
        "1380013800a",
        "16012345678",
    ],
)
def test_invalid_mobiles(s: str) -> None:
    assert not is_valid_cn_mobile(s)


@given(st.sampled_from(mobile_prefixes()), st.integers(0, 10**8 - 1))
def test_every_known_block_is_valid(prefix: str, rest: int) -> None:
    s = f"{prefix}{rest:08d}"
    assert is_valid_cn_mobile(s)
    assert s[1] in "3456789"


# ---------------------------------------------------------------- GB/T 2260 gazetteer

REQUIRED = {
    "440104": "越秀区", "440106": "天河区", "440105": "海珠区", "440103": "荔湾区",
    "440111": "白云区", "440112": "黄埔区", "440113": "番禺区", "440304": "福田区",
    "440305": "南山区", "440303": "罗湖区", "440306": "宝安区", "440307": "龙岗区",
    "110101": "东城区", "110102": "西城区", "110105": "朝阳区", "110108": "海淀区",
    "310101": "黄浦区", "310115": "浦东新区",
}  # fmt: skip


def test_gazetteer_contents() -> None:
    assert len(GAZ.provinces) >= 10
    assert len(GAZ.cities) >= 30
    assert len(GAZ.districts) >= 150
    for code, name in REQUIRED.items():
        d = GAZ.district(code)
        assert d is not None and d.name == name
    assert GAZ.by_code["440106"].full_name == "广东省广州市天河区"
    assert GAZ.by_code["110108"].full_name == "北京市海淀区"


def test_gazetteer_codes_are_consistent() -> None:
    raw = json.loads(resources.files("ztgw.gateway.protection").joinpath("gazetteer.json").read_text("utf-8"))
    assert raw["source"]
    codes = [d.code for d in GAZ.districts]
    assert len(codes) == len(set(codes))
    for d in GAZ.districts:
        assert d.code[:4] == d.city.code[:4]
        assert d.city.province_code == d.code[:2] + "0000"
        assert d.name.endswith("区")
        assert is_valid_region_code(d.code, known_only=True)
        assert d.city.area_code.startswith("0")


def test_region_code_shapes() -> None:
    assert is_valid_region_code("440106")
    assert not is_valid_region_code("440000")
    assert not is_valid_region_code("990106")
    assert not is_valid_region_code("44010")


def test_future_today_does_not_matter_for_past_dates() -> None:
    assert is_valid_id_number("11010519491231002X", today=date.today() + timedelta(days=1))


def _reference_id_valid(s: str, today: date) -> bool:
    """GB 11643 as written: weights 2^(17-i) mod 11, a real date from 1800 to today."""
    from ztgw.gateway.protection.identifiers import _PROVINCE_PREFIXES

    if len(s) != 18 or not all(c in "0123456789" for c in s[:17]):
        return False
    total = sum(int(c) * (2 ** (17 - i) % 11) for i, c in enumerate(s[:17]))
    if "10X98765432"[total % 11] != s[17]:
        return False
    if s[:2] not in _PROVINCE_PREFIXES or s[2:6] == "0000":
        return False
    try:
        born = date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return False
    return date(1800, 1, 1) <= born <= today


@settings(max_examples=3000, deadline=None)
@given(region=st.sampled_from(["110105", "440106", "320509", "990000", "110000", "1101٠5"]),
       year=st.integers(1700, 2300), month=st.integers(0, 13), day=st.integers(0, 32),
       seq=st.integers(0, 999), check=st.sampled_from(list("0123456789Xx")), fix=st.booleans())
def test_fast_id_validation_equals_the_reference(region: str, year: int, month: int, day: int, seq: int,
                                                 check: str, fix: bool) -> None:
    """The base-13 check-character sum and the month-end table give what the standard says."""
    from ztgw.gateway.protection.identifiers import id_check_char, is_valid_id_number

    body = f"{region}{year:04d}{month:02d}{day:02d}{seq:03d}"[:17]
    if fix and body.isascii() and body.isdigit():
        check = id_check_char(body)
    s = body + check
    today = date.today()
    assert is_valid_id_number(s) == _reference_id_valid(s, today)
    assert is_valid_id_number(s, today=date(2000, 1, 1)) == _reference_id_valid(s, date(2000, 1, 1))
