"""Every protection strategy written in a policy bundle, carried out by a running gateway (issue 8).

The bundle below masks by field name, by path and by detector type ("anything that is an ID
number, wherever it is") with keyed pseudonyms, FF1-SM4 tokens, generalisation, bucketing and
noise; two rules apply to the same caller so their masks merge (the stricter wins).  Every
answer is compared with what the demo upstream holds: tokens are reversed with the gateway's
own key to show they are the real values in disguise, and still pass their check characters.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from ztgw.gateway.protection.identifiers import is_valid_id_number, is_valid_luhn, is_valid_uscc
from ztgw.gateway.protection.keys import ProtectionKeys
from ztgw.gateway.protection.strategies import Tokenizer, generalize_address

from .conftest import RunningGateway, start_processes, stop_processes
from .upstreams import AiohttpUpstream

pytestmark = pytest.mark.e2e
PERSONS = "/api/population/persons"
COMPANIES = "/api/enterprise/companies"
CONTRIBUTIONS = "/api/social-security/contributions"

BUNDLE = """
bundle: protection-obligations-test
version: "1"
rules:
  - id: persons-deidentified
    effect: allow
    subjects: [client:demo-analytics]
    datasets: [population.persons]
    actions: [read]
    obligations:
      - type: mask
        fields:
          birth_date: {strategy: generalize, to: year}
          address: {strategy: generalize, to: district}
        detectors:
          cn_id_number: {strategy: token}
          cn_mobile: {strategy: keep, first: 3, last: 4}
  - id: persons-names-pseudonymous
    effect: allow
    subjects: [client:demo-analytics]
    datasets: [population.persons]
    actions: [read]
    obligations:
      - type: mask
        fields:
          name: {strategy: pseudonym}
          address: {strategy: keep, first: 3}
        detectors:
          cn_mobile: {strategy: keep, first: 3, last: 2}
  - id: companies-by-detector
    effect: allow
    subjects: [client:demo-analytics]
    datasets: [enterprise.companies]
    actions: [read]
    obligations:
      - type: mask
        paths:
          $.uscc: {strategy: token}
          registered_capital: {strategy: bucket, width: 100}
        detectors:
          cn_id_number: {strategy: pseudonym}
          cn_landline: {strategy: redact}
          cn_mobile: {strategy: redact}
  - id: contributions-statistical
    effect: allow
    subjects: [client:demo-hrss]
    datasets: [social-security.contributions]
    actions: [read]
    obligations:
      - type: mask
        fields:
          base_salary: {strategy: noise, scale: 0.1}
          pension_personal: {strategy: generalize, to: band, width: 100}
          name: {strategy: pseudonym, format: hex}
        detectors:
          bank_card: {strategy: token}
          cn_id_number: {strategy: "null"}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    bundle = tmp_path_factory.mktemp("protection-bundle")
    (bundle / "policy.yaml").write_text(BUNDLE, encoding="utf-8")
    gw, procs = start_processes(tmp_path_factory.mktemp("protection-obligations"),
                                {"ZTGW_POLICY_BUNDLE": str(bundle)})
    try:
        yield gw
    finally:
        stop_processes(procs)


@pytest.fixture(scope="module")
def tokenizer(gw: RunningGateway) -> Tokenizer:
    return Tokenizer(ProtectionKeys.load_or_create(gw.home / "keys").token)


def _get(gw: RunningGateway, client: str, path: str, accept: str = "application/json",
         **params: object) -> httpx.Response:
    return httpx.get(f"{gw.base}{path}", params=params, timeout=20,
                     headers={"Authorization": f"Bearer {gw.token(client)}", "Accept": accept})


def _upstream(gw: RunningGateway, path: str, **params: object) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = httpx.get(f"{gw.upstream}{path}", params=params, timeout=20).json()["items"]
    return items


