"""Unit tests of the data plane's small parts: client address, rate limits, circuit breaker,
identity header, obligation planning and query push-down."""

from __future__ import annotations

import time

import orjson
import pytest

from ztgw.gateway.dataplane.clientip import ClientAddressResolver
from ztgw.gateway.dataplane.identity_header import sign_identity, verify_identity_header
from ztgw.gateway.dataplane.obligations import (
    ResponsePlan,
    StepUpRequired,
    Unenforceable,
    apply_csv,
    apply_json,
    build_plan,
    rewrite_query,
)
from ztgw.gateway.dataplane.ratelimit import RateLimit, RateLimiter
from ztgw.gateway.dataplane.signatures import NonceCache, canonical_query
from ztgw.gateway.dataplane.upstream import CircuitBreaker
from ztgw.gateway.protection.keys import ProtectionKeys
from ztgw.policies.domain import Decision, Obligation

KEYS = ProtectionKeys(b"k" * 32)


def test_forwarded_for_only_from_trusted_proxies() -> None:
    r = ClientAddressResolver(["10.0.0.0/8"], {"gov": ["192.168.0.0/16"]})
    assert r.client_ip("203.0.113.9", "192.168.1.1") == "203.0.113.9"  # untrusted peer
    assert r.client_ip("10.0.0.2", "192.168.1.1") == "192.168.1.1"
    assert r.client_ip("10.0.0.2", "198.51.100.7, 192.168.1.1, 10.0.0.3") == "192.168.1.1"
    assert r.client_ip("10.0.0.2", "not-an-ip") == "10.0.0.2"
    assert r.zone_of("192.168.5.5") == "gov" and r.zone_of("8.8.8.8") == "external"


def test_rate_limiter_bucket_and_specificity() -> None:
    lim = RateLimiter([RateLimit("*", "*", rate=1000, burst=1000),
                       RateLimit("app", "*", rate=0.001, burst=2)])
    assert lim.check("app", "d") == 0 and lim.check("app", "d") == 0
    assert lim.check("app", "d") > 0  # the specific limit applies
    assert all(lim.check("other", "d") == 0 for _ in range(50))


def test_circuit_breaker_states() -> None:
    b = CircuitBreaker(failures=2, reset=0.05)
    b.failure()
    assert b.allow()
    b.failure()
    assert not b.allow()
    time.sleep(0.06)
    assert b.allow() and not b.allow()  # exactly one half-open probe
    b.success()
    assert b.allow()


def test_identity_header_round_trip_and_tamper() -> None:
    key = b"s" * 32
    value = sign_identity(key, {"sub": "client:a", "rid": "r1"})
    assert verify_identity_header(key, value)["sub"] == "client:a"
    assert verify_identity_header(b"t" * 32, value) is None
    payload, mac = value.split(".")
    assert verify_identity_header(key, payload[:-1] + "A." + mac) is None
    assert verify_identity_header(key, "garbage") is None


def _decision(*obs: Obligation) -> Decision:
    return Decision(effect="allow", reason="t", obligations=obs)


def test_plan_refuses_unknown_and_unresolved() -> None:
    with pytest.raises(Unenforceable):
        build_plan(_decision(Obligation("encrypt_everything", {})), KEYS)
    with pytest.raises(Unenforceable):
        build_plan(_decision(Obligation("row_filter", {"field": "d", "equals_subject": "x"})), KEYS)
    with pytest.raises(Unenforceable):
        build_plan(_decision(Obligation("mask", {"fields": {"a": {"strategy": "rot13"}}})), KEYS)
    with pytest.raises(StepUpRequired):
        build_plan(_decision(Obligation("step_up", {"acr_values": ["mfa"]})), KEYS)


def test_a_mask_is_compiled_once_per_obligation_and_never_shared_between_two() -> None:
    keep = Obligation("mask", {"fields": {"n": {"strategy": "keep", "first": 1}}})
    first = build_plan(_decision(keep), KEYS).mask
    assert build_plan(_decision(keep), KEYS).mask is first  # the engine's memoised obligation
    # an equal-looking but different obligation object, or another one, gets its own plan
    redact = Obligation("mask", {"fields": {"n": {"strategy": "redact"}}})
    other = build_plan(_decision(redact), KEYS).mask
    assert other is not first
    rows = [{"n": "张三丰"}]
    assert apply_json(build_plan(_decision(redact), KEYS), orjson.dumps(rows), None) != \
        apply_json(build_plan(_decision(keep), KEYS), orjson.dumps(rows), None)
    # a bad mask is refused every time, not cached as a success
    bad = Obligation("mask", {"fields": {"a": {"strategy": "rot13"}}})
    for _ in range(2):
        with pytest.raises(Unenforceable):
            build_plan(_decision(bad), KEYS)


def test_apply_filter_project_mask_limit() -> None:
    plan = build_plan(_decision(
        Obligation("row_filter", {"field": "d", "in": ["1"]}),
        Obligation("project", {"fields": ["d", "n"]}),
        Obligation("mask", {"fields": {"n": {"strategy": "keep", "first": 1}}}),
        Obligation("max_rows", {"limit": 2, "per": "response"}),
    ), KEYS)
    body = b'{"items":[{"d":"1","n":"abc","x":1},{"d":"2","n":"zz"},{"d":"1","n":"qq"},' \
           b'{"d":"1","n":"rr"}],"total":4}'
    import orjson
    out = orjson.loads(apply_json(plan, body, plan.max_rows))
    assert out["items"] == [{"d": "1", "n": "a**"}, {"d": "1", "n": "q*"}]
    assert out["total"] is None and plan.records == 2
    csv_plan = build_plan(_decision(Obligation("project", {"fields": ["d"]})), KEYS)
    assert apply_csv(csv_plan, b"d,n\r\n1,a\r\n", None) == b"d\r\n1\r\n"
    with pytest.raises(LookupError):
        apply_json(plan, b'{"d":"2","n":"x"}', None)


def test_query_push_down() -> None:
    plan = ResponsePlan(filters=(("district_code", frozenset({"440106"})),), max_rows=10)
    q = rewrite_query(plan, [("page", "2"), ("size", "500")], frozenset({"district_code"}))
    assert ("district_code", "440106") in q and ("size", "10") in q and ("page", "2") in q
    assert rewrite_query(plan, [("district_code", "110101")], frozenset({"district_code"})) is None
    # a field the upstream cannot filter by is only checked on the way back
    assert rewrite_query(plan, [], frozenset()) == [("size", "10")]


def test_nonce_cache_and_canonical_query() -> None:
    n = NonceCache(window=60)
    assert n.first_use("k", "aa") and not n.first_use("k", "aa") and n.first_use("k2", "aa")
    assert canonical_query([("b", "2"), ("a", "x y"), ("a", "1")]) == "a=1&a=x%20y&b=2"
