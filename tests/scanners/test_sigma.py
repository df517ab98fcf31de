"""Sigma rules: the bundled ones load, match what they should and nothing else, and convert
to Elasticsearch queries with pySigma's backend."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ztgw.audit.events import access_event, auth_event
from ztgw.scanners.errors import RuleError
from ztgw.scanners.sigma import load_collection, load_rules, to_elasticsearch

RULES = load_rules()


def access(path: str, ua: str = "Mozilla/5.0", status: int = 200) -> dict:
    now = time.time_ns()
    return access_event(request_id="r1", method="GET", path=path, query_keys=[], status=status,
                        outcome="success", source_ip="10.1.2.3", user_agent=ua, started_ns=now,
                        ended_ns=now, subject=None, decision=None, data=None)


def hits(ev: dict) -> set[str]:
    return {r.title for r in RULES if r.matches(ev)}


@pytest.mark.parametrize(("path", "word"), [
    ("/api/population/persons/1' OR '1'='1", "SQL injection"),
    ("/api/population/persons/1%27%20AND%20SLEEP(5)--", "SQL injection"),
    ("/api/population/persons/1 UNION ALL SELECT NULL,NULL--", "SQL injection"),
    ("/api/population/persons/310114195604018463 AND 5496=5183-- hXfp", "SQL injection"),  # sqlmap
    ("/api/population/persons/310114195604018463) AND 1=1 AND (2=2", "SQL injection"),
    ("/api/enterprise/companies/x;select * from information_schema.tables", "SQL injection"),
    ("/api/population/persons/<script>alert(1)</script>", "scripting"),
    ("/api/population/persons/%3Csvg%20onload=alert(1)%3E", "scripting"),
    ("/api/population/persons/../../etc/passwd", "traversal"),
    ("/api/population/persons/..%2f..%2fwin.ini", "traversal"),
    ("/api/population/persons/http:%2f%2f169.254.169.254%2flatest", "forgery"),
    ("/api/population/persons/gopher://127.0.0.1:6379/_", "forgery"),
])
def test_payloads_are_detected(path: str, word: str) -> None:
    assert any(word.lower() in t.lower() for t in hits(access(path))), hits(access(path))


@pytest.mark.parametrize("path", [
    "/api/population/persons/110101199003071234",
    "/api/enterprise/companies/91110000802100433B",
    "/api/population/persons",
    "/api/social-security/contributions",
    "/api/enterprise/companies/selection-committee",  # words, not a payload
    "/api/enterprise/companies/union-select-trading--co",
    "/api/population/persons/and-1",
])
def test_ordinary_requests_raise_nothing(path: str) -> None:
    assert hits(access(path)) == set()


def test_scanner_user_agents_case_insensitive() -> None:
    assert any("tool" in t for t in hits(access("/api/x", ua="sqlmap/1.7.2#stable (https://sqlmap.org)")))
    assert any("tool" in t for t in hits(access("/api/x", ua="Mozilla/5.00 (NIKTO/2.5.0)")))
    assert not any("tool" in t for t in hits(access("/api/x", ua="python-httpx/0.28")))


def test_rules_read_only_their_dataset() -> None:
    ev = auth_event(action="login-failed", outcome="failure", request_id="r", client_id=None,
                    source_ip="10.0.0.1", reason="' OR '1'='1")
    ev["url"] = {"path": "/api/x/' OR '1'='1"}  # an auth event is not read by access rules
    assert hits(ev) == set()
    reuse = auth_event(action="refresh-token-reuse", outcome="failure", request_id="r",
                       client_id="c", source_ip="10.0.0.1")
    assert any("reuse" in t.lower() for t in hits(reuse))


def test_every_bundled_rule_converts_to_lucene_with_its_dataset() -> None:
    queries = to_elasticsearch()
    assert len(queries) == len(RULES) >= 6
    for q in queries:
        assert q.startswith("event.dataset:ztgw.")
    assert any("user_agent.original" in q and "*sqlmap*" in q for q in queries)


def test_other_output_formats() -> None:
    dsl = to_elasticsearch(output="dsl_lucene")
    assert all(isinstance(d, dict) and "query" in d for d in dsl)


def test_operator_rules_from_a_folder(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("""
title: Reads of 核心 data by the analytics client
id: 0b8e2f57-1111-4d0b-9c11-2b7e9a10c0aa
logsource: {product: ztgw, service: access}
detection:
  sel:
    ztgw.data.classification: 核心
    ztgw.oidc.client_id|startswith: analytics-
    http.response.status_code: 200
  condition: sel
level: critical
""", encoding="utf-8")
    (rule,) = load_rules([tmp_path])
    ev = access("/api/population/persons")
    ev["ztgw"] = {"data": {"classification": "核心"}, "oidc": {"client_id": "Analytics-7"}}
    assert rule.matches(ev) and rule.severity == 4
    ev["http"]["response"]["status_code"] = 403
    assert not rule.matches(ev)
    assert "ztgw.oidc.client_id:analytics\\-*" in to_elasticsearch(load_collection([tmp_path]))[0]


def test_invalid_rule_is_a_rule_error(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("title: x\ndetection:\n  condition: nothing\n", encoding="utf-8")
    with pytest.raises(RuleError):
        load_rules([tmp_path])


PAYLOADS = [
    "/api/population/persons/1' OR '1'='1", "/api/p/1%27%20AND%20SLEEP(5)--",
    "/api/p/1 UNION ALL SELECT NULL--", "/api/p/310114195604018463 AND 5496=5183-- hXfp",
    "/api/p/<svg onload=alert(1)>", "/api/p/..%2f..%2fwin.ini", "/api/p/gopher://127.0.0.1:6379/_",
    "/api/p/1) AND 1=1 AND (2=2", "/api/p/x;select * from information_schema.tables",
    "/api/population/persons/110101199003071234", "/api/p/Benchmark", "/api/p/or",
]


@pytest.mark.parametrize("path", PAYLOADS)
def test_prefiltered_rule_set_agrees_with_every_rule(path: str) -> None:
    """The engine's prefilter (substring gates, merged regexes) never hides a match."""
    from ztgw.scanners.sigma import RuleSet

    rs = RuleSet(RULES)
    for ua in ("Mozilla/5.0", "sqlmap/1.7", "NUCLEI"):
        ev = access(path, ua=ua)
        expected = {r.id for r in RULES if r.matches(ev)}
        got = {r.id for r in rs.candidates(ev) if r.matches(ev)}
        assert got == expected


def test_required_literals_of_a_regex() -> None:
    import re

    from ztgw.scanners.sigma import required_literals

    assert required_literals(r"union(\s|%20)+select", re.I) == frozenset({"select"})
    assert required_literals(r"(\s|%20)(AND|or)\d", re.I) == frozenset({"and", "or"})
    assert required_literals(r"[a-z]+\d", 0) is None
    assert required_literals(r"x?y*", 0) is None