def _check_person(rec: dict[str, Any], orig: dict[str, Any], tokenizer: Tokenizer) -> None:
    token = rec["id_number"]
    assert token != orig["id_number"] and is_valid_id_number(token)
    assert token[:6] == orig["id_number"][:6]  # the region code stays
    assert tokenizer.detokenize(token, "cn_id_number") == orig["id_number"]
    # both rules mask the mobile by detector: keep 3/4 ∧ keep 3/2 → keep 3/2
    assert rec["mobile"] == orig["mobile"][:3] + "*" * 6 + orig["mobile"][-2:]
    assert rec["birth_date"] == orig["birth_date"][:4]
    # address: generalize (to district) is stricter than keep (first 3)
    district = generalize_address(orig["address"], "district")
    assert district and rec["address"] == district and rec["address"] != orig["address"]
    # a same-shaped keyed pseudonym: another name of the same length, never the real one
    assert rec["name"] != orig["name"] and len(rec["name"]) == len(orig["name"])
    assert re.fullmatch(r"[\u4e00-\u9fff]+", rec["name"])
    for key in ("gender", "district", "district_code", "marital_status"):
        assert rec[key] == orig[key]


def test_persons_json_every_selector_and_merged_masks(gw: RunningGateway, tokenizer: Tokenizer) -> None:
    r = _get(gw, "demo-analytics", PERSONS, size=30)
    assert r.status_code == 200, r.text
    items, origs = r.json()["items"], _upstream(gw, PERSONS, size=30)
    assert len(items) == len(origs) == 30
    for rec, orig in zip(items, origs, strict=True):
        _check_person(rec, orig, tokenizer)
    # pseudonyms and tokens are consistent across responses (joins keep working)
    again = _get(gw, "demo-analytics", PERSONS, size=30).json()["items"]
    assert [(a["id_number"], a["name"]) for a in again] == [(a["id_number"], a["name"]) for a in items]


def test_persons_csv_is_masked_the_same_way(gw: RunningGateway, tokenizer: Tokenizer) -> None:
    r = _get(gw, "demo-analytics", PERSONS, accept="text/csv", size=10)
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    origs = _upstream(gw, PERSONS, size=10)
    assert len(rows) == 10
    for rec, orig in zip(rows, origs, strict=True):
        _check_person(rec, orig, tokenizer)


