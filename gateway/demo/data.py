"""Deterministic synthetic records for the demo realm's three datasets.

Everything is generated from one seed with :class:`random.Random` (demo data, not security
material) and is realistic where a checker can look: ID numbers, USCCs, bank cards and
mobile numbers pass :mod:`ztgw.gateway.protection.identifiers`; region codes are real
GB/T 2260 districts; names follow the frequency of common surnames. Nothing here describes
a real person or enterprise, except by coincidence.

Records are plain dicts (JSON-ready: str, int, float), generated once per process on first
use and shared: treat them as read-only.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from ztgw.gateway.protection.identifiers import (
    USCC_ALPHABET,
    District,
    id_check_char,
    load_gazetteer,
    luhn_check_digit,
    mobile_prefixes,
    org_code_check_char,
    uscc_check_char,
)

__all__ = [
    "AS_OF",
    "COMPANIES",
    "CONTRIBUTIONS",
    "DATASETS",
    "DATASET_FIELDS",
    "DATASET_KEYS",
    "DEFAULT_SEED",
    "PERSONS",
    "DemoData",
    "Record",
    "default_data",
    "generate",
    "get_dataset",
    "key_field",
]

Record = dict[str, Any]

DEFAULT_SEED = 20250630
AS_OF = date(2025, 6, 30)  # the demo's "today": ages, statuses and months are relative to it

PERSONS, COMPANIES, CONTRIBUTIONS = "persons", "companies", "contributions"
DATASETS: tuple[str, ...] = (PERSONS, COMPANIES, CONTRIBUTIONS)
DATASET_KEYS: Mapping[str, str] = MappingProxyType(
    {PERSONS: "id_number", COMPANIES: "uscc", CONTRIBUTIONS: "record_id"}
)
DATASET_FIELDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        PERSONS: (
            "id_number", "name", "gender", "birth_date", "ethnicity", "mobile", "address",
            "district", "district_code", "marital_status", "household_type",
        ),
        COMPANIES: (
            "uscc", "name", "legal_representative", "legal_rep_id_number",
            "registered_capital", "established", "industry", "status", "address",
            "district", "district_code", "contact_phone",
        ),
        CONTRIBUTIONS: (
            "record_id", "id_number", "name", "employer_uscc", "employer_name", "month",
            "base_salary", "pension_personal", "pension_employer", "medical",
            "unemployment", "bank_card", "bank_name",
        ),
    }
)  # fmt: skip

# ---------------------------------------------------------------------- vocabularies


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Surnames with their approximate share (per mille) in the 2020 census.
_SURNAMES = (
    "王71 李70 张68 刘54 陈46 杨31 黄25 赵23 吴20 周19 徐15 孙14 马13 朱12 胡12 郭11 "
    "何10 林10 高9 罗9 郑8 梁8 谢7 宋6 唐6 许6 韩6 冯6 邓6 曹5 彭5 曾5 肖5 田5 董5 "
    "潘4 袁4 蔡4 蒋4 余4 于4 杜4 叶4 程4 魏4 苏3 吕3 丁3 任3 卢3 姚3 沈3 钟3 姜3 "
    "崔3 谭3 陆3 范2 汪2 廖2 石2 金2 韦2 贾2 夏2 付2 方2 邹2 熊2 白2 孟2 秦2 邱2 "
    "侯2 江2 尹2 薛2 闫2 段2 雷2 龙2 黎2 史2 陶2 贺2 毛2 郝2 顾2 龚2 邵2 万2 覃2 "
    "武2 钱2 戴2 严2 欧阳1 司马1 上官1 诸葛1"
)
_MALE_CHARS = (
    "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林洋"
    "峰建国志文东海成亮晨阳博轩睿泽子豪然铭航振宏毅庆德"
)
_FEMALE_CHARS = "芳娜敏静丽艳娟霞秀玲燕婷雪慧红梅琳颖倩欣悦怡琪涵萱妍佳雨思诗晓莉萍洁蕾月瑶彤丹凤桂兰英琴"
_SHARED_CHARS = "文明华佳一子晓嘉安清晨雨春秋心宁"

# Approximate share (per mille) of the population, 2020 census; the rest are listed later.
_ETHNICITIES = (
    "汉族911 壮族14 回族8 满族7 维吾尔族8 苗族8 彝族7 土家族7 藏族5 蒙古族4 侗族2 布依族3 瑶族2 白族1 朝鲜族1"
)
_ROADS = _words(
    "中山路 人民路 解放路 建设路 和平路 新华路 文化路 胜利路 光明路 友谊路 "
    "长江路 黄河路 东风路 朝阳路 建国路 青年路 花园路 学府路 滨江路 环城路 "
    "工业大道 科技路 迎宾大道 府前路 沿江路 幸福路 振兴路 民主路 团结路 育才路"
)

# (word in the company name, GB/T 4754-2017 industry section)
_INDUSTRIES = (
    ("科技", "信息传输、软件和信息技术服务业"),
    ("信息技术", "信息传输、软件和信息技术服务业"),
    ("网络科技", "信息传输、软件和信息技术服务业"),
    ("软件", "信息传输、软件和信息技术服务业"),
    ("数据服务", "信息传输、软件和信息技术服务业"),
    ("贸易", "批发和零售业"),
    ("商贸", "批发和零售业"),
    ("电子商务", "批发和零售业"),
    ("医药", "批发和零售业"),
    ("建筑工程", "建筑业"),
    ("装饰工程", "建筑业"),
    ("餐饮管理", "住宿和餐饮业"),
    ("酒店管理", "住宿和餐饮业"),
    ("物流", "交通运输、仓储和邮政业"),
    ("供应链管理", "交通运输、仓储和邮政业"),
    ("电子", "制造业"),
    ("机械设备", "制造业"),
    ("新材料", "制造业"),
    ("食品", "制造业"),
    ("服装", "制造业"),
    ("企业管理咨询", "租赁和商务服务业"),
    ("人力资源", "租赁和商务服务业"),
    ("广告", "租赁和商务服务业"),
    ("房地产开发", "房地产业"),
    ("物业管理", "房地产业"),
    ("生物科技", "科学研究和技术服务业"),
    ("检测技术", "科学研究和技术服务业"),
    ("环保科技", "科学研究和技术服务业"),
    ("文化传媒", "文化、体育和娱乐业"),
    ("体育发展", "文化、体育和娱乐业"),
    ("职业培训", "教育"),
    ("健康管理", "卫生和社会工作"),
)
_TRADE_NAME_CHARS = "华信恒通瑞达鼎盛永泰佳宏中联博远金源新创德安康顺天宇锦汇启明致诚嘉禾润丰海腾卓越万方正和兴旺宝星辰凯鑫智慧云峰"  # noqa: E501
_COMPANY_FORMS = ("有限公司", "有限公司", "有限公司", "有限公司", "有限责任公司", "股份有限公司")
_COMPANY_STATUS = "存续700 在业150 注销80 吊销40 迁出30"
_CAPITAL = "10:8 30:10 50:14 100:22 200:12 300:8 500:10 1000:8 2000:4 5000:3 10000:1"

# (issuer, IIN, total length): debit-card ranges of large Chinese banks, all UnionPay 62.
_BANK_CARDS = (
    ("中国工商银行", "622202", 19),
    ("中国农业银行", "622848", 19),
    ("中国建设银行", "621700", 19),
    ("中国银行", "621661", 19),
    ("交通银行", "622262", 19),
    ("招商银行", "622588", 16),
    ("中国邮政储蓄银行", "621799", 19),
)
_BANK_WEIGHTS = (22, 20, 20, 14, 8, 9, 7)

# Employee contribution rates (fractions of the contribution base) used nationally.
_PENSION_PERSONAL, _PENSION_EMPLOYER = 0.08, 0.16
_MEDICAL_PERSONAL, _UNEMPLOYMENT_PERSONAL = 0.02, 0.005
_CONTRIBUTION_MONTHS = ("2025-01", "2025-02", "2025-03", "2025-04", "2025-05", "2025-06")
_BIG_CITY_PAY = {"北京市": 1.5, "上海市": 1.5, "深圳市": 1.4, "广州市": 1.3, "杭州市": 1.2}

# Districts weighted for population: the demo is centred on Guangdong.
_CITY_WEIGHT = {"广州市": 4.0, "深圳市": 4.0, "北京市": 2.0, "上海市": 2.0}


def _weighted(spec: str) -> tuple[list[str], list[int]]:
    """'王71 李70' -> (['王', '李'], [71, 70]); 'k:v' pairs too."""
    names, weights = [], []
    for token in spec.split():
        if ":" in token:
            name, weight = token.split(":")
        else:
            cut = next(i for i, c in enumerate(token) if c.isdigit())
            name, weight = token[:cut], token[cut:]
        names.append(name)
        weights.append(int(weight))
    return names, weights


T = TypeVar("T")


class _Picker(Generic[T]):
    """Weighted choice with precomputed cumulative weights (``rng.choices`` per draw is slow)."""

    __slots__ = ("_cum", "_items", "_total")

    def __init__(self, items: Sequence[T], weights: Sequence[float]) -> None:
        self._items = list(items)
        self._cum = list(itertools.accumulate(weights))
        self._total = self._cum[-1]

    def __call__(self, rng: random.Random) -> T:
        return self._items[bisect.bisect(self._cum, rng.random() * self._total)]


# ---------------------------------------------------------------------- generation


@dataclass(frozen=True, slots=True)
class DemoData:
    persons: list[Record]
    companies: list[Record]
    contributions: list[Record]

    def dataset(self, name: str) -> list[Record]:
        if name not in DATASET_KEYS:
            raise KeyError(f"unknown demo dataset {name!r}; expected one of {DATASETS}")
        records: list[Record] = getattr(self, name)
        return records


def _age(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _marital_status(rng: random.Random, age: int, gender: str) -> str:
    if age < (22 if gender == "男" else 20):  # legal marriage ages, Civil Code art. 1047
        return "未婚"
    r = rng.random()
    if age < 30:
        return "未婚" if r < 0.55 else "已婚" if r < 0.98 else "离婚"
    if age < 60:
        return "已婚" if r < 0.85 else "未婚" if r < 0.92 else "离婚" if r < 0.98 else "丧偶"
    return "已婚" if r < 0.75 else "丧偶" if r < 0.95 else "离婚" if r < 0.98 else "未婚"


def _unique(rng: random.Random, seen: set[str], make: Callable[[random.Random], str]) -> str:
    while True:
        value = make(rng)
        if value not in seen:
            seen.add(value)
            return value


def _persons(rng: random.Random, count: int, districts: _Picker[District]) -> list[Record]:
    rnd = rng.random  # int(rnd() * n) instead of randrange: 4x faster, still deterministic
    surname = _Picker(*_weighted(_SURNAMES))
    ethnicity = _Picker(*_weighted(_ETHNICITIES))
    prefixes = mobile_prefixes()
    mobile_prefix = _Picker(prefixes, [3 if p[:2] in ("13", "15", "18") else 1 for p in prefixes])
    male_pool, female_pool = _MALE_CHARS + _SHARED_CHARS, _FEMALE_CHARS + _SHARED_CHARS
    lo, hi = date(1940, 1, 1).toordinal(), date(2008, 12, 31).toordinal()
    mode = date(1978, 1, 1).toordinal()
    roads = _ROADS
    ids: set[str] = set()
    mobiles: set[str] = set()
    out: list[Record] = []
    for _ in range(count):
        home = districts(rng)
        male = rnd() < 0.51
        gender = "男" if male else "女"
        born = date.fromordinal(int(rng.triangular(lo, hi, mode)))
        iso = born.isoformat()
        head = f"{home.code}{iso[:4]}{iso[5:7]}{iso[8:]}"  # strftime is slow
        while True:  # sequence number: odd for men, even for women (GB 11643 §4.3)
            body = f"{head}{(1 + int(rnd() * 499)) * 2 + male:03d}"
            id_number = body + id_check_char(body)
            if id_number not in ids:
                ids.add(id_number)
                break
        pool = male_pool if male else female_pool
        n = len(pool)
        given = pool[int(rnd() * n)]
        if rnd() >= 0.3:
            given += pool[int(rnd() * n)]
        while True:
            mobile = f"{mobile_prefix(rng)}{int(rnd() * 10**8):08d}"
            if mobile not in mobiles:
                mobiles.add(mobile)
                break
        lives = home if rnd() < 0.8 else districts(rng)
        address = f"{lives.full_name}{roads[int(rnd() * len(roads))]}{1 + int(rnd() * 999)}号"
        if rnd() < 0.8:
            building, floor, room = 1 + int(rnd() * 30), 1 + int(rnd() * 33), 1 + int(rnd() * 8)
            address += f"{building}栋{floor}{room:02d}室"
        out.append(
            {
                "id_number": id_number,
                "name": surname(rng) + given,
                "gender": gender,
                "birth_date": iso,
                "ethnicity": ethnicity(rng),
                "mobile": mobile,
                "address": address,
                "district": lives.name,
                "district_code": lives.code,
                "marital_status": _marital_status(rng, _age(born, AS_OF), gender),
                "household_type": "家庭户" if rnd() < 0.93 else "集体户",
            }
        )
    return out


def _org_code(rng: random.Random, established: date) -> str:
    """A GB 11714 code: 'MA…' for codes issued with a USCC since October 2015, else digits."""
    if established >= date(2015, 10, 1):
        body = "MA" + "".join(rng.choice(USCC_ALPHABET) for _ in range(6))
    else:
        body = f"{rng.randrange(10**7, 8 * 10**7):08d}"
    return body + org_code_check_char(body)


def _companies(
    rng: random.Random,
    count: int,
    districts: _Picker[District],
    persons: list[Record],
    by_city: Mapping[str, list[int]],
) -> list[Record]:
    status = _Picker(*_weighted(_COMPANY_STATUS))
    capital_names, capital_weights = _weighted(_CAPITAL)
    capital = _Picker([int(c) for c in capital_names], capital_weights)
    lo, hi = date(1995, 1, 1).toordinal(), date(2025, 5, 31).toordinal()
    mode = date(2019, 1, 1).toordinal()
    codes: set[str] = set()
    names: set[str] = set()
    out: list[Record] = []
    for _ in range(count):
        d = districts(rng)
        established = date.fromordinal(int(rng.triangular(lo, hi, mode)))

        def make_uscc(r: random.Random, d: District = d, established: date = established) -> str:
            body = f"91{d.code}{_org_code(r, established)}"  # 9: market regulation, 1: enterprise
            return body + uscc_check_char(body)

        word, industry = rng.choice(_INDUSTRIES)
        prefix = f"{d.city.name}{d.name}"  # 广州市天河区…, 北京市海淀区…

        def make_name(r: random.Random, prefix: str = prefix, word: str = word) -> str:
            trade = "".join(r.sample(_TRADE_NAME_CHARS, 2))
            return f"{prefix}{trade}{word}{r.choice(_COMPANY_FORMS)}"

        uscc = _unique(rng, codes, make_uscc)
        name = _unique(rng, names, make_name)
        rep = _legal_rep(rng, persons, by_city.get(d.city.code, ()), established)
        phone = (
            f"{d.city.area_code}-{rng.randint(2, 8)}{rng.randrange(10**7):07d}"
            if rng.random() < 0.6
            else rng.choice(persons)["mobile"]
        )
        address = f"{d.full_name}{rng.choice(_ROADS)}{rng.randint(1, 999)}号"
        if rng.random() < 0.7:
            address += f"{rng.randint(1, 40)}层{rng.randint(1, 20):02d}单元"
        out.append(
            {
                "uscc": uscc,
                "name": name,
                "legal_representative": rep["name"],
                "legal_rep_id_number": rep["id_number"],
                "registered_capital": capital(rng),
                "established": established.isoformat(),
                "industry": industry,
                "status": status(rng),
                "address": address,
                "district": d.name,
                "district_code": d.code,
                "contact_phone": phone,
            }
        )
    return out


def _legal_rep(rng: random.Random, persons: list[Record], local: Sequence[int], established: date) -> Record:
    """A person who lives in the company's city (if any) and was an adult when it opened."""
    latest = established.replace(year=established.year - 22, day=1).isoformat()
    for candidates in (local, range(len(persons))):
        if not candidates:
            continue
        for _ in range(20):
            p = persons[rng.choice(candidates)]
            if p["birth_date"] <= latest:  # ISO dates compare as strings
                return p
    return min(persons, key=lambda p: str(p["birth_date"]))


