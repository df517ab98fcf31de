"""Streaming through the data plane's plan (gateway/dataplane/obligations.py stream_pipeline +
BodyStream) gives what the buffered apply_json / apply_csv give: same records, same row
filter, limit, projection, masking and watermark, in any chunking and content coding."""

from __future__ import annotations

import csv
import gzip
import io
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ztgw.gateway.dataplane.obligations import (
    ResponsePlan,
    apply_csv,
    apply_json,
    build_plan,
    finish_stream,
    start_watermark,
    stream_pipeline,
)
from ztgw.gateway.protection.keys import ProtectionKeys
from ztgw.gateway.protection.streaming import BodyStream, RecordWithheld
from ztgw.gateway.protection.watermark import Watermarker
from ztgw.policies.domain import Decision, Obligation

KEYS = ProtectionKeys(b"s" * 32)
MARKER = Watermarker(KEYS.watermark)
DISTRICTS = ["440106", "110101", "320509"]
RECORDS = [{"id": f"{i:04d}", "district_code": DISTRICTS[i % 3], "mobile": f"138{i:08d}",
            "address": f"广东省广州市天河区中山路{i}号", "fee": round(100 + i * 1.37, 2), "note": "一般"}
           for i in range(150)]


def _plan(obs: list[Obligation]) -> ResponsePlan:
    plan = build_plan(Decision("allow", "t", "r", obligations=tuple(obs)), KEYS)
    start_watermark(plan, MARKER, "alice", "req-1", "ds")
    return plan


OBLIGATIONS = st.lists(st.sampled_from([
    Obligation("row_filter", {"field": "district_code", "in": ["440106", "320509"]}),
    Obligation("row_filter", {"field": "missing", "in": ["None"]}),
    Obligation("project", {"fields": ["id", "mobile", "address", "fee"]}),
    Obligation("mask", {"fields": {"mobile": {"strategy": "keep", "first": 3, "last": 4}},
                        "detectors": {"cn_address": {"strategy": "generalize", "to": "district"}}}),
    Obligation("mask", {"paths": {"id": {"strategy": "pseudonym", "format": "hex"}}}),
    Obligation("watermark", {"scheme": "recipient"}),
]), max_size=4, unique_by=lambda o: repr(o))


def _stream(pipe: Any, body: bytes, fmt: str, encoding: str, step: int) -> bytes:
    data = gzip.compress(body) if encoding == "gzip" else body
    s = BodyStream(pipe, fmt, encoding)
    out = b"".join(s.feed(data[i:i + step]) for i in range(0, len(data), step)) + s.close()
    return gzip.decompress(out) if encoding == "gzip" else out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obs=OBLIGATIONS, limit=st.one_of(st.none(), st.integers(0, 120)),
       page=st.booleans(), step=st.integers(7, 5000), encoding=st.sampled_from(["identity", "gzip"]))
def test_streamed_json_equals_buffered(obs: list[Obligation], limit: int | None, page: bool, step: int,
                                       encoding: str) -> None:
    doc: Any = {"total": len(RECORDS), "items": RECORDS, "page": 1} if page else RECORDS
    body = orjson.dumps(doc)
    buffered_plan = _plan(obs)
    expected = orjson.loads(apply_json(buffered_plan, body, limit))
    plan = _plan(obs)
    pipe = stream_pipeline(plan, limit)
    got = orjson.loads(_stream(pipe, body, "json", encoding, step))
    finish_stream(plan, pipe)
    if page:
        assert got["items"] == expected["items"] and got["page"] == 1
        # a selection that may drop records nulls the page's count up front
        assert got["total"] == (None if pipe.nulls_total else len(RECORDS))
        assert expected["total"] in (None, len(RECORDS))
    else:
        assert got == expected
    assert (plan.records, plan.dropped, plan.touched) == (
        buffered_plan.records, buffered_plan.dropped, buffered_plan.touched)


def _csv(records: list[dict[str, Any]]) -> bytes:
    out = io.StringIO(newline="")
    w = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator="\r\n")
    w.writeheader()
    w.writerows(records)
    return out.getvalue().encode()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obs=OBLIGATIONS, limit=st.one_of(st.none(), st.integers(0, 120)), step=st.integers(7, 5000))
def test_streamed_csv_equals_buffered(obs: list[Obligation], limit: int | None, step: int) -> None:
    body = _csv(RECORDS)
    expected = apply_csv(_plan(obs), body, limit)
    pipe = stream_pipeline(_plan(obs), limit)
    assert _stream(pipe, body, "csv", "identity", step) == expected


def test_ndjson_streams_through_the_selection() -> None:
    body = b"".join(orjson.dumps(r) + b"\n" for r in RECORDS)
    plan = _plan([Obligation("row_filter", {"field": "district_code", "in": ["440106"]}),
                  Obligation("mask", {"fields": {"mobile": {"strategy": "redact"}}})])
    pipe = stream_pipeline(plan, 10)
    out = [orjson.loads(line) for line in _stream(pipe, body, "ndjson", "gzip", 333).splitlines()]
    finish_stream(plan, pipe)
    assert len(out) == 10 and plan.records == 10 and plan.dropped == len(RECORDS) - 10
    assert all(r["district_code"] == "440106" and r["mobile"] == "*" * 11 for r in out)


def test_a_single_record_outside_the_filter_is_withheld() -> None:
    plan = _plan([Obligation("row_filter", {"field": "district_code", "in": ["440106"]})])
    with pytest.raises(RecordWithheld):
        _stream(stream_pipeline(plan, None), orjson.dumps(RECORDS[1]), "json", "identity", 50)
    with pytest.raises(LookupError):
        apply_json(_plan([Obligation("row_filter", {"field": "district_code", "in": ["440106"]})]),
                   orjson.dumps(RECORDS[1]), None)
