"""Watermarks survive what leakers do, name the right recipient, and name nobody otherwise."""

from __future__ import annotations

import copy
import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from ztgw.crypto import sm3
from ztgw.gateway.demo.data import get_dataset
from ztgw.gateway.protection.detectors import classify
from ztgw.gateway.protection.formats import iter_records
from ztgw.gateway.protection.identifiers import is_valid_id_number
from ztgw.gateway.protection.keys import ProtectionKeys
from ztgw.gateway.protection.masking import MaskPlan
from ztgw.gateway.protection.watermark import (
    ZW0,
    ZW1,
    Watermarker,
    WatermarkIssue,
    WatermarkRegistry,
    binomial_tail,
)

KEY = bytes(range(32))
ROWS = 200


def _serve(wm: Watermarker, dataset: str, start: int, recipient: str, request: str,
           rows: int = ROWS) -> tuple[list[dict[str, Any]], WatermarkIssue]:
    recs = copy.deepcopy(get_dataset(dataset)[start:start + rows])
    plan = wm.plan(recipient, request, dataset)
    for rec in recs:
        plan.record(rec)
    return recs, plan.issue


@pytest.fixture(scope="module")
def served() -> dict[str, Any]:
    """Ten recipients each fetched the same pages of every dataset: a leak must be told apart
    from the same rows served to someone else."""
    wm = Watermarker(KEY)
    issues: list[WatermarkIssue] = []
    leaks: dict[str, list[dict[str, Any]]] = {}
    for ds in ("persons", "companies", "contributions"):
        for r in range(10):
            recs, issue = _serve(wm, ds, 0, f"app-{r}", f"req-{ds}-{r}")
            issues.append(issue)
            if r == 7:
                leaks[ds] = recs
    return {"wm": wm, "issues": issues, "leaks": leaks}


def _check(served: dict[str, Any], ds: str, records: list[dict[str, Any]]) -> None:
    res = served["wm"].trace(records, served["issues"])
    assert res.recipient == "app-7" and res.request_id == f"req-{ds}-7", res.to_dict()
    assert len(res.attributed) == 1 and res.attributed[0].p_value < 1e-9


DATASETS = ["persons", "companies", "contributions"]


@pytest.mark.parametrize("ds", DATASETS)
def test_full_leak(served: dict[str, Any], ds: str) -> None:
    _check(served, ds, served["leaks"][ds])


@pytest.mark.parametrize("ds", DATASETS)
def test_subset_of_50_shuffled_rows(served: dict[str, Any], ds: str) -> None:
    rows = random.Random(ds).sample(served["leaks"][ds], 50)
    _check(served, ds, rows)


@pytest.mark.parametrize(("ds", "drop"), [
    ("persons", {"id_number", "name", "mobile", "gender", "birth_date"}),  # keep the address
    ("companies", {"address", "industry"}),  # only the company name carries
    ("contributions", {"employer_name", "bank_name"}),  # only money columns carry
])
def test_dropped_columns(served: dict[str, Any], ds: str, drop: set[str]) -> None:
    rows = [{k: v for k, v in r.items() if k not in drop} for r in served["leaks"][ds][:100]]
    _check(served, ds, rows)


def _to_csv(records: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(records[0]))
    w.writeheader()
    w.writerows(records)
    return out.getvalue()


@pytest.mark.parametrize("ds", DATASETS)
def test_json_csv_ndjson_conversions_and_reformatting(served: dict[str, Any], ds: str,
                                                      tmp_path: Path) -> None:
    leak = served["leaks"][ds][:120]
    # JSON (pretty-printed, keys renamed to pinyin, reordered) → CSV → NDJSON → JSON
    renamed = [{f"col{i}": v for i, (k, v) in enumerate(sorted(r.items()))} for r in leak]
    pretty = tmp_path / "leak.json"
    pretty.write_text(json.dumps(renamed, ensure_ascii=False, indent=4), encoding="utf-8")
    as_csv = tmp_path / "leak.txt"  # the name says nothing: the format is sniffed
    as_csv.write_text(_to_csv(list(iter_records(pretty))), encoding="utf-8")
    csv_rows = list(iter_records(as_csv))
    as_nd = tmp_path / "leak.ndjson"
    as_nd.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in csv_rows))
    back = tmp_path / "back.json"
    back.write_bytes(orjson.dumps({"data": list(iter_records(as_nd))}))
    for path in (pretty, as_csv, as_nd):
        _check(served, ds, list(iter_records(path)))
    # CSV read back as numbers (a spreadsheet round trip): floats come back as floats
    typed = [{k: (float(v) if v.replace(".", "", 1).isdigit() and "." in v else v) for k, v in r.items()}
             for r in csv_rows]
    _check(served, ds, typed)


