"""The demo upstream over real HTTP: uvicorn in a subprocess, httpx as the client."""

from __future__ import annotations

import csv
import io
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from ztgw.gateway.demo.data import DATASET_FIELDS, get_dataset
from ztgw.gateway.demo.upstream import _wants_csv

LISTS = {
    "persons": "/api/population/persons",
    "companies": "/api/enterprise/companies",
    "contributions": "/api/social-security/contributions",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    port = _free_port()
    code = f"from ztgw.gateway.demo.upstream import serve_upstream; serve_upstream(port={port})"
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"demo upstream did not start: {err}")
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=10) as c:
            yield c
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"] == code and body["message"]
    assert body["request_id"] == r.headers["x-request-id"]


# ------------------------------------------------------------------------ lists (JSON)


@pytest.mark.parametrize("name", LISTS)
def test_default_page(client: httpx.Client, name: str) -> None:
    r = client.get(LISTS[name])
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"]
    body = r.json()
    assert list(body) == ["items", "page", "size", "total"]
    records = get_dataset(name)
    assert (body["page"], body["size"], body["total"]) == (1, 20, len(records))
    assert body["items"] == records[:20]


def test_paging(client: httpx.Client) -> None:
    persons = get_dataset("persons")
    body = client.get("/api/population/persons", params={"page": 3, "size": 7}).json()
    assert body["items"] == persons[14:21]
    assert (body["page"], body["size"]) == (3, 7)
    big = client.get("/api/population/persons", params={"page": 2, "size": 1000}).json()
    assert big["items"] == persons[1000:2000]
    last = client.get("/api/population/persons", params={"page": 10_001, "size": 1}).json()
    assert last["items"] == [] and last["total"] == len(persons)
    # repeated requests come from the page cache and are identical
    again = client.get("/api/population/persons", params={"page": 3, "size": 7}).json()
    assert again == body


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "page=abc",
        "page=1.5",
        "size=0",
        "size=1001",
        "size=99999999999999999999",
        "page=1&page=2",
        "size=%EF%BC%91",  # full-width digit one
    ],
)
def test_bad_paging_is_400(client: httpx.Client, query: str) -> None:
    _assert_error(client.get(f"/api/population/persons?{query}"), 400, "invalid_parameter")


def test_blank_paging_parameters_mean_defaults(client: httpx.Client) -> None:
    body = client.get("/api/enterprise/companies?page=&size=").json()
    assert (body["page"], body["size"]) == (1, 20)


# ------------------------------------------------------------------------ filters


def test_district_filter(client: httpx.Client) -> None:
    persons = get_dataset("persons")
    expected = [p for p in persons if p["district_code"] == "440106"]
    assert expected
    by_name = client.get(LISTS["persons"], params={"district": "天河区", "size": 1000}).json()
    assert by_name["total"] == len(expected)
    assert by_name["items"] == expected[:1000]
    by_code = client.get(LISTS["persons"], params={"district": "440106", "size": 1000}).json()
    assert by_code == by_name
    explicit = client.get(LISTS["persons"], params={"district_code": "440106", "size": 1000})
    assert explicit.json() == by_name
    companies = client.get(LISTS["companies"], params={"district": "440106", "size": 1000})
    assert {c["district"] for c in companies.json()["items"]} == {"天河区"}


def test_district_name_shared_by_two_cities(client: httpx.Client) -> None:
    # 鼓楼区 exists in Nanjing (320106) and Fuzhou (350102): the name matches both
    body = client.get(LISTS["persons"], params={"district": "鼓楼区", "size": 1000}).json()
    assert {p["district_code"] for p in body["items"]} == {"320106", "350102"}


def test_contributions_by_id_number(client: httpx.Client) -> None:
    records = get_dataset("contributions")
    id_number = records[0]["id_number"]
    mine = [r for r in records if r["id_number"] == id_number]
    body = client.get(LISTS["contributions"], params={"id_number": id_number}).json()
    assert body["items"] == mine and body["total"] == 6
    lower = client.get(LISTS["contributions"], params={"id_number": id_number.lower()})
    assert lower.json() == body
    both = client.get(LISTS["contributions"], params={"id_number": id_number, "month": "2025-03"}).json()
    assert [r["month"] for r in both["items"]] == ["2025-03"]
    none = client.get(LISTS["contributions"], params={"id_number": "11010519491231002X"})
    assert none.json() == {"items": [], "page": 1, "size": 20, "total": 0}


def test_unsupported_filter_is_400_not_ignored(client: httpx.Client) -> None:
    r = client.get(LISTS["contributions"], params={"district": "天河区"})
    _assert_error(r, 400, "invalid_parameter")
    r = client.get(LISTS["persons"], params={"id_number": "11010519491231002X"})
    _assert_error(r, 400, "invalid_parameter")
    r = client.get(LISTS["persons"] + "?district=a&district=b")
    _assert_error(r, 400, "invalid_parameter")