def test_companies_paths_detectors_and_buckets(gw: RunningGateway, tokenizer: Tokenizer) -> None:
    r = _get(gw, "demo-analytics", COMPANIES, size=30)
    assert r.status_code == 200, r.text
    items, origs = r.json()["items"], _upstream(gw, COMPANIES, size=30)
    for rec, orig in zip(items, origs, strict=True):
        assert rec["uscc"] != orig["uscc"] and is_valid_uscc(rec["uscc"])
        assert tokenizer.detokenize(rec["uscc"], "cn_uscc") == orig["uscc"]
        # an ID number in a field the bundle never names, found by its detector
        assert rec["legal_rep_id_number"] != orig["legal_rep_id_number"]
        assert is_valid_id_number(rec["legal_rep_id_number"])
        # landlines and mobiles alike, each by its own detector
        assert rec["contact_phone"] == "*" * len(orig["contact_phone"])
        cap = orig["registered_capital"]
        assert rec["registered_capital"] == int(cap // 100 * 100)
        assert rec["name"] == orig["name"] and rec["legal_representative"] == orig["legal_representative"]


def test_contributions_noise_bands_hex_pseudonyms_and_card_tokens(gw: RunningGateway,
                                                                     tokenizer: Tokenizer) -> None:
    r = _get(gw, "demo-hrss", CONTRIBUTIONS, size=20)
    assert r.status_code == 200, r.text
    items, origs = r.json()["items"], _upstream(gw, CONTRIBUTIONS, size=20)
    assert len(items) == 20
    noised = 0
    for rec, orig in zip(items, origs, strict=True):
        assert rec["id_number"] is None
        assert re.fullmatch(r"p_[0-9a-f]{16}", rec["name"])
        card = rec["bank_card"]
        assert card != orig["bank_card"] and card[:6] == orig["bank_card"][:6] and is_valid_luhn(card)
        assert tokenizer.detokenize(card, "bank_card") == orig["bank_card"]
        base = orig["base_salary"]
        assert isinstance(rec["base_salary"], int) and abs(rec["base_salary"] - base) <= 0.1 * base + 1
        noised += rec["base_salary"] != base
        lo = int(orig["pension_personal"] // 100 * 100)
        assert rec["pension_personal"] == f"{lo}-{lo + 99}"
        assert rec["record_id"] == orig["record_id"] and rec["month"] == orig["month"]
    assert noised >= 10  # the noise is really there


def test_the_audit_names_masked_fields_not_values(gw: RunningGateway) -> None:
    r = _get(gw, "demo-hrss", CONTRIBUTIONS, size=5)
    assert r.status_code == 200
    rid = r.headers["x-request-id"]
    orig = _upstream(gw, CONTRIBUTIONS, size=5)
    events: list[dict[str, Any]] = []
    for _ in range(100):
        events = gw.cli_json("audit", "search", "--request-id", rid, "--json")["events"]
        if events:
            break
        time.sleep(0.1)
    assert events
    text = str(events)
    assert all(o["id_number"] not in text and o["bank_card"] not in text for o in orig)
    assert '"masked_fields"' in orjson.dumps(events).decode()
    found = _find_key(events, "masked_fields")
    assert found is not None and {"base_salary", "bank_card", "id_number", "name"} <= set(found)


def _find_key(node: Any, key: str) -> Any:
    if isinstance(node, dict):
        if key in node:
            return node[key]
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            found = _find_key(item, key)
            if found is not None:
                return found
    return None


# ------------------------------------------------------------------ answers of other shapes

ENVELOPE_BUNDLE = """
bundle: protection-envelopes-test
version: "1"
rules:
  - id: persons-by-name
    effect: allow
    subjects: [client:demo-analytics]
    datasets: [population.persons]
    actions: [read]
    obligations:
      - type: mask
        fields:
          id_number: {strategy: redact}
          name: {strategy: redact}
        paths:
          mobile: {strategy: keep, first: 3}
  - id: persons-one-district
    effect: allow
    subjects: [client:demo-hrss]
    datasets: [population.persons]
    actions: [read]
    obligations:
      - type: row_filter
        field: district_code
        in: ["440106"]
      - type: mask
        fields:
          id_number: {strategy: redact}
"""
ENV_ID = "11010519491231002X"
ENV_PEOPLE = [
    {"id_number": ENV_ID, "name": "张三", "mobile": "13800138000", "district_code": "440106"},
    {"id_number": "440106199001011235", "name": "李四", "mobile": "13912345678", "district_code": "110101"},
]
ENV_SECRETS = (ENV_ID, "张三", "13800138000", "440106199001011235", "李四", "13912345678")
SHAPES: dict[str, Any] = {
    "data": {"code": 0, "msg": "ok", "data": ENV_PEOPLE},
    "data.list": {"code": 0, "msg": "ok", "data": {"total": 2, "list": ENV_PEOPLE}},
    "data.items": {"code": 0, "data": {"items": ENV_PEOPLE, "page": 1}},
    "result.records": {"success": True, "result": {"records": ENV_PEOPLE, "total": 2}},
    "rows": {"total": 2, "rows": ENV_PEOPLE},
    "persons": {"code": "0000", "persons": ENV_PEOPLE},  # no container key
    "unknown": {"code": 0, "payload": {"people": {"all": ENV_PEOPLE}}},  # not understood
    "two-lists": {"items": ENV_PEOPLE[1:], "also": ENV_PEOPLE[:1]},
}


class EnvelopeUpstream(AiohttpUpstream):
    """A data API answering in other envelopes (?shape=…), duplicate CSV headers (Accept:
    text/csv), and single records wrapped as {"code": 0, "data": {...}}."""

    async def handle(self, request: Any) -> Any:
        from aiohttp import web

        if request.headers.get("accept", "").startswith("text/csv"):
            rows = ["id_number,name,id_number,mobile,name,district_code"]
            rows += [f"{p['id_number']},{p['name']},{p['id_number']},{p['mobile']},{p['name']},"
                     f"{p['district_code']}" for p in ENV_PEOPLE]
            return web.Response(body=("\r\n".join(rows) + "\r\n").encode(), content_type="text/csv")
        if request.path.count("/") >= 4:  # /api/population/persons/{id}
            return web.json_response({"code": 0, "data": {**ENV_PEOPLE[0], "spouse": {"name": "王芳"}}})
        return web.json_response(SHAPES[request.query.get("shape", "data")])


@pytest.fixture(scope="module")
def envelope_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    bundle = tmp_path_factory.mktemp("envelope-bundle")
    (bundle / "policy.yaml").write_text(ENVELOPE_BUNDLE, encoding="utf-8")
    with EnvelopeUpstream() as up:
        gw, procs = start_processes(tmp_path_factory.mktemp("protection-envelopes"),
                                    {"ZTGW_POLICY_BUNDLE": str(bundle)},
                                    upstream=f"http://127.0.0.1:{up.port}")
        try:
            yield gw
        finally:
            stop_processes(procs)


def _leaks(text: str) -> list[str]:
    return [s for s in ENV_SECRETS if s in text]


@pytest.mark.parametrize("shape", ["data", "data.list", "data.items", "result.records", "rows", "persons",
                                   "unknown"])
def test_records_in_other_envelopes_are_masked(envelope_gw: RunningGateway, shape: str) -> None:
    r = _get(envelope_gw, "demo-analytics", PERSONS, shape=shape)
    assert r.status_code == 200, r.text
    assert _leaks(r.text) == [], r.text
    if shape in ("data", "data.list"):  # the envelope and the kept characters are still there
        assert '"ok"' in r.text and "138" in r.text


def test_a_single_record_in_an_envelope_is_masked(envelope_gw: RunningGateway) -> None:
    r = _get(envelope_gw, "demo-analytics", f"{PERSONS}/{ENV_ID}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["code"] == 0 and body["data"]["id_number"] == "*" * 18
    assert body["data"]["spouse"]["name"] == "**" and _leaks(r.text) == []


def test_duplicate_csv_headers_are_all_masked(envelope_gw: RunningGateway) -> None:
    r = _get(envelope_gw, "demo-analytics", PERSONS, accept="text/csv")
    assert r.status_code == 200, r.text
    lines = r.text.splitlines()
    assert lines[0] == "id_number,name,id_number,mobile,name,district_code" and len(lines) == 3
    assert _leaks(r.text) == [], r.text


def test_a_row_filter_never_lets_records_outside_its_array_through(envelope_gw: RunningGateway) -> None:
    # the filter applies to the records under data.list
    r = _get(envelope_gw, "demo-hrss", PERSONS, shape="data.list")
    assert r.status_code == 200, r.text
    listed = r.json()["data"]["list"]
    assert [p["district_code"] for p in listed] == ["440106"] and listed[0]["id_number"] == "*" * 18
    # records outside the array the filter applies to (two-lists), or no container key (persons:
    # judged as one record, outside the filter): refused (a JSON error, or the streamed answer
    # is cut), nothing in clear
    for shape in ("two-lists", "persons"):
        received, refused = _read_streamed(envelope_gw, "demo-hrss", shape)
        assert refused, received
        assert _leaks(received.decode("utf-8", "replace")) == []


def _read_streamed(gw: RunningGateway, client: str, shape: str) -> tuple[bytes, bool]:
    """What a client receives, and whether it was refused: an error status, or the answer
    cut (no terminating chunk)."""
    received = b""
    try:
        with httpx.stream("GET", f"{gw.base}{PERSONS}", params={"shape": shape}, timeout=20,
                          headers={"Authorization": f"Bearer {gw.token(client)}"}) as r:
            for chunk in r.iter_raw():
                received += chunk
    except httpx.RemoteProtocolError:
        return received, True
    return received, r.status_code >= 400