def test_identifiers_stay_exactly_valid_and_masked_values_valid_looking() -> None:
    wm = Watermarker(KEY)
    recs = copy.deepcopy(get_dataset("persons")[:100])
    plan = MaskPlan.from_obligation({"types": {"cn_id_number": {"strategy": "token"}}},
                                    keys=ProtectionKeys(KEY))
    originals = copy.deepcopy(recs)
    wplan = wm.plan("app", "req")
    for rec in recs:
        plan.record(rec)
        wplan.record(rec)
    for rec, orig in zip(recs, originals, strict=True):
        assert is_valid_id_number(rec["id_number"])  # token + watermark: still a valid number
        for f in ("name", "mobile", "birth_date", "gender", "district_code"):
            assert rec[f] == orig[f]  # identifiers and short values are never carriers
        assert rec["address"].replace(ZW0, "").replace(ZW1, "") == orig["address"]
        assert rec["address"] != orig["address"]  # the invisible mark is there
        assert classify(rec["address"].replace(ZW0, "").replace(ZW1, "")) == "cn_address"


def test_money_moves_by_at_most_one_cent() -> None:
    wm = Watermarker(KEY)
    recs = copy.deepcopy(get_dataset("contributions")[:200])
    orig = copy.deepcopy(recs)
    wm.mark_records(recs, "app", "req")
    changed = 0
    for a, b in zip(recs, orig, strict=True):
        for k, v in b.items():
            if isinstance(v, float):
                assert abs(a[k] - v) <= 0.0100001
                changed += a[k] != v
            elif isinstance(v, int):
                assert a[k] == v
    assert changed > 0


def test_false_attribution_over_many_unrelated_tables() -> None:
    """500 issued watermarks; 300 tables never served under any of them — demo slices marked
    under another key, unmarked slices, random numbers — must name nobody."""
    wm = Watermarker(KEY)
    issues = [WatermarkIssue(wm.watermark_id(f"app-{i}", f"req-{i}"), f"app-{i}", f"req-{i}")
              for i in range(500)]
    stranger = Watermarker(bytes(range(100, 132)))
    rng = random.Random(8)
    best = 1.0
    for t in range(300):
        ds = ("persons", "companies", "contributions")[t % 3]
        start = rng.randrange(0, 9000)
        table = copy.deepcopy(get_dataset(ds)[start:start + 100])
        if t % 3 == 0:
            stranger.mark_records(table, "app-1", "req-1")  # same names, another key
        elif t % 3 == 1:
            table = [{"x": rng.uniform(1, 10000), "y": f"{rng.uniform(1, 99999):.2f}"} for _ in range(100)]
        res = wm.trace(table, issues)
        assert res.recipient is None, res.to_dict()
        if res.best is not None:
            best = min(best, res.best.p_value)
    assert best > 1e-9


def test_trace_with_a_registry_and_no_candidates(tmp_path: Path) -> None:
    reg = WatermarkRegistry(tmp_path / "w.db")
    wm = Watermarker(KEY, reg)
    assert wm.trace(get_dataset("persons")[:60]).recipient is None  # nothing issued yet
    recs = copy.deepcopy(get_dataset("persons")[:60])
    wm.mark_records(recs, "app-x", "req-x", "persons")
    wm.mark_records(copy.deepcopy(recs), "app-y", "req-y", "persons")
    assert reg.count() == 2
    res = wm.trace(recs)
    assert (res.recipient, res.request_id) == ("app-x", "req-x")
    assert res.to_dict()["matches"][0]["dataset"] == "persons"


def test_merged_leak_names_both_requests() -> None:
    wm = Watermarker(KEY)
    a, ia = _serve(wm, "companies", 0, "app-a", "req-a", 80)
    b, ib = _serve(wm, "companies", 500, "app-b", "req-b", 80)
    res = wm.trace(a + b, [ia, ib])
    assert {c.issue.recipient for c in res.attributed} == {"app-a", "app-b"}


def test_prf_is_hmac_sm3() -> None:
    wm = Watermarker(KEY)
    assert wm._prf_raw("t测试") == sm3.hmac(KEY, "t测试".encode())


def test_binomial_tail() -> None:
    assert binomial_tail(10, 0) == 1.0 and binomial_tail(10, 11) == 0.0
    assert binomial_tail(10, 10) == pytest.approx(2**-10)
    assert binomial_tail(3, 2) == pytest.approx(0.5)
    assert binomial_tail(2000, 2000) == pytest.approx(0.0, abs=1e-300)


def test_batch_marking_equals_record_by_record() -> None:
    wm = Watermarker(KEY)
    recs = copy.deepcopy(get_dataset("contributions")[:300])
    for i, r in enumerate(recs):
        r["extra"] = {"addr": get_dataset("persons")[i]["address"], "fee": 12.5 + i}
        r["items"] = [{"note": "北京市朝阳区建国路88号"}]
    a, b = copy.deepcopy(recs), copy.deepcopy(recs)
    pa, pb = wm.plan("app", "req"), wm.plan("app", "req")
    for rec in a:
        pa.record(rec)
    pb.records(b)
    assert a == b and pa.bits == pb.bits > 0
    assert a != recs
