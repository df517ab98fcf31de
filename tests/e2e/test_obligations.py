"""Obligations carried out by a running gateway (issue 7 wiring of issues 5 and 8): row filters
pushed down and re-checked, projections, row limits per response and per day, step-up, and a
watermark that `ztgw watermark trace` attributes to the recipient and the request."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import RunningGateway, start_processes, stop_processes

pytestmark = pytest.mark.e2e
PERSONS = "/api/population/persons"
DISTRICT = "440106"  # 广州市天河区

BUNDLE = f"""
bundle: obligations-test
version: "1"
rules:
  - id: analytics-tianhe-only
    effect: allow
    subjects: [client:demo-analytics]
    datasets: [population.persons]
    actions: [read]
    obligations:
      - type: row_filter
        field: district_code
        in: ["{DISTRICT}"]
      - type: project
        fields: [id_number, name, mobile, district, district_code]
      - type: mask
        fields:
          mobile: {{strategy: keep, first: 3, last: 4}}
      - type: max_rows
        limit: 3
  - id: analytics-companies-watermarked
    effect: allow
    subjects: [client:demo-analytics]
    datasets: [enterprise.companies]
    actions: [read]
    obligations:
      - type: watermark
        scheme: recipient
  - id: police-needs-mfa
    effect: allow
    subjects: [client:demo-police]
    datasets: [population.persons]
    actions: [read]
    obligations:
      - type: step_up
        acr_values: ["urn:ztgw:acr:mfa"]
  - id: hrss-daily-quota
    effect: allow
    subjects: [client:demo-hrss]
    datasets: [social-security.contributions]
    actions: [read]
    obligations:
      - type: max_rows
        limit: 5
        per: day
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    bundle = tmp_path_factory.mktemp("bundle")
    (bundle / "policy.yaml").write_text(BUNDLE, encoding="utf-8")
    gw, procs = start_processes(tmp_path_factory.mktemp("obligations"),
                                {"ZTGW_POLICY_BUNDLE": str(bundle)})
    try:
        yield gw
    finally:
        stop_processes(procs)


def _get(gw: RunningGateway, client: str, path: str, **params: object) -> httpx.Response:
    return httpx.get(f"{gw.base}{path}", params=params,
                     headers={"Authorization": f"Bearer {gw.token(client)}"}, timeout=10)


def test_row_filter_projection_mask_and_limit(gw: RunningGateway) -> None:
    r = _get(gw, "demo-analytics", PERSONS, size=50)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert 0 < len(items) <= 3
    for rec in items:
        assert rec["district_code"] == DISTRICT
        assert set(rec) <= {"id_number", "name", "mobile", "district", "district_code"}
        assert re.fullmatch(r"1\d{2}\*{4}\d{4}", rec["mobile"])


def test_csv_obeys_the_same_obligations(gw: RunningGateway) -> None:
    r = httpx.get(f"{gw.base}{PERSONS}", params={"size": 10},
                  headers={"Authorization": f"Bearer {gw.token('demo-analytics')}",
                           "Accept": "text/csv"})
    assert r.status_code == 200
    lines = r.text.strip().splitlines()
    header = lines[0].split(",")
    assert set(header) <= {"id_number", "name", "mobile", "district", "district_code"}
    assert 1 < len(lines) <= 4
    assert all(line.split(",")[header.index("district_code")] == DISTRICT for line in lines[1:])


def test_asking_for_another_district_is_refused(gw: RunningGateway) -> None:
    r = _get(gw, "demo-analytics", PERSONS, district_code="110101")
    assert r.status_code == 403 and r.json()["error"] == "row_filter_violation"


def test_detail_outside_the_filter_is_not_found(gw: RunningGateway) -> None:
    other = httpx.get(f"{gw.upstream}{PERSONS}", params={"district_code": "110101", "size": 1}
                      ).json()["items"][0]["id_number"]
    r = _get(gw, "demo-analytics", f"{PERSONS}/{other}")
    assert r.status_code == 404
    assert other not in r.text


def test_step_up_is_demanded(gw: RunningGateway) -> None:
    r = _get(gw, "demo-police", PERSONS)
    assert r.status_code == 401
    assert r.json()["error"] == "insufficient_user_authentication"
    assert 'acr_values="urn:ztgw:acr:mfa"' in r.headers["www-authenticate"]


def test_daily_quota(gw: RunningGateway) -> None:
    path = "/api/social-security/contributions"
    first = _get(gw, "demo-hrss", path, size=3)
    assert first.status_code == 200 and len(first.json()["items"]) == 3
    second = _get(gw, "demo-hrss", path, size=3)
    assert second.status_code == 200 and len(second.json()["items"]) == 2
    third = _get(gw, "demo-hrss", path, size=3)
    assert third.status_code == 429 and third.json()["error"] == "quota_exceeded"


def test_watermark_traces_a_leak_to_recipient_and_request(gw: RunningGateway, tmp_path: Path) -> None:
    r = _get(gw, "demo-analytics", "/api/enterprise/companies", size=200)
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    items = r.json()["items"]
    # the leaker keeps a shuffled subset of 120 rows and drops two columns, as CSV
    import csv
    import random
    rows = random.Random(7).sample(items, 120)
    for row in rows:
        row.pop("address", None)
        row.pop("industry", None)
    leak = tmp_path / "leak.csv"
    with leak.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    out = gw.cli_json("watermark", "trace", str(leak), "--json")
    assert out["attributed"] is True, out
    assert out["recipient"] == "demo-analytics" and out["request_id"] == rid
    for _ in range(50):
        ev = gw.cli_json("audit", "search", "--request-id", rid, "--json")["events"]
        if ev:
            break
        time.sleep(0.1)
    assert ev[0]["ztgw"]["watermark"]["id"] == out["matches"][0]["watermark_id"]
    # data that was never served names nobody
    clean = tmp_path / "clean.json"
    raw = httpx.get(f"{gw.upstream}/api/enterprise/companies", params={"size": 200}).json()
    clean.write_text(json.dumps(raw["items"][:150], ensure_ascii=False), encoding="utf-8")
    assert gw.cli_json("watermark", "trace", str(clean), "--json")["attributed"] is False
