"""Mask obligations on JSON and CSV bodies; unknown strategies are refused up front."""

from __future__ import annotations

import orjson
import pytest

from ztgw.gateway.protection.masking import MaskPlan, UnenforceableMask

PLAN = MaskPlan.from_obligation({"fields": {
    "id_number": {"strategy": "keep", "first": 6, "last": 4},
    "name": {"strategy": "keep", "first": 1},
    "note": {"strategy": "redact"},
    "card": {"strategy": "null"},
}})


def test_json_page() -> None:
    body = orjson.dumps({"items": [{"id_number": "11010519491231002X", "name": "张三丰",
                                    "note": "abc", "card": "6222", "other": "keep"}],
                         "page": 1, "size": 1, "total": 1})
    out, n, touched = PLAN.json_body(body)
    rec = orjson.loads(out)["items"][0]
    assert rec == {"id_number": "110105********002X", "name": "张**", "note": "***",
                   "card": None, "other": "keep"}
    assert n == 1 and touched == {"id_number", "name", "note", "card"}


def test_single_record_and_short_values() -> None:
    out, n, _ = PLAN.json_body(orjson.dumps({"id_number": "12345", "name": None}))
    rec = orjson.loads(out)
    assert rec["id_number"] == "1****" and rec["name"] is None and n == 1


def test_csv_quoting_survives() -> None:
    body = 'id_number,name,other\r\n11010519491231002X,"张,三",x\r\n'.encode()
    out, n, touched = PLAN.csv_body(body)
    lines = out.decode().splitlines()
    assert lines[1] == '110105********002X,张**,x'  # the comma was part of the value
    assert n == 1 and touched == {"id_number", "name"}


@pytest.mark.parametrize("params", [
    {}, {"fields": {}}, {"fields": {"a": {"strategy": "rot13"}}},
    {"fields": {"a": {"strategy": "keep", "first": "x"}}},
    {"fields": {"a": {"strategy": "keep", "first": -1}}},
])
def test_unenforceable(params: dict) -> None:
    with pytest.raises(UnenforceableMask):
        MaskPlan.from_obligation(params)


# ---------------------------------------------------------------- strategies, selectors, formats

import csv  # noqa: E402
import io  # noqa: E402

from ztgw.gateway.protection.detectors import classify  # noqa: E402
from ztgw.gateway.protection.identifiers import (  # noqa: E402
    is_valid_id_number,
    is_valid_luhn,
    is_valid_uscc,
)
from ztgw.gateway.protection.keys import ProtectionKeys  # noqa: E402
from ztgw.gateway.protection.strategies import Tokenizer  # noqa: E402

KEYS = ProtectionKeys(bytes(range(32)))
OTHER_KEYS = ProtectionKeys(bytes(range(1, 33)))
PERSON = {"id_number": "11010519491231002X", "name": "张三丰", "mobile": "13800138000",
          "birth_date": "1949-12-31", "age": 75, "salary": 8523.45,
          "address": "江苏省苏州市吴江区工业大道853号6栋808室", "card": "6217009486897985095",
          "uscc": "91440300708461136T", "note": "联系人：李四 电话13912345678，身份证440524188001010014",
          "contacts": [{"mobile": "13700001111", "rel": "母"}, {"mobile": "13600002222", "rel": "父"}],
          "meta": {"owner": {"email": "a@example.com"}}}


def _mask(params: dict, rec: dict | None = None, keys: ProtectionKeys | None = KEYS) -> dict:
    out, _, _ = MaskPlan.from_obligation(params, keys=keys).json_body(orjson.dumps(rec or PERSON))
    return orjson.loads(out)