def test_unknown_parameters_are_ignored(client: httpx.Client) -> None:
    r = client.get(LISTS["persons"], params={"size": 2, "utm_source": "x"})
    assert r.status_code == 200 and len(r.json()["items"]) == 2


# ------------------------------------------------------------------------ CSV


def _parse_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("name", LISTS)
def test_csv_list(client: httpx.Client, name: str) -> None:
    r = client.get(LISTS[name], params={"size": 50, "page": 2}, headers={"Accept": "text/csv"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.content.count(b"\r\n") == 51  # header + 50 rows, CRLF line ends (RFC 4180)
    rows = _parse_csv(r.content.decode("utf-8"))
    fields = DATASET_FIELDS[name]
    assert tuple(rows[0]) == fields
    records = get_dataset(name)[50:100]
    assert rows[1:] == [[str(rec[f]) for f in fields] for rec in records]


def test_csv_quoting() -> None:
    from ztgw.gateway.demo.upstream import _csv_line

    line = _csv_line(["a,b", 'say "hi"', "x\r\ny", 1.5, "plain"])
    assert line == b'"a,b","say ""hi""","x\r\ny",1.5,plain\r\n'
    assert _parse_csv(line.decode()) == [["a,b", 'say "hi"', "x\r\ny", "1.5", "plain"]]


def test_csv_detail_and_negotiation(client: httpx.Client) -> None:
    person = get_dataset("persons")[5]
    r = client.get(f"{LISTS['persons']}/{person['id_number']}", headers={"Accept": "text/csv"})
    rows = _parse_csv(r.text)
    assert rows == [list(DATASET_FIELDS["persons"]), [str(v) for v in person.values()]]
    prefers_json = {"Accept": "text/csv;q=0.5, application/json"}
    assert client.get(LISTS["persons"], headers=prefers_json).headers["content-type"] == ("application/json")


@pytest.mark.parametrize(
    ("accept", "csv_wanted"),
    [
        ("", False),
        ("*/*", False),
        ("text/csv", True),
        ("TEXT/CSV; charset=utf-8", True),
        ("application/json, text/csv", False),
        ("text/csv, application/json", True),
        ("application/json;q=0.9, text/csv", True),
        ("text/csv;q=0, */*", False),
        ("text/csv;q=bogus", False),
        ("text/html, text/csv;q=0.1", True),
    ],
)
def test_accept_negotiation(accept: str, csv_wanted: bool) -> None:
    assert _wants_csv(accept.encode()) is csv_wanted


# ------------------------------------------------------------------------ details


@pytest.mark.parametrize("name", LISTS)
def test_detail(client: httpx.Client, name: str) -> None:
    from ztgw.gateway.demo.data import key_field

    record = get_dataset(name)[123]
    r = client.get(f"{LISTS[name]}/{record[key_field(name)]}")
    assert r.status_code == 200
    assert r.json() == record


def test_detail_key_is_case_insensitive(client: httpx.Client) -> None:
    person = next(p for p in get_dataset("persons") if p["id_number"].endswith("X"))
    r = client.get(f"{LISTS['persons']}/{person['id_number'].lower()}")
    assert r.json() == person


@pytest.mark.parametrize(
    "path",
    [
        "/api/population/persons/11010519491231002Y",
        "/api/enterprise/companies/91350100M000100Y43",
        "/api/social-security/contributions/JF209901000001",
        f"/api/population/persons/{quote('张三')}",
        "/api/population/persons/a/b",
        "/",
        "/api",
        "/api/population",
        "/api/population/personsX",
    ],
)
def test_unknown_is_404(client: httpx.Client, path: str) -> None:
    _assert_error(client.get(path), 404, "not_found")


# ------------------------------------------------------------------------ methods, request ids


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_are_405(client: httpx.Client, method: str) -> None:
    r = client.request(method, LISTS["persons"])
    _assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET, HEAD"


def test_head(client: httpx.Client) -> None:
    get = client.get(LISTS["companies"])
    head = client.head(LISTS["companies"])
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]


def test_request_id_is_echoed(client: httpx.Client) -> None:
    r = client.get(LISTS["persons"], headers={"X-Request-ID": "req-42.abc"})
    assert r.headers["x-request-id"] == "req-42.abc"
    err = client.get("/nope", headers={"X-Request-ID": "req-43"})
    assert err.headers["x-request-id"] == "req-43" and err.json()["request_id"] == "req-43"
    # an id that is too long or has spaces is replaced by a fresh one
    for bad in ("x" * 200, "has space"):
        r = client.get(LISTS["persons"], headers={"X-Request-ID": bad})
        assert r.headers["x-request-id"] != bad and len(r.headers["x-request-id"]) == 32
    ids = {client.get(LISTS["persons"]).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


def test_trailing_slash_and_healthz(client: httpx.Client) -> None:
    assert client.get(LISTS["persons"] + "/").json()["page"] == 1
    assert client.get("/healthz").json() == {"status": "ok"}
