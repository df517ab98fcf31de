"""`ztgw scan pii --sampled` and `ztgw scan coverage` against a running gateway.

The gateway samples every upstream answer here (ZTGW_PII_SAMPLE_RATE=1, no per-dataset
interval); the data plane hands each 200 answer to the sampler before masking.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import RunningGateway, start_processes, stop_processes


@pytest.fixture(scope="module")
def sampling_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    gw, procs = start_processes(tmp_path_factory.mktemp("ztgw-pii-sampled"), {
        "ZTGW_PII_SAMPLE_RATE": "1",
        "ZTGW_PII_SAMPLE_INTERVAL": "0",
    })
    try:
        yield gw
    finally:
        stop_processes(procs)


def sampled(gw: RunningGateway, dataset: str) -> list[dict[str, Any]]:
    return list(gw.cli_json("scan", "pii", "--sampled", "--json", "--dataset", dataset)["datasets"])


def test_sampled_answers_show_id_numbers_and_nothing_of_their_values(sampling_gw: RunningGateway) -> None:
    token = sampling_gw.token("demo-police")
    r = httpx.get(f"{sampling_gw.base}/api/population/persons?size=20",
                  headers={"Authorization": f"Bearer {token}"}, timeout=15)
    assert r.status_code == 200
    values = [p["id_number"] for p in r.json()["items"]]
    deadline = time.monotonic() + 20
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = sampled(sampling_gw, "population.persons")
        if found and found[0]["fields"]:
            break
        time.sleep(0.3)
    assert found, "no sampled answer recorded"
    (ds,) = found
    types = {(f["field"], f["type"]) for f in ds["fields"]}
    assert ("id_number", "cn_id_number") in types
    assert ds["responses"] >= 1 and ds["rows"] >= 1
    # findings only: no value of the answer is on disk under detection/
    for f in (sampling_gw.home / "detection").glob("pii-sampled.db*"):
        raw = f.read_bytes()
        assert not any(v.encode() in raw for v in values if v), f.name
    # coverage reads the sampled findings: the demo catalogue flags these fields right
    report = sampling_gw.cli_json("scan", "coverage", "--json")
    assert report["sampled_datasets"] >= 1
    row = next(r for r in report["datasets"] if r["dataset"] == "population.persons")
    assert row["sampled_pi_fields"] == []
    assert not any(f.get("field") for f in report["findings"] if f["dataset"] == "population.persons")
    # the text form names the dataset too
    out = sampling_gw.cli("scan", "pii", "--sampled", "--dataset", "population.persons")
    assert out.returncode == 0 and "population.persons" in out.stdout


def test_scan_pii_needs_a_file_or_sampled(sampling_gw: RunningGateway) -> None:
    assert sampling_gw.cli("scan", "pii").returncode == 2
    assert sampling_gw.cli("scan", "pii", "--sampled", "x.json").returncode == 2
    empty = sampling_gw.cli_json("scan", "pii", "--sampled", "--json", "--dataset", "no.such")
    assert empty == {"sampled": True, "datasets": []}


def test_coverage_lists_a_grant_about_to_expire(sampling_gw: RunningGateway) -> None:
    req = sampling_gw.cli_json("requests", "create", "--dataset", "enterprise.companies",
                               "--field", "name", "--purpose", "coverage e2e", "--days", "2",
                               "--client", "demo-research", "--json")
    done = sampling_gw.cli_json("requests", "approve", req["id"], "--as", "zhouqiang",
                                "--reason", "ok for the test", "--json")
    grant_id = done["grant_id"]
    assert grant_id
    report = sampling_gw.cli_json("scan", "coverage", "--json", "--expiring-days", "7")
    mine = [f for f in report["findings"] if f.get("grant") == grant_id]
    assert len(mine) == 1 and "expires within 7 days" in mine[0]["finding"]
    assert mine[0]["dataset"] == "enterprise.companies" and report["grants_checked"] >= 1
    # a day's horizon does not list a grant that runs two more days
    short = sampling_gw.cli_json("scan", "coverage", "--json", "--expiring-days", "1")
    assert not any(f.get("grant") == grant_id for f in short["findings"])
    # once revoked it is no longer a coverage item
    assert sampling_gw.cli("grants", "revoke", grant_id, "--as", "zhouqiang", "--reason",
                           "done").returncode == 0
    after = sampling_gw.cli_json("scan", "coverage", "--json", "--expiring-days", "7")
    assert not any(f.get("grant") == grant_id for f in after["findings"])
