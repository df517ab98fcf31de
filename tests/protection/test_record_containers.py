"""Where a JSON answer's records are, and failing closed when its shape is not known (issue 8).

Department APIs wrap their records in envelopes other than ztgw's ``{"items": [...]}``:
``{"code": 0, "data": {"list": [...], "total": n}}`` (PageHelper), ``result.records``
(MyBatis-Plus), ``rows`` (bootstrap-table), ``content`` (Spring) … A mask selected by field
name or path must reach the records under every documented container key, buffered and
streamed alike; whatever is not understood as a record (the envelope, an unknown wrapper,
objects nested in a single record) is masked by name, path and detector at any depth, and
a selection (row filter, projection, row limit) never lets records outside its array through.
CSV: every column of a duplicated header name is masked, by each selector that names it.
"""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ztgw.gateway.dataplane.obligations import (
    apply_csv,
    apply_json,
    build_plan,
    finish_stream,
    stream_pipeline,
)
from ztgw.gateway.protection.keys import ProtectionKeys
from ztgw.gateway.protection.masking import RECORD_CONTAINERS, MaskPlan, records_of, records_path
from ztgw.gateway.protection.streaming import BodyStream, Pipeline, StreamError
from ztgw.policies.domain import Decision, Obligation

KEYS = ProtectionKeys(b"c" * 32)
ID = "11010519491231002X"
MOBILE = "13800138000"
PEOPLE = [{"sfzh": ID, "xm": "张三", "sjhm": MOBILE, "qx": "440106"},
          {"sfzh": "440106199001011235", "xm": "李四", "sjhm": "13912345678", "qx": "110101"}]
BY_NAME = {"fields": {"sfzh": {"strategy": "redact"}, "xm": {"strategy": "redact"}},
           "paths": {"sjhm": {"strategy": "keep", "first": 3}}}
SECRETS = [ID, "张三", MOBILE, "440106199001011235", "李四", "13912345678"]

ENVELOPES: list[Any] = [
    {"items": PEOPLE, "total": 2},
    {"data": PEOPLE},
    {"records": PEOPLE, "total": 2},
    {"rows": PEOPLE, "total": 2},
    {"list": PEOPLE},
    {"result": PEOPLE},
    {"results": PEOPLE},
    {"content": PEOPLE, "totalElements": 2},
    {"code": 0, "msg": "ok", "data": {"items": PEOPLE, "total": 2}},
    {"code": 0, "msg": "ok", "data": {"total": 2, "list": PEOPLE}},
    {"success": True, "result": {"page": {"records": PEOPLE}}},
    {"code": "0000", "persons": PEOPLE},  # no container key: a top-level list of objects
    {"code": 0, "payload": {"people": {"all": PEOPLE}}},  # unknown: masked wherever it is
    {"code": 0, "data": PEOPLE[0]},  # one record in an envelope
    PEOPLE,
    PEOPLE[0],
]


def _stream(pipe: Pipeline, body: bytes, step: int, encoding: str = "identity") -> bytes:
    data = gzip.compress(body) if encoding == "gzip" else body
    s = BodyStream(pipe, "json", encoding)
    out = b"".join(s.feed(data[i:i + step]) for i in range(0, len(data), step)) + s.close()
    return gzip.decompress(out) if encoding == "gzip" else out


def _clear(out: bytes) -> list[str]:
    text = out.decode()
    return [v for v in SECRETS if v in text]


def test_the_documented_container_keys() -> None:
    assert {"items", "data", "records", "rows", "list", "result", "results", "content"} <= RECORD_CONTAINERS
    assert records_path({"code": 0, "data": {"total": 2, "list": PEOPLE}}) == (("data", "list"), True)
    assert records_path({"msg": "x", "rows": PEOPLE}) == (("rows",), True)
    assert records_path({"code": 0, "persons": PEOPLE}) == (("persons",), True)
    assert records_path({"code": 0, "persons": PEOPLE}, weak=False) == ((), False)
    assert records_path({"code": 0, "data": PEOPLE[0]}) == (("data",), False)
    # document order, as the streaming framer meets them
    assert records_path({"data": {"x": 1}, "rows": PEOPLE, "items": []}) == (("rows",), True)
    assert records_of({"result": {"records": PEOPLE}}) is PEOPLE