def test_pseudonym_is_consistent_keyed_and_valid() -> None:
    names = ("id_number", "name", "mobile", "card", "uscc")
    params = {"fields": {f: {"strategy": "pseudonym"} for f in names}}
    a, b, c = _mask(params), _mask(params), _mask(params, keys=OTHER_KEYS)
    assert a == b  # consistent: the same input always gets the same pseudonym
    for f in ("id_number", "name", "mobile", "card", "uscc"):
        assert a[f] != PERSON[f] and a[f] != c[f]  # keyed: another key, another pseudonym
        assert classify(a[f]) == classify(PERSON[f])  # still valid-looking, same type
    assert is_valid_id_number(a["id_number"]) and is_valid_luhn(a["card"]) and is_valid_uscc(a["uscc"])
    assert a["mobile"][:3] == "138" and a["card"][:6] == "621700"
    hexed = _mask({"fields": {"name": {"strategy": "pseudonym", "format": "hex"}}})
    assert hexed["name"].startswith("p_") and len(hexed["name"]) == 18


def test_token_is_reversible_and_valid() -> None:
    params = {"fields": {f: {"strategy": "token"} for f in ("id_number", "mobile", "card", "uscc")}}
    out = _mask(params)
    tok = Tokenizer(KEYS.token)
    for f, kind in (("id_number", "cn_id_number"), ("mobile", "cn_mobile"), ("card", "bank_card"),
                    ("uscc", "cn_uscc")):
        assert out[f] != PERSON[f] and len(out[f]) == len(PERSON[f])
        assert classify(out[f]) == kind
        assert tok.detokenize(out[f], kind) == PERSON[f]
    assert out["id_number"][:6] == "110105"  # the region stays; birth date and sequence are encrypted


def test_token_on_too_short_values_fails_closed() -> None:
    out = _mask({"fields": {"rel": {"strategy": "token"}}}, {"rel": "12345"})
    assert out["rel"] == "*****"


def test_generalize() -> None:
    out = _mask({"fields": {"birth_date": {"strategy": "generalize", "to": "year"},
                            "id_number": {"strategy": "generalize", "to": "month"},
                            "age": {"strategy": "generalize", "to": "band", "width": 10},
                            "address": {"strategy": "generalize", "to": "district"},
                            "name": {"strategy": "generalize", "to": "year"}}})
    assert out["birth_date"] == "1949" and out["id_number"] == "1949-12" and out["age"] == "70-79"
    assert out["address"] == "江苏省苏州市吴江区"
    assert out["name"] == "***"  # not a date: redacted, never passed through
    city = _mask({"fields": {"address": {"strategy": "generalize", "to": "city"}}})
    assert city["address"] == "江苏省苏州市"
    muni = _mask({"fields": {"a": {"strategy": "generalize", "to": "district"}}},
                 {"a": "北京市朝阳区建国路88号"})
    assert muni["a"] == "北京市朝阳区"


def test_bucket_and_noise() -> None:
    out = _mask({"fields": {"salary": {"strategy": "bucket", "width": 1000},
                            "age": {"strategy": "bucket", "width": 5}}})
    assert out["salary"] == 8000.0 and out["age"] == 75
    spec = {"fields": {"salary": {"strategy": "noise", "scale": 0.1}, "age": {"strategy": "noise", "abs": 3}}}
    noisy = _mask(spec)
    assert noisy == _mask(spec)  # deterministic: averaging repeated answers removes nothing
    assert abs(noisy["salary"] - 8523.45) <= 852.35 and noisy["salary"] != 8523.45
    assert round(noisy["salary"], 2) == noisy["salary"]
    assert isinstance(noisy["age"], int) and abs(noisy["age"] - 75) <= 3
    assert _mask({"fields": {"name": {"strategy": "bucket", "width": 10}}})["name"] is None


def test_selection_by_path() -> None:
    out = _mask({"paths": {"contacts.mobile": {"strategy": "keep", "first": 3, "last": 4},
                           "$.meta.*.email": {"strategy": "redact"}}})
    assert [c["mobile"] for c in out["contacts"]] == ["137****1111", "136****2222"]
    assert out["meta"]["owner"]["email"] == "*" * 13
    assert out["mobile"] == PERSON["mobile"]  # top-level mobile is not on the path


