"""Detectors validate: generated valid identifiers are found, corrupted ones are not."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ztgw.gateway.protection.detectors import DETECTOR_IDS, classify, find_all
from ztgw.gateway.protection.identifiers import (
    USCC_ALPHABET,
    id_check_char,
    load_gazetteer,
    luhn_check_digit,
    mobile_prefixes,
    org_code_check_char,
    uscc_check_char,
)

GAZ = load_gazetteer()
REGIONS = [d.code for d in GAZ.districts]

region = st.sampled_from(REGIONS)
birth = st.dates(min_value=date(1920, 1, 1), max_value=date(2020, 12, 31))
seq = st.integers(0, 999).map(lambda n: f"{n:03d}")


@st.composite
def id_numbers(draw: st.DrawFn) -> str:
    body = draw(region) + draw(birth).strftime("%Y%m%d") + draw(seq)
    return body + id_check_char(body)


@st.composite
def id15(draw: st.DrawFn) -> str:
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(1999, 12, 31)))
    return draw(region) + born.strftime("%y%m%d") + draw(seq)


@st.composite
def usccs(draw: st.DrawFn) -> str:
    head = draw(st.sampled_from(["91", "92", "93", "11", "12", "51", "52"]))
    org = "".join(draw(st.lists(st.sampled_from(USCC_ALPHABET), min_size=8, max_size=8)))
    org += org_code_check_char(org)
    assume(org[-1] in USCC_ALPHABET)  # a GB 11714 check char 'X' is fine, none other is outside
    body = head + draw(region) + org
    return body + uscc_check_char(body)


@st.composite
def unionpay_cards(draw: st.DrawFn) -> str:
    n = draw(st.sampled_from([16, 17, 19]))
    body = "62" + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=n - 3, max_size=n - 3)))
    return body + luhn_check_digit(body)


@st.composite
def mobiles(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(mobile_prefixes())) + f"{draw(st.integers(0, 10**8 - 1)):08d}"


def _other_digit(d: str, k: int) -> str:
    return str((int(d) + k) % 10)


@given(id_numbers())
def test_valid_id_numbers_are_found(s: str) -> None:
    assert classify(s) == "cn_id_number"
    assert [m.type for m in find_all(f"身份证号{s}，谢谢")] == ["cn_id_number"]


@given(id15())
def test_legacy_15_digit_numbers_are_found(s: str) -> None:
    assert classify(s) == "cn_id_number"


@given(id_numbers(), st.integers(1, 10))
def test_id_numbers_with_a_wrong_check_char_are_not(s: str, k: int) -> None:
    wrong = "0123456789X"[("0123456789X".index(s[17]) + k) % 11]
    decoy = s[:17] + wrong
    assert classify(decoy) is None  # neither an ID number nor (18 digits, id-shaped) a card
    assert find_all(f"订单号{decoy}") == []


@given(id_numbers(), st.integers(0, 16), st.integers(1, 9))
def test_single_digit_errors_are_detected(s: str, pos: int, k: int) -> None:
    bad = s[:pos] + _other_digit(s[pos], k) + s[pos + 1:]
    assert classify(bad) != "cn_id_number"  # MOD 11-2 catches every single substitution


@given(usccs())
def test_valid_usccs_are_found(s: str) -> None:
    assert classify(s) == "cn_uscc"
    assert [m.type for m in find_all(f"统一社会信用代码：{s}")] == ["cn_uscc"]


@given(usccs(), st.integers(1, 30))
def test_usccs_with_a_wrong_check_char_are_not(s: str, k: int) -> None:
    wrong = USCC_ALPHABET[(USCC_ALPHABET.index(s[17]) + k) % 31]
    assert classify(s[:17] + wrong) != "cn_uscc"


@given(usccs(), st.integers(1, 9))
def test_usccs_with_a_broken_organisation_code_are_not(s: str, k: int) -> None:
    org = s[8:16] + "0123456789X"[("0123456789X".index(s[16]) + k) % 11] if s[16] in "0123456789X" else None
    assume(org is not None and org[-1] in USCC_ALPHABET)
    body = s[:8] + org
    assert classify(body + uscc_check_char(body)) != "cn_uscc"  # GB 32100 passes, GB 11714 does not


@given(unionpay_cards())
def test_unionpay_cards_are_found(s: str) -> None:
    assume(len(s) != 18)
    assert classify(s) == "bank_card"
    assert [m.type for m in find_all(f"卡号 {s} 。")] == ["bank_card"]


@given(unionpay_cards(), st.integers(1, 9))
def test_cards_failing_luhn_are_not(s: str, k: int) -> None:
    assert classify(s[:-1] + _other_digit(s[-1], k)) is None


@given(mobiles())
def test_mobiles(s: str) -> None:
    assert classify(s) == "cn_mobile"
    assert classify(f"+86 {s[:3]} {s[3:7]} {s[7:]}") == "cn_mobile"
    assert [m.type for m in find_all(f"电话{s[:3]}-{s[3:7]}-{s[7:]}")] == ["cn_mobile"]


@given(st.sampled_from(["100", "110", "120", "121", "122", "123", "124", "125", "126", "127", "128", "129",
                        "140", "141", "142", "143", "144", "146", "148", "154", "160", "161", "163",
                        "164", "168", "169", "174", "179", "194"]), st.integers(0, 10**8 - 1))
def test_numbers_outside_mobile_blocks_are_not_mobiles(prefix: str, rest: int) -> None:
    assert classify(prefix + f"{rest:08d}") != "cn_mobile"


@pytest.mark.parametrize(("value", "expected"), [
    ("010-62751234", "cn_landline"), ("0755-76680841", "cn_landline"), ("(020)87654321", "cn_landline"),
    ("0755-7668084", "cn_landline"), ("010-6275123", None),  # 7-digit locals only after 4-digit codes
    ("0155-76680841", None),  # no area code starts 01 except 010
    ("zhang.san@example.com.cn", "email"), ("a..b@example.com", None), ("@example.com", None),
    ("192.168.1.20", "ipv4"), ("256.1.1.1", None), ("1.2.3", None),
    ("2001:db8::1", "ipv6"), ("fe80::1ff:fe23:4567:890a", "ipv6"), ("12:30:45", None),
    ("E12345678", "cn_passport"), ("EA1234567", "cn_passport"), ("X12345678", None),
    ("粤B12345", "cn_plate"), ("京A·D12345", "cn_plate"), ("粤BI2345", None), ("沪A1234", None),
    ("张三丰", "cn_name"), ("欧阳修文", "cn_name"), ("汉族", None), ("朝阳区", None), ("已婚", None),
    ("广东省广州市天河区中山路12号3栋501室", "cn_address"), ("北京市朝阳区建国路88号", "cn_address"),
    ("广东省", None), ("信息传输、软件和信息技术服务业", None),
    ("2025-01-15", None), ("JF202501000001", None), ("202511220000123456", None),
])
def test_fixed_examples(value: str, expected: str | None) -> None:
    assert classify(value) == expected


def test_free_text_finds_every_kind_with_context() -> None:
    text = ("申请人：张三丰，身份证11010519491231002X，电话138-0013-8000，固话020-87654321，"
            "邮箱a.b@example.com，IP 10.0.0.1 与 2001:db8::1，车牌粤B12345，护照E12345678，"
            "住址广东省广州市天河区中山路12号3栋501室，卡号6217009486897985095，订单号202511220000123456")
    found = {m.type: m.value for m in find_all(text)}
    assert found == {
        "cn_name": "张三丰", "cn_id_number": "11010519491231002X", "cn_mobile": "138-0013-8000",
        "cn_landline": "020-87654321", "email": "a.b@example.com", "ipv4": "10.0.0.1",
        "ipv6": "2001:db8::1", "cn_plate": "粤B12345", "cn_passport": "E12345678",
        "cn_address": "广东省广州市天河区中山路12号3栋501室", "bank_card": "6217009486897985095",
    }
    assert set(found) | {"cn_uscc"} == set(DETECTOR_IDS)  # USCCs: see test_valid_usccs_are_found
    for m in find_all(text):
        assert text[m.start:m.end] == m.value


def test_names_and_passports_need_context_in_free_text() -> None:
    assert find_all("今天张三丰来过，编号E12345678") == []
    assert [m.value for m in find_all("王小明先生已到")] == ["王小明"]


def test_type_filter() -> None:
    text = "身份证11010519491231002X 电话13800138000"
    assert [m.type for m in find_all(text, ["cn_mobile"])] == ["cn_mobile"]


@settings(max_examples=300)
@given(st.text(alphabet="0123456789", min_size=18, max_size=18))
def test_random_18_digit_numbers_are_rarely_identifiers(s: str) -> None:
    kind = classify(s)
    if kind == "cn_id_number":
        assert id_check_char(s[:17]) == s[17]  # only when the check really holds
    assert kind in (None, "cn_id_number", "cn_uscc", "bank_card")


def test_future_birth_dates_are_not_id_numbers() -> None:
    born = (date.today() + timedelta(days=30)).strftime("%Y%m%d")
    body = "110105" + born + "001"
    assert classify(body + id_check_char(body)) is None


_ASCII_PIECES = [
    "13800138000", "138-0013-8000", "138 0013 8000", "+86 13800138000", "+8613800138000",
    "0086-13800138000", "11010519491231002X", "110105194912310029", "010-12345678", "(010)12345678",
    "0755-7668084", "a@b.cn", "x.y@mail.gov.cn", "1.2.3.4", "192.168.0.1", "::1", "fe80::1",
    "E12345678", "G1234567", "6217009486897985095", "91440306MAF3YCRH6X", "1956-04-01", "2025-01",
    "abc", "12", "-", " ", "/", "#", "No.", ":", "@",
]


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.text(alphabet="0123456789-+ ()@.:Xx#/EGabcAZ", max_size=40),
                 st.lists(st.sampled_from(_ASCII_PIECES), max_size=6).map("".join)))
def test_the_ascii_gate_of_find_all_drops_nothing(text: str) -> None:
    """find_all skips ASCII text without '@', '.', ':', 7 alphanumerics or a 3-4 digit group:
    the full scan finds nothing there either."""
    from ztgw.gateway.protection.detectors import _find_all

    assert find_all(text) == _find_all(text)