def _contributions(
    rng: random.Random, count: int, persons: list[Record], companies: list[Record]
) -> list[Record]:
    gaz = load_gazetteer()
    bank = _Picker(_BANK_CARDS, _BANK_WEIGHTS)
    first_month = date(2025, 1, 1).isoformat()
    employers_by_city: dict[str, list[Record]] = {}
    for c in companies:
        if c["status"] in ("存续", "在业") and c["established"] < first_month:
            employers_by_city.setdefault(c["district_code"][:4], []).append(c)
    all_employers = [c for group in employers_by_city.values() for c in group]
    # Working age on the demo's "today": 18 up to the statutory retirement age.
    eligible = [
        p
        for p in persons
        if 18 <= _age(date.fromisoformat(p["birth_date"]), AS_OF) < (60 if p["gender"] == "男" else 55)
    ]
    chosen = sorted(rng.sample(range(len(eligible)), min(count, len(eligible))))
    cards: set[str] = set()
    out: list[Record] = []
    for rank, index in enumerate(chosen, start=1):
        p = eligible[index]
        employer = rng.choice(employers_by_city.get(p["district_code"][:4]) or all_employers)
        city = gaz.by_code[p["district_code"]].city.name
        base = rng.lognormvariate(math.log(6500 * _BIG_CITY_PAY.get(city, 1.0)), 0.45)
        base = int(min(max(round(base, -1), 3000), 40000))
        bank_name, iin, length = bank(rng)

        def make_card(r: random.Random, iin: str = iin, length: int = length) -> str:
            payload = iin + f"{r.randrange(10 ** (length - 7)):0{length - 7}d}"
            return payload + luhn_check_digit(payload)

        card = _unique(rng, cards, make_card)
        amounts: Record = {
            "base_salary": base,
            "pension_personal": round(base * _PENSION_PERSONAL, 2),
            "pension_employer": round(base * _PENSION_EMPLOYER, 2),
            "medical": round(base * _MEDICAL_PERSONAL, 2),
            "unemployment": round(base * _UNEMPLOYMENT_PERSONAL, 2),
            "bank_card": card,
            "bank_name": bank_name,
        }
        for month in _CONTRIBUTION_MONTHS:
            out.append(
                {
                    "record_id": f"JF{month.replace('-', '')}{rank:06d}",
                    "id_number": p["id_number"],
                    "name": p["name"],
                    "employer_uscc": employer["uscc"],
                    "employer_name": employer["name"],
                    "month": month,
                    **amounts,
                }
            )
    return out