def test_selection_by_detector_type_everywhere() -> None:
    out = _mask({"types": {"cn_mobile": {"strategy": "keep", "first": 3, "last": 4},
                           "cn_id_number": {"strategy": "redact"}}})
    assert out["mobile"] == "138****8000"
    assert [c["mobile"] for c in out["contacts"]] == ["137****1111", "136****2222"]
    assert out["id_number"] == "*" * 18
    assert out["note"] == "联系人：李四 电话139****5678，身份证" + "*" * 18  # embedded in free text
    assert out["name"] == "张三丰" and out["uscc"] == PERSON["uscc"]  # other types untouched


def test_names_and_paths_apply_before_types() -> None:
    plan = MaskPlan.from_obligation({"fields": {"mobile": {"strategy": "null"}},
                                     "types": {"cn_mobile": {"strategy": "redact"}}})
    rec = dict(PERSON, contacts=[])
    touched = plan.record(rec)
    assert rec["mobile"] is None and "mobile" in touched and "note" in touched


def test_ndjson_and_csv_bodies() -> None:
    plan = MaskPlan.from_obligation({"types": {"cn_id_number": {"strategy": "keep", "first": 6}},
                                     "paths": {"xm": {"strategy": "keep", "first": 1}}})
    line = orjson.dumps({"id_number": "11010519491231002X", "xm": "张三丰"})
    body = b"\n".join([line] * 3)
    out, n, touched = plan.ndjson_body(body + b"\n\n")
    assert n == 3 and touched == {"id_number", "xm"}
    assert [orjson.loads(x)["id_number"] for x in out.splitlines()] == ["110105************"] * 3
    csv_body = "sfzh,xm,bz\r\n11010519491231002X,张三丰,身份证440524188001010014\r\n".encode()
    out, n, touched = plan.csv_body(csv_body)
    rows = list(csv.reader(io.StringIO(out.decode())))
    assert rows[1] == ["110105************", "张**", "身份证440524************"]  # opaque pinyin headers
    assert n == 1 and touched == {"sfzh", "xm", "bz"}


@pytest.mark.parametrize("params", [
    {"fields": {"a": {"strategy": "pseudonym"}}},  # keyed, but no keys given
    {"types": {"cn_shoe_size": {"strategy": "redact"}}},
    {"paths": {"a..b": {"strategy": "redact"}}},
    {"fields": {"a": {"strategy": "generalize", "to": "century"}}},
    {"fields": {"a": {"strategy": "bucket"}}},
    {"fields": {"a": {"strategy": "bucket", "width": 0}}},
    {"fields": {"a": {"strategy": "noise", "scale": 2}}},
    {"fields": {"a": {"strategy": "noise", "scale": 0.1, "abs": 1}}},
    {"fields": {"a": {"strategy": "keep", "first": 2, "bogus": 1}}},
    {"fields": {"a": "redact"}},
    {"fields": {"a": {"strategy": "redact"}}, "where": {}},
])
def test_more_unenforceable(params: dict) -> None:
    with pytest.raises(UnenforceableMask):
        MaskPlan.from_obligation(params)


def test_column_wise_batch_equals_record_by_record() -> None:
    plan = MaskPlan.from_obligation({"fields": {"id_number": {"strategy": "keep", "first": 6},
                                                "missing": {"strategy": "redact"},
                                                "address": {"strategy": "generalize", "to": "city"}}})
    recs = [dict(PERSON, n=i) for i in range(5)] + [{"other": 1}, "not a record"]
    a = orjson.loads(orjson.dumps(recs))
    touched_a: set[str] = set()
    for rec in a:
        if isinstance(rec, dict):
            touched_a |= plan.record(rec)
    out, n, touched_b = plan.json_body(orjson.dumps(recs))
    assert orjson.loads(out) == a and n == 6 and touched_b == touched_a == {"id_number", "address"}
