"""The PII sampler: upstream answers sampled off the event loop, findings kept, never values."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import orjson

from ztgw.gateway.pii_sampler import PiiSampler, SamplerSettings, safe_field, sampled_findings

IDS = ["310114195604018463", "440524188001010014", "11010519491231002X"]
MOBILES = ["13812345678", "13900001111", "15012345678"]


def page(n: int = 30) -> bytes:
    items = [{"id_number": IDS[i % len(IDS)], "mobile": MOBILES[i % len(MOBILES)],
              "district": "吴江区", "seq": i} for i in range(n)]
    return orjson.dumps({"items": items, "page": 1, "size": n})


def sampler(tmp_path: Path, **kw: float | int) -> PiiSampler:
    s = PiiSampler(tmp_path / "pii.db", SamplerSettings(**{"rate": 1.0, "interval": 0.0, **kw}),
                   rng=random.Random(1))
    s.start()
    return s


def fields(tmp_path: Path, dataset: str) -> dict[str, str]:
    (ds,) = sampled_findings(tmp_path / "pii.db", dataset)
    return {f["field"]: f["type"] for f in ds["fields"]}


def test_findings_kept_values_never(tmp_path: Path) -> None:
    s = sampler(tmp_path)
    try:
        s.offer("population.persons", "application/json; charset=utf-8", page())
        s.offer("enterprise.companies", "application/x-ndjson",
                b"\n".join(orjson.dumps({"contact": m, "name": "x"}) for m in MOBILES * 5))
        assert s.drain()
    finally:
        s.stop()
    got = fields(tmp_path, "population.persons")
    assert got["id_number"] == "cn_id_number" and got["mobile"] == "cn_mobile"
    assert "seq" not in got and "district" not in got
    assert fields(tmp_path, "enterprise.companies") == {"contact": "cn_mobile"}
    (ds,) = sampled_findings(tmp_path / "pii.db", "population.persons")
    assert ds["responses"] == 1 and ds["rows"] == 30
    idf = next(f for f in ds["fields"] if f["field"] == "id_number")
    assert idf["rows"] == 30 and idf["matches"] == 30 and idf["first_seen"] <= idf["last_seen"]
    # nothing of the answers' values is on disk (the database and its WAL)
    for f in tmp_path.iterdir():
        raw = f.read_bytes()
        assert not any(v.encode() in raw for v in IDS + MOBILES), f


def test_rate_cap_per_dataset_and_sampling_share(tmp_path: Path) -> None:
    s = sampler(tmp_path, interval=3600.0)
    try:
        for _ in range(5):
            s.offer("population.persons", "application/json", page(3))
        s.offer("enterprise.companies", "application/json", page(3))
        assert s.drain()
        assert s.sampled == 2 and s.offered == 6
    finally:
        s.stop()
    (ds,) = sampled_findings(tmp_path / "pii.db", "population.persons")
    assert ds["responses"] == 1
    off = PiiSampler(tmp_path / "off.db", SamplerSettings(rate=0.0))
    off.start()  # rate 0: never starts, never samples
    off.offer("population.persons", "application/json", page(3))
    assert off.sampled == 0 and not (tmp_path / "off.db").exists()
    half = sampler(tmp_path / "half", rate=0.5)
    try:
        for i in range(400):
            half.offer(f"ds{i}", "application/json", page(1))
        assert half.drain()
        assert 120 < half.sampled + half.dropped < 280  # about half of 400 (seeded draw)
    finally:
        half.stop()


def test_only_whole_records_within_the_byte_cap_and_bad_input(tmp_path: Path) -> None:
    s = sampler(tmp_path, max_bytes=2048)
    try:
        body = page(200)
        assert len(body) > 4 * 2048
        s.offer("population.persons", "application/json", body)
        s.offer("tax.records", "application/json", gzip.compress(page(10)), "gzip")
        s.offer("bad.json", "application/json", b'{"items": [{"id_number": "310114195604018463"}, {')
        s.offer("not.data", "text/html", b"<html>310114195604018463</html>")
        s.offer("worse.json", "application/json", b"\xff\xfe not json")
        assert s.drain()
    finally:
        s.stop()
    (ds,) = sampled_findings(tmp_path / "pii.db", "population.persons")
    assert 0 < ds["rows"] < 200  # the first 2 KiB only, cut-off record left out
    assert fields(tmp_path, "tax.records")["id_number"] == "cn_id_number"  # gzip decoded
    names = {d["dataset"] for d in sampled_findings(tmp_path / "pii.db")}
    assert "not.data" not in names and "worse.json" not in names
    assert "bad.json" in names  # the whole record before the damage counts
    assert s.failed == 1  # worse.json: counted, not raised (and no body in the log)


def test_field_names_that_are_personal_data_are_not_stored() -> None:
    assert safe_field("people.310114195604018463.name") == "people.*.name"
    assert safe_field("by_phone.13812345678[].x") == "by_phone.*[].x"
    assert safe_field("items[].id_number") == "items[].id_number"
    assert len(safe_field("x" * 500)) == 200


def test_stopped_sampler_takes_nothing(tmp_path: Path) -> None:
    s = PiiSampler(tmp_path / "pii.db", SamplerSettings(rate=1.0, interval=0.0))
    s.offer("population.persons", "application/json", page(3))  # not started
    assert s.offered == 0 and sampled_findings(tmp_path / "pii.db") == []


def test_compressed_answers_decode_within_the_cap() -> None:
    import brotli

    from ztgw.gateway.pii_sampler import SampleError, records_from

    bomb = gzip.compress(b'{"items": [' + b'{"mobile": "13812345678"},' * 2_000_000 + b"{}]}")
    assert len(bomb) < 200_000
    recs = records_from(bomb, "json", "gzip", max_bytes=4096)
    assert 0 < len(recs) <= 4096 // 20  # decoded no further than the cap
    recs = records_from(brotli.compress(page(5)), "json", "br", max_bytes=65536)
    assert [r["seq"] for r in recs] == [0, 1, 2, 3, 4]
    csv_recs = records_from(b"id_number,x\n310114195604018463,1\n440524188001010014,2\n4405", "csv",
                            max_bytes=50)
    assert csv_recs == [{"id_number": "310114195604018463", "x": "1"}]  # the cut line left out
    for bad, enc in ((b"not gzip", "gzip"), (b"x", "compress")):
        try:
            records_from(bad, "json", enc, max_bytes=100)
        except SampleError:
            continue
        raise AssertionError(enc)


def test_records_under_any_container_key_are_sampled(tmp_path: Path) -> None:
    """The sampler finds records where the data plane does (data.list, rows, …), also in an
    answer cut at the byte cap."""
    s = sampler(tmp_path, max_bytes=2048)
    recs = orjson.loads(page(200))["items"]
    try:
        s.offer("wrapped.list", "application/json",
                orjson.dumps({"code": 0, "msg": "ok", "data": {"total": 3, "list": recs[:3]}}))
        s.offer("cut.rows", "application/json", orjson.dumps({"total": 200, "rows": recs}))
        s.offer("one.record", "application/json", orjson.dumps({"code": 0, "data": recs[0]}))
        assert s.drain()
    finally:
        s.stop()
    for ds in ("wrapped.list", "cut.rows", "one.record"):
        got = fields(tmp_path, ds)
        assert got.get("id_number") == "cn_id_number" and got.get("mobile") == "cn_mobile", (ds, got)
