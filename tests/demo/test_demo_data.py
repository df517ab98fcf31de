"""The demo datasets: sizes, identifier validity, uniqueness, consistency and determinism."""

from __future__ import annotations

import time
from collections import Counter
from datetime import date

import pytest

from ztgw.gateway.demo.data import (
    AS_OF,
    DATASET_FIELDS,
    DATASET_KEYS,
    DATASETS,
    default_data,
    generate,
    get_dataset,
    key_field,
)
from ztgw.gateway.protection.identifiers import (
    is_unionpay,
    is_valid_cn_mobile,
    is_valid_id_number,
    is_valid_luhn,
    is_valid_org_code,
    is_valid_uscc,
    load_gazetteer,
    parse_id_number,
    parse_uscc,
)

GAZ = load_gazetteer()


@pytest.fixture(scope="module")
def persons() -> list[dict]:
    return get_dataset("persons")


@pytest.fixture(scope="module")
def companies() -> list[dict]:
    return get_dataset("companies")


@pytest.fixture(scope="module")
def contributions() -> list[dict]:
    return get_dataset("contributions")


def test_counts_and_fields() -> None:
    sizes = {name: len(get_dataset(name)) for name in DATASETS}
    assert sizes["persons"] >= 10_000
    assert sizes["companies"] == 2_000
    assert sizes["contributions"] >= 20_000
    for name in DATASETS:
        fields = DATASET_FIELDS[name]
        assert key_field(name) == DATASET_KEYS[name] == fields[0]
        for record in get_dataset(name):
            assert tuple(record) == fields


def test_unknown_dataset() -> None:
    with pytest.raises(KeyError):
        get_dataset("nope")
    with pytest.raises(KeyError):
        key_field("nope")


def test_get_dataset_returns_a_fresh_list() -> None:
    a = get_dataset("persons")
    a.clear()
    assert len(get_dataset("persons")) >= 10_000


def test_keys_are_unique() -> None:
    for name in DATASETS:
        keys = [r[key_field(name)] for r in get_dataset(name)]
        assert len(keys) == len(set(keys)), name


def test_persons(persons: list[dict]) -> None:
    mobiles = set()
    for p in persons:
        assert is_valid_id_number(p["id_number"], today=AS_OF, known_region=True), p
        info = parse_id_number(p["id_number"])
        assert info.sex == p["gender"]
        assert info.birth_date.isoformat() == p["birth_date"]
        assert date(1940, 1, 1) <= info.birth_date <= date(2008, 12, 31)
        assert is_valid_cn_mobile(p["mobile"])
        mobiles.add(p["mobile"])
        district = GAZ.district(p["district_code"])
        assert district is not None and district.name == p["district"]
        assert p["address"].startswith(district.full_name)
        assert p["marital_status"] in {"未婚", "已婚", "离婚", "丧偶"}
        assert p["household_type"] in {"家庭户", "集体户"}
        assert 2 <= len(p["name"]) <= 4
    assert len(mobiles) == len(persons)


def test_persons_look_like_a_population(persons: list[dict]) -> None:
    ethnic = Counter(p["ethnicity"] for p in persons)
    assert 0.85 < ethnic["汉族"] / len(persons) < 0.96
    genders = Counter(p["gender"] for p in persons)
    assert 0.45 < genders["男"] / len(persons) < 0.57
    surnames = Counter(p["name"][0] for p in persons)
    assert {s for s, _ in surnames.most_common(5)} <= {"王", "李", "张", "刘", "陈", "杨"}
    # most people live in the district their ID number was issued in
    same = sum(p["id_number"][:6] == p["district_code"] for p in persons)
    assert 0.7 < same / len(persons) < 0.9
    assert {p["district_code"][:4] for p in persons} >= {"4401", "4403", "1101", "3101"}
    # minors are never married
    for p in persons:
        if p["birth_date"] > "2005-06-30":  # under 20, the lower legal age
            assert p["marital_status"] == "未婚"


def test_companies(companies: list[dict], persons: list[dict]) -> None:
    by_id = {p["id_number"]: p for p in persons}
    names = set()
    for c in companies:
        assert is_valid_uscc(c["uscc"]), c
        info = parse_uscc(c["uscc"])
        assert (info.registration_authority, info.organization_category) == ("9", "1")
        assert info.region_code == c["district_code"]
        assert is_valid_org_code(info.org_code)
        assert info.org_code.startswith("MA") == (c["established"] >= "2015-10-01")
        district = GAZ.district(c["district_code"])
        assert district is not None and district.name == c["district"]
        assert c["name"].startswith(district.city.name + district.name)
        assert c["name"].endswith("公司")
        names.add(c["name"])
        assert c["address"].startswith(district.full_name)
        rep = by_id[c["legal_rep_id_number"]]
        assert rep["name"] == c["legal_representative"]
        assert rep["birth_date"] < c["established"]
        assert isinstance(c["registered_capital"], int) and c["registered_capital"] > 0
        assert "1995-01-01" <= c["established"] <= AS_OF.isoformat()
        assert c["status"] in {"存续", "在业", "注销", "吊销", "迁出"}
        phone = c["contact_phone"]
        assert is_valid_cn_mobile(phone) or phone.startswith(district.city.area_code + "-")
    assert len(names) == len(companies)


def test_contributions(contributions: list[dict], persons: list[dict], companies: list[dict]):
    by_id = {p["id_number"]: p for p in persons}
    employers = {c["uscc"]: c for c in companies}
    cards: dict[str, str] = {}
    for r in contributions:
        p = by_id[r["id_number"]]
        assert p["name"] == r["name"]
        employer = employers[r["employer_uscc"]]
        assert employer["name"] == r["employer_name"]
        assert employer["status"] in {"存续", "在业"}
        assert r["month"] in {f"2025-0{m}" for m in range(1, 7)}
        assert r["record_id"] == f"JF{r['month'].replace('-', '')}{r['record_id'][-6:]}"
        base = r["base_salary"]
        assert isinstance(base, int) and 3000 <= base <= 40000
        assert r["pension_personal"] == round(base * 0.08, 2)
        assert r["pension_employer"] == round(base * 0.16, 2)
        assert r["medical"] == round(base * 0.02, 2)
        assert r["unemployment"] == round(base * 0.005, 2)
        card = r["bank_card"]
        assert is_valid_luhn(card) and is_unionpay(card), card
        assert r["bank_name"].endswith("银行")
        # one card per person, and no card shared between people
        assert cards.setdefault(card, r["id_number"]) == r["id_number"]
    per_person = Counter(r["id_number"] for r in contributions)
    assert set(per_person.values()) == {6}
    assert len(per_person) >= 3000


def test_generation_is_deterministic_and_seeded() -> None:
    a = generate(7, persons=300, companies=40, contributors=50)
    b = generate(7, persons=300, companies=40, contributors=50)
    c = generate(8, persons=300, companies=40, contributors=50)
    assert a == b
    assert a.persons != c.persons
    assert len(a.persons) == 300 and len(a.companies) == 40 and len(a.contributions) == 300
    # the default dataset is the default seed's output
    assert default_data().persons[:50] == generate(persons=10_000).persons[:50]


def test_generation_is_fast() -> None:
    started = time.perf_counter()
    generate(99)
    assert time.perf_counter() - started < 3.0  # ~0.5 s on a laptop; generous for CI