@pytest.mark.parametrize("doc", ENVELOPES, ids=lambda d: orjson.dumps(d).decode()[:40])
def test_names_and_paths_reach_the_records_in_every_envelope(doc: Any) -> None:
    body = orjson.dumps(doc)
    plan = MaskPlan.from_obligation(BY_NAME, keys=KEYS)
    out, _, touched = plan.json_body(body)
    assert _clear(out) == [] and {"sfzh", "xm", "sjhm"} <= touched
    assert _clear(Pipeline(mask=MaskPlan.from_obligation(BY_NAME, keys=KEYS)).json_body(body)) == []
    for step in (5, 64, 100_000):
        assert _clear(_stream(Pipeline(mask=MaskPlan.from_obligation(BY_NAME, keys=KEYS)), body, step)) == []
    # the data plane's buffered and streamed paths
    plan_ = build_plan(Decision("allow", "t", "r", obligations=(Obligation("mask", BY_NAME),)), KEYS)
    assert _clear(apply_json(plan_, body, None)) == []
    plan_ = build_plan(Decision("allow", "t", "r", obligations=(Obligation("mask", BY_NAME),)), KEYS)
    assert _clear(_stream(stream_pipeline(plan_, None), body, 37)) == []


@pytest.mark.parametrize("doc", ENVELOPES, ids=lambda d: orjson.dumps(d).decode()[:40])
def test_detectors_find_values_in_every_envelope(doc: Any) -> None:
    params = {"detectors": {"cn_id_number": {"strategy": "redact"}, "cn_mobile": {"strategy": "redact"},
                            "cn_name": {"strategy": "redact"}}}
    body = orjson.dumps(doc)
    assert _clear(MaskPlan.from_obligation(params).json_body(body)[0]) == []
    assert _clear(_stream(Pipeline(mask=MaskPlan.from_obligation(params)), body, 11)) == []


def test_the_envelope_itself_is_masked() -> None:
    doc = {"code": 0, "msg": f"查询 {ID} 成功", "owner": {"xm": "王五"}, "data": {"list": PEOPLE[1:]},
           "tail": {"sfzh": ID, "note": [{"xm": "赵六"}]}}
    params = {**BY_NAME, "detectors": {"cn_id_number": {"strategy": "redact"}}}
    body = orjson.dumps(doc)
    for out in (MaskPlan.from_obligation(params).json_body(body)[0],
                _stream(Pipeline(mask=MaskPlan.from_obligation(params)), body, 9)):
        got = orjson.loads(out)
        assert ID not in out.decode() and "王五" not in out.decode() and "赵六" not in out.decode()
        assert got["code"] == 0 and got["data"]["list"][0]["xm"] == "**"


def test_an_envelope_without_anything_to_mask_passes_byte_for_byte() -> None:
    head = b'{"code": 0,  "msg": "ok",\n "data": {"total": 2, "list": '
    body = head + orjson.dumps(PEOPLE) + b'},  "ts": 5}'
    out = _stream(Pipeline(mask=MaskPlan.from_obligation(BY_NAME)), body, 13)
    assert out.startswith(b'{"code": 0,  "msg": "ok",\n "data": {"total": 2, "list": [')
    assert out.endswith(b'},  "ts": 5}') and _clear(out) == []