def _rng(seed: int, dataset: str) -> random.Random:
    # One stream per dataset, so changing one generator leaves the others' records alone.
    # A string seed is hashed with SHA-512: stable across runs and PYTHONHASHSEED.
    return random.Random(f"{seed}:{dataset}")  # noqa: S311 - synthetic demo data, not secrets


def generate(
    seed: int = DEFAULT_SEED,
    *,
    persons: int = 10_000,
    companies: int = 2_000,
    contributors: int = 4_000,
) -> DemoData:
    """Generate the three datasets; the same arguments always give the same records.

    Contributions cover ``contributors`` working-age persons for each month of 2025-01…06.
    """
    gaz = load_gazetteer()
    districts = _Picker(gaz.districts, [_CITY_WEIGHT.get(d.city.name, 1.0) for d in gaz.districts])
    people = _persons(_rng(seed, PERSONS), persons, districts)
    by_city: dict[str, list[int]] = {}
    for i, p in enumerate(people):
        by_city.setdefault(p["district_code"][:4] + "00", []).append(i)
    firms = _companies(_rng(seed, COMPANIES), companies, districts, people, by_city)
    paid = _contributions(_rng(seed, CONTRIBUTIONS), contributors, people, firms)
    return DemoData(people, firms, paid)


@cache
def default_data() -> DemoData:
    """The standard demo datasets (``generate()`` with the defaults), generated once."""
    return generate()


def get_dataset(name: str) -> list[Record]:
    """The default demo dataset ``name`` ("persons", "companies", "contributions").

    The list is new on each call; the records in it are shared and must not be modified.
    """
    return list(default_data().dataset(name))


def key_field(name: str) -> str:
    """The field that identifies a record of dataset ``name`` (the detail-route key)."""
    try:
        return DATASET_KEYS[name]
    except KeyError:
        raise KeyError(f"unknown demo dataset {name!r}; expected one of {DATASETS}") from None
