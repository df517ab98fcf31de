"""The fast batch paths (a compiled loop for keep/redact/null, column forms of the other
strategies, column-wise watermarking) give exactly what the one-record-at-a-time paths give."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ztgw.gateway.protection.keys import ProtectionKeys
from ztgw.gateway.protection.masking import MaskPlan
from ztgw.gateway.protection.strategies import _CJK_RUN, compile_masker, generalize_address
from ztgw.gateway.protection.watermark import Watermarker

KEYS = ProtectionKeys(bytes(range(32)))
SPECS = [
    {"strategy": "keep", "first": 3, "last": 4}, {"strategy": "keep", "first": 1},
    {"strategy": "keep", "last": 2}, {"strategy": "keep"}, {"strategy": "redact"}, {"strategy": "null"},
    {"strategy": "pseudonym"}, {"strategy": "pseudonym", "format": "hex"}, {"strategy": "token"},
    {"strategy": "generalize", "to": "year"}, {"strategy": "generalize", "to": "district"},
    {"strategy": "generalize", "to": "city"}, {"strategy": "generalize", "to": "band", "width": 5},
    {"strategy": "bucket", "width": 10}, {"strategy": "noise", "scale": 0.2},
]
ADDRESSES = ["广东省广州市天河区中山路12号3栋501室", "北京市朝阳区建国路88号", "江苏省苏州市吴江区",
             "内蒙古自治区呼和浩特市新城区1号", "新疆维吾尔自治区乌鲁木齐市天山区", "上海市", "某某路1号",
             "浙江省杭州市西湖区文三路" + "很长的路名" * 8 + "1号"]
TEXT = st.one_of(
    st.text(max_size=300), st.sampled_from(ADDRESSES),
    st.builds(lambda a, b: a + b, st.sampled_from(ADDRESSES), st.text(max_size=12)),
    st.sampled_from(["11010519491231002X", "13800138000", "1990-05-17", "2001/1/3", "6217009486897985095",
                     "张伟", "联系人：张伟 13800138000", "身份证11010519491231002X"]),
)
VALUE = st.one_of(TEXT, st.none(), st.booleans(), st.integers(-10**12, 10**12),
                  st.sampled_from([13800138000, 6217009486897985095, 10**10, 1.0e10]),
                  st.dictionaries(st.sampled_from(["x", "y"]), TEXT, max_size=2),
                  st.floats(-1e9, 1e9, allow_nan=False), st.lists(TEXT, max_size=3))
KEYS_ = ["a", "b", "c"]
RECORD = st.dictionaries(st.sampled_from(KEYS_), VALUE, max_size=3)


@settings(max_examples=300, deadline=None)
@given(recs=st.lists(st.one_of(RECORD, st.integers()), max_size=12),
       fields=st.dictionaries(st.sampled_from(KEYS_), st.sampled_from(SPECS), max_size=3),
       paths=st.dictionaries(st.sampled_from([*KEYS_, "*", "a.b", "$.c"]), st.sampled_from(SPECS),
                             max_size=3),
       detectors=st.dictionaries(st.sampled_from(["cn_id_number", "cn_mobile", "cn_address", "cn_name",
                                                  "bank_card"]), st.sampled_from(SPECS), max_size=3))
def test_records_equals_record_by_record(recs: list[Any], fields: dict[str, Any],
                                         paths: dict[str, Any], detectors: dict[str, Any]) -> None:
    if not fields and not paths and not detectors:
        fields = {"a": {"strategy": "redact"}}
    params = {"fields": fields, "paths": paths, "detectors": detectors}
    plan = MaskPlan.from_obligation(params, keys=KEYS)
    one_by_one = copy.deepcopy(recs)
    touched: set[str] = set()
    for r in one_by_one:
        if type(r) is dict:
            touched |= plan.record(r)
    batch = copy.deepcopy(recs)
    n, batch_touched = MaskPlan.from_obligation(params, keys=KEYS).records(batch)
    assert batch == one_by_one
    assert batch_touched == touched
    assert n == sum(type(r) is dict for r in recs)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(VALUE, max_size=20), spec=st.sampled_from(SPECS))
def test_column_forms_equal_the_value_forms(values: list[Any], spec: dict[str, Any]) -> None:
    masker = compile_masker(spec, KEYS)
    column = getattr(masker, "column", None)
    if column is not None:
        assert column(list(values)) == [masker(v) for v in values]


@given(text=TEXT)
def test_the_address_head_is_decided_by_the_leading_chinese_run(text: str) -> None:
    key = _CJK_RUN.match(text).group()  # type: ignore[union-attr]
    for level in ("province", "city", "district"):
        assert generalize_address(key, level) == generalize_address(text, level)


@settings(max_examples=100, deadline=None)
@given(recs=st.lists(st.fixed_dictionaries({
    "addr": st.sampled_from([*ADDRESSES, "民族是汉族", "维吾尔族", None]),
    "money": st.one_of(st.floats(1, 1e6, allow_nan=False), st.sampled_from(["12.30", "7", "-45.01"])),
    "n": st.integers(0, 5), "mixed": st.one_of(st.floats(1, 99), st.integers(1, 99), st.text(max_size=6))}),
    min_size=0, max_size=150))
def test_column_watermarking_equals_record_by_record(recs: list[dict[str, Any]]) -> None:
    wm = Watermarker(KEYS.watermark)
    batch = copy.deepcopy(recs)
    p1 = wm.plan("alice", "r1")
    p1.records(batch)
    single = copy.deepcopy(recs)
    p2 = wm.plan("alice", "r1")
    for r in single:
        p2.record(r)
    assert batch == single
    assert p1.bits == p2.bits


@settings(max_examples=200, deadline=None)
@given(values=st.lists(TEXT, max_size=20), spec=st.sampled_from(SPECS))
def test_column_forms_of_all_string_columns(values: list[str], spec: dict[str, Any]) -> None:
    masker = compile_masker(spec, KEYS)
    column = getattr(masker, "column", None)
    if column is not None:
        assert column(list(values)) == [masker(v) for v in values]