def test_a_single_record_masks_names_in_its_nested_objects() -> None:
    rec = {"sfzh": ID, "xm": "张三", "contacts": [{"xm": "李四", "sjhm": "13912345678"}],
           "spouse": {"xm": "王芳"}}
    out = MaskPlan.from_obligation(BY_NAME).json_body(orjson.dumps(rec))[0]
    got = orjson.loads(out)
    assert got["contacts"][0]["xm"] == "**" and got["spouse"]["xm"] == "**"
    assert got["contacts"][0]["sjhm"] == "139********"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key_path=st.lists(st.sampled_from([*sorted(RECORD_CONTAINERS), "meta", "page"]), min_size=0,
                         max_size=4),
       extra=st.dictionaries(st.sampled_from(["code", "msg", "total", "ts"]),
                             st.one_of(st.integers(-(2**53), 2**53), st.text(max_size=5)), max_size=3),
       obs=st.lists(st.sampled_from([
           Obligation("row_filter", {"field": "qx", "in": ["440106"]}),
           Obligation("project", {"fields": ["sfzh", "xm", "qx"]}),
           Obligation("mask", BY_NAME),
           Obligation("max_rows", {"limit": 1}),
       ]), max_size=3, unique_by=repr),
       step=st.integers(3, 400), encoding=st.sampled_from(["identity", "gzip"]))
def test_streamed_envelopes_equal_buffered(key_path: list[str], extra: dict[str, Any], obs: list[Obligation],
                                           step: int, encoding: str) -> None:
    doc: Any = PEOPLE
    for k in reversed(key_path):
        doc = {**extra, k: doc}
    body = orjson.dumps(doc)

    def run(stream: bool) -> Any:
        plan = build_plan(Decision("allow", "t", "r", obligations=tuple(obs)), KEYS)
        limit = plan.max_rows
        try:
            if not stream:
                return orjson.loads(apply_json(plan, body, limit)), plan.records, plan.touched
            pipe = stream_pipeline(plan, limit)
            got = orjson.loads(_stream(pipe, body, step, encoding))
            finish_stream(plan, pipe)
            return got, plan.records, plan.touched
        except (LookupError, ValueError) as exc:
            return type(exc).__name__
    buffered, streamed = run(False), run(True)
    if isinstance(buffered, tuple) and isinstance(streamed, tuple):
        _null_total(buffered[0]), _null_total(streamed[0])
        assert streamed == buffered
    else:  # both refuse, the same way (a withheld record is a LookupError; StreamError a ValueError)
        assert (buffered, streamed) in {("LookupError", "RecordWithheld"), ("ValueError", "StreamError")} \
            or buffered == streamed
    if any(o.type == "mask" for o in obs) and isinstance(streamed, tuple):
        assert _clear(orjson.dumps(streamed[0])) == []


def _null_total(node: Any) -> None:
    """A selection's page count is nulled up front when streamed, afterwards when buffered."""
    if isinstance(node, dict):
        for k in list(node):
            if k == "total":
                node[k] = None
            else:
                _null_total(node[k])


def test_a_selection_refuses_records_outside_its_array() -> None:
    doc = {"items": PEOPLE[1:], "also": PEOPLE[:1]}
    filt = Obligation("row_filter", {"field": "qx", "in": ["110101"]})
    plan = build_plan(Decision("allow", "t", "r", obligations=(filt,)), KEYS)
    with pytest.raises(ValueError):
        apply_json(plan, orjson.dumps(doc), None)
    plan = build_plan(Decision("allow", "t", "r", obligations=(filt,)), KEYS)
    with pytest.raises(StreamError):
        _stream(stream_pipeline(plan, None), orjson.dumps(doc), 17)
    # no container key and a row filter: the whole answer is judged as one record → withheld
    plan = build_plan(Decision("allow", "t", "r", obligations=(filt,)), KEYS)
    with pytest.raises(LookupError):
        apply_json(plan, orjson.dumps({"code": 0, "persons": PEOPLE}), None)


# ------------------------------------------------------------------ CSV

CSV_DUP = ("xm,sfzh,xm,sjhm,sfzh\r\n"
           f"张三,{ID},李四,{MOBILE},440106199001011235\r\n").encode()


