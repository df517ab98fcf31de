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
