"""``ztgw scan pii`` and ``ztgw watermark mark|trace`` as a real process."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from ztgw.gateway.demo.data import get_dataset
from ztgw.gateway.protection.identifiers import id_check_char

ZTGW = [sys.executable, "-m", "ztgw.gateway"]


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZTGW_HOME": str(home)}
    env.pop("ZTGW_CONFIG", None)
    return subprocess.run([*ZTGW, "--home", str(home), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def run_json(home: Path, *args: str) -> Any:
    out = run(home, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def test_scan_pii_judges_opaque_columns_by_content(tmp_path: Path) -> None:
    rng = random.Random(3)
    persons = get_dataset("persons")[:200]
    rows = []
    for p in persons:
        body = f"{rng.randrange(10**16, 10**17)}"  # 17-digit order body
        wrong = "0123456789X"[("0123456789X".index(id_check_char(body)) + 1) % 11]
        rows.append([p["id_number"], p["name"], p["mobile"], p["address"], body + wrong,
                     f"申请人{p['name']}，身份证{p['id_number']}", p["ethnicity"], p["birth_date"]])
    path = tmp_path / "export.dat"
    _write_csv(path, ["sfzh", "xm", "lxdh", "zz", "ddh", "bz", "mz", "csrq"], rows)
    doc = run_json(tmp_path / "home", "scan", "pii", str(path))
    found = {(f["field"], f["type"]): (f["matches"], f["rows"]) for f in doc["fields"]}
    assert doc["format"] == "csv" and doc["rows"] == 200
    assert found[("sfzh", "cn_id_number")] == (200, 200)
    assert found[("xm", "cn_name")] == (200, 200)
    assert found[("lxdh", "cn_mobile")] == (200, 200)
    assert found[("zz", "cn_address")] == (200, 200)
    assert found[("bz", "cn_id_number")] == (200, 200) and found[("bz", "cn_name")] == (200, 200)
    assert not any(f == "ddh" for f, _ in found)  # 18-digit decoys with wrong check digits
    assert not any(f in ("mz", "csrq") for f, _ in found)


def test_scan_pii_json_nested_and_ndjson(tmp_path: Path) -> None:
    recs = [{"id": i, "owner": {"contact": {"dh": c["contact_phone"]}, "xydm": c["uscc"]},
             "cards": [{"no": k["bank_card"]}]}
            for i, (c, k) in enumerate(zip(get_dataset("companies")[:50], get_dataset("contributions")[:50],
                                           strict=True))]
    (tmp_path / "a.json").write_bytes(orjson.dumps({"items": recs}))
    (tmp_path / "b.ndjson").write_bytes(b"\n".join(orjson.dumps(r) for r in recs))
    for name, fmt in (("a.json", "json"), ("b.ndjson", "ndjson")):
        doc = run_json(tmp_path / "home", "scan", "pii", str(tmp_path / name))
        types = {(f["field"], f["type"]) for f in doc["fields"]}
        assert doc["format"] == fmt
        assert {("owner.xydm", "cn_uscc"), ("cards[].no", "bank_card")} <= types
        assert ("owner.contact.dh", "cn_landline") in types or ("owner.contact.dh", "cn_mobile") in types


def test_scan_pii_bad_input(tmp_path: Path) -> None:
    assert run(tmp_path, "scan", "pii", str(tmp_path / "missing.csv")).returncode == 2
    bad = tmp_path / "bad.json"
    bad.write_text('[{"a": 1}, {"a": ', encoding="utf-8")
    out = run(tmp_path, "scan", "pii", str(bad), "--json")
    assert out.returncode == 2 and out.stdout == ""


@pytest.mark.slow  # seven CLI processes: ~30 s on the shared machine
def test_mark_then_trace_a_converted_subset(tmp_path: Path) -> None:
    home = tmp_path / "home"
    src = tmp_path / "persons.json"
    src.write_bytes(orjson.dumps({"items": get_dataset("persons")[:300]}))
    assert run(home, "watermark", "trace", str(src)).returncode == 2  # no key: nothing issued here
    marked = {}
    for who in ("dept-a", "dept-b", "dept-c"):
        out = tmp_path / f"{who}.json"
        doc = run_json(home, "watermark", "mark", str(src), "--recipient", who, "--request-id",
                       f"ticket-{who}", "--out", str(out), "--dataset", "persons")
        assert doc["records"] == 300 and doc["bits"] > 300
        marked[who] = out
    assert (home / "keys" / "protection.key").stat().st_mode & 0o777 == 0o600
    # dept-b leaks 60 shuffled rows, converted to CSV without the ID column
    rows = orjson.loads(marked["dept-b"].read_bytes())["items"]
    random.Random(1).shuffle(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[k for k in rows[0] if k != "id_number"], extrasaction="ignore")
    w.writeheader()
    w.writerows(rows[:60])
    leak = tmp_path / "leak.csv"
    leak.write_text(buf.getvalue(), encoding="utf-8")
    doc = run_json(home, "watermark", "trace", str(leak))
    assert doc["attributed"] and doc["recipient"] == "dept-b" and doc["request_id"] == "ticket-dept-b"
    assert doc["matches"][0]["p_value"] < 1e-9 and doc["candidates"] == 3
    human = run(home, "watermark", "trace", str(leak))
    assert human.returncode == 0 and "dept-b" in human.stdout
    # the unmarked original names nobody
    clean = run_json(home, "watermark", "trace", str(src))
    assert clean["attributed"] is False and clean["recipient"] is None


@pytest.mark.parametrize("alpha", ["0", "1", "-3"])
def test_trace_rejects_bad_alpha(tmp_path: Path, alpha: str) -> None:
    f = tmp_path / "x.csv"
    f.write_text("a\n1\n", encoding="utf-8")
    assert run(tmp_path, "watermark", "trace", str(f), "--alpha", alpha).returncode == 2


def test_scan_pii_reads_every_column_of_a_duplicated_csv_header(tmp_path: Path) -> None:
    """A repeated header name used to fold its columns into one (the last): the first
    column's identifiers went unreported."""
    persons = get_dataset("persons")[:40]
    path = tmp_path / "dup.csv"
    _write_csv(path, ["bh", "xm", "bh"], [[p["id_number"], p["name"], p["ethnicity"]] for p in persons])
    doc = run_json(tmp_path / "home", "scan", "pii", str(path))
    found = {(f["field"], f["type"]): f["rows"] for f in doc["fields"]}
    assert found.get(("bh", "cn_id_number")) == 40, doc
    assert not any(f == "bh#2" for f, _ in found)