@pytest.mark.parametrize("params", [
    {"fields": {"xm": {"strategy": "redact"}, "sfzh": {"strategy": "redact"},
                "sjhm": {"strategy": "redact"}}},
    {"paths": {"$.xm": {"strategy": "redact"}, "sfzh": {"strategy": "redact"}, "sjhm": {"strategy": "null"}}},
    {"detectors": {"cn_id_number": {"strategy": "redact"}, "cn_name": {"strategy": "redact"},
                   "cn_mobile": {"strategy": "redact"}}},
])
def test_every_duplicated_csv_column_is_masked(params: dict[str, Any]) -> None:
    for step in (3, 20, 10_000):
        pipe = Pipeline(mask=MaskPlan.from_obligation(params))
        s = BodyStream(pipe, "csv")
        out = b"".join(s.feed(CSV_DUP[i:i + step]) for i in range(0, len(CSV_DUP), step)) + s.close()
        assert _clear(out) == [], out.decode()
        assert out.decode().splitlines()[0] == "xm,sfzh,xm,sjhm,sfzh"
    plan = build_plan(Decision("allow", "t", "r", obligations=(Obligation("mask", params),)), KEYS)
    out = apply_csv(plan, CSV_DUP, None)
    assert _clear(out) == [] and out.decode().splitlines()[0] == "xm,sfzh,xm,sjhm,sfzh"


def test_buffered_csv_keeps_duplicated_columns_apart() -> None:
    """csv.DictReader folded duplicate headers into one key: the first column showed the last's value."""
    params = {"fields": {"sjhm": {"strategy": "redact"}}}
    plan = build_plan(Decision("allow", "t", "r", obligations=(Obligation("mask", params),)), KEYS)
    row = apply_csv(plan, CSV_DUP, None).decode().splitlines()[1].split(",")
    assert row[0] == "张三" and row[2] == "李四"


def test_a_csv_column_named_by_a_field_and_a_path_gets_both() -> None:
    params = {"fields": {"xm": {"strategy": "keep", "first": 1}}, "paths": {"xm": {"strategy": "redact"}}}
    body = "xm,qx\r\n张三,440106\r\n".encode()
    out = Pipeline(mask=MaskPlan.from_obligation(params)).body(body, "csv").decode()
    json_out = MaskPlan.from_obligation(params).json_body(orjson.dumps([{"xm": "张三", "qx": "440106"}]))[0]
    assert out.splitlines()[1] == "**,440106" and orjson.loads(json_out)[0]["xm"] == "**"


def test_csv_cells_beyond_the_header_are_dropped_when_masking() -> None:
    body = f"xm,qx\r\n张三,440106,{ID}\r\n".encode()
    plan = MaskPlan.from_obligation({"fields": {"xm": {"strategy": "redact"}}})
    out = Pipeline(mask=plan).body(body, "csv")
    assert out.decode().splitlines()[1] == "**,440106"


def test_a_field_named_like_the_container_key_does_not_swallow_the_records() -> None:
    """A dataset field called ``data`` (masked) and a page wrapped as {"data": [...]}: the
    envelope's key is not the field, the records stay records (masked as records)."""
    params = {"fields": {"data": {"strategy": "redact"}, "xm": {"strategy": "redact"}}}
    recs = [{"xm": "张三", "data": "abc"}, {"xm": "李四", "data": "de"}]
    for doc in ({"code": 0, "data": recs}, {"code": 0, "data": {"list": recs}}, {"code": 0, "data": recs[0]}):
        body = orjson.dumps(doc)
        outs = [MaskPlan.from_obligation(params).json_body(body)[0],
                _stream(Pipeline(mask=MaskPlan.from_obligation(params)), body, 7)]
        for out in outs:
            got = orjson.loads(out)
            inner = got["data"]["list"] if "list" in doc["data"] else got["data"]
            first = inner[0] if isinstance(inner, list) else inner
            assert first == {"xm": "**", "data": "***"}, out


def test_blank_csv_lines_are_not_records() -> None:
    pipe = Pipeline(mask=MaskPlan.from_obligation({"fields": {"xm": {"strategy": "redact"}}}))
    out = pipe.body("xm,qx\r\n张三,1\r\n\r\n李四,2\r\n\r\n".encode(), "csv").decode()
    assert out.splitlines() == ["xm,qx", "**,1", "**,2"] and pipe.records == 2
