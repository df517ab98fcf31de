"""Semantics of the decision engine: default deny, deny overrides, roles, conditions,
obligation merging, and agreement with casbin's own Enforcer on the compiled rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgw.gateway.demo.realm import demo_bundle_dir
from ztgw.policies.bundle import load_bundle, parse_bundle
from ztgw.policies.domain import Classification, Environment, Resource, Subject
from ztgw.policies.engine import CompiledPolicy
from ztgw.policies.errors import BundleError

NOW = Environment(time=datetime(2026, 11, 20, 3, 0, tzinfo=UTC))  # 11:00 Beijing time


def subject(cid: str = "app", roles: tuple[str, ...] = (), dept: str | None = None,
            clearance: Classification = Classification.GENERAL) -> Subject:
    return Subject(id=f"client:{cid}", kind="client", name=cid, client_id=cid,
                   roles=frozenset(roles), department=dept, clearance=clearance)


def res(ds: str = "population.persons") -> Resource:
    return Resource(dataset=ds, classification=Classification.CORE)


def policy(rules: list[dict], roles: list[list[str]] | None = None) -> CompiledPolicy:
    return CompiledPolicy(parse_bundle({"bundle": "t", "version": "1", "rules": rules,
                                        "roles": roles or []}))


ALLOW = {"id": "a", "effect": "allow", "subjects": ["role:r"], "datasets": ["population.*"],
         "actions": ["read"]}


def test_default_deny_with_no_rules() -> None:
    d = policy([]).decide(subject(roles=("r",)), res(), "read", NOW)
    assert d.effect == "deny" and d.rule_id is None and "default deny" in d.reason


def test_allow_by_role_and_glob() -> None:
    p = policy([ALLOW])
    assert p.decide(subject(roles=("r",)), res(), "read", NOW).allowed
    assert not p.decide(subject(roles=("r",)), res(), "write", NOW).allowed
    assert not p.decide(subject(roles=("x",)), res(), "read", NOW).allowed
    assert not p.decide(subject(roles=("r",)), res("enterprise.companies"), "read", NOW).allowed
    # a glob does not match a dataset that merely shares a prefix string
    assert not p.decide(subject(roles=("r",)), res("populationx.a"), "read", NOW).allowed


def test_deny_overrides_allow_whatever_the_order() -> None:
    deny = {"id": "d", "effect": "deny", "subjects": ["client:app"], "datasets": ["*"],
            "actions": ["*"]}
    for rules in ([ALLOW, deny], [deny, ALLOW]):
        d = policy(rules).decide(subject(roles=("r",)), res(), "read", NOW)
        assert d.effect == "deny" and d.rule_id == "d"


def test_role_hierarchy_through_casbin_g() -> None:
    p = policy([ALLOW], roles=[["role:senior", "role:r"]])
    assert p.decide(subject(roles=("senior",)), res(), "read", NOW).allowed


def test_department_subjects() -> None:
    rule = {**ALLOW, "subjects": ["dept:市公安局"]}
    p = policy([rule])
    assert p.decide(subject(dept="市公安局"), res(), "read", NOW).allowed
    assert not p.decide(subject(dept="市公安局 "), res(), "read", NOW).allowed


def test_clearance_condition() -> None:
    p = policy([{**ALLOW, "when": {"clearance_at_least": "重要"}}])
    assert not p.decide(subject(roles=("r",)), res(), "read", NOW).allowed
    assert p.decide(subject(roles=("r",), clearance=Classification.CORE), res(), "read",
                    NOW).allowed


def test_time_window_in_beijing_time() -> None:
    p = policy([{**ALLOW, "when": {"hours": "09:00-18:00"}}])
    assert p.decide(subject(roles=("r",)), res(), "read", NOW).allowed  # 11:00 CST
    night = Environment(time=datetime(2026, 11, 20, 14, 0, tzinfo=UTC))  # 22:00 CST
    assert not p.decide(subject(roles=("r",)), res(), "read", night).allowed


def test_obligations_merge_stricter_mask_wins() -> None:
    loose = {**ALLOW, "id": "loose", "obligations": [
        {"type": "mask", "fields": {"id_number": {"strategy": "keep", "first": 6, "last": 4},
                                    "mobile": {"strategy": "keep", "first": 3, "last": 4}}}]}
    strict = {**ALLOW, "id": "strict", "subjects": ["role:s"], "obligations": [
        {"type": "mask", "fields": {"id_number": {"strategy": "redact"}}}]}
    d = policy([loose, strict]).decide(subject(roles=("r", "s")), res(), "read", NOW)
    assert d.allowed and set(d.matched_rules) == {"loose", "strict"}
    (mask,) = [o for o in d.obligations if o.type == "mask"]
    assert mask.params["fields"]["id_number"] == {"strategy": "redact"}
    assert mask.params["fields"]["mobile"]["first"] == 3


@pytest.mark.parametrize("bad", [
    {"bundle": "x", "version": "1", "rules": [{**ALLOW, "effect": "permit"}]},
    {"bundle": "x", "version": "1", "rules": [{**ALLOW, "subjects": ["admin"]}]},
    {"bundle": "x", "version": "1", "rules": [{**ALLOW, "when": {"eval": "1==1"}}]},
    {"bundle": "x", "version": "1", "rules": [ALLOW, ALLOW]},
    {"bundle": "x", "version": "1", "rules": [{**ALLOW, "datasets": ["../etc"]}]},
    {"bundle": "x", "version": "1", "rules": [{**ALLOW, "actions": []}]},
    {"bundle": "x", "rules": []},
    ["not", "a", "mapping"],
])
def test_malformed_bundles_are_refused(bad: object) -> None:
    with pytest.raises(BundleError):
        parse_bundle(bad)


def test_demo_bundle_loads_and_decides() -> None:
    p = CompiledPolicy(load_bundle(demo_bundle_dir()))
    police = subject("demo-police", ("population-officer",))
    assert p.decide(police, res(), "read", NOW).rule_id == "population-officer-read"
    # population-officer includes enterprise-reader through the role hierarchy
    assert p.decide(police, res("enterprise.companies"), "read", NOW).allowed
    denied = subject("demo-denied", ("population-analyst", "suspended"))
    assert p.decide(denied, res(), "read", NOW).rule_id == "deny-suspended"


# --- agreement with casbin's Enforcer on random workloads -------------------------------
ROLES = ["a", "b", "c", "d"]
DATASETS = ["x.one", "x.two", "y.one", "z.z"]
PATTERNS = [*DATASETS, "x.*", "*"]


@st.composite
def rule_sets(draw: st.DrawFn) -> list[dict]:
    n = draw(st.integers(1, 8))
    rules = []
    for i in range(n):
        rules.append({
            "id": f"r{i}",
            "effect": draw(st.sampled_from(["allow", "allow", "deny"])),
            "subjects": draw(st.lists(st.sampled_from([*(f"role:{r}" for r in ROLES), "*"]),
                                      min_size=1, max_size=2, unique=True)),
            "datasets": draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2,
                                      unique=True)),
            "actions": draw(st.lists(st.sampled_from(["read", "write", "*"]), min_size=1,
                                     max_size=2, unique=True)),
        })
    return rules


@settings(max_examples=150, deadline=None)
@given(rules=rule_sets(), links=st.lists(st.tuples(st.sampled_from(ROLES),
                                                    st.sampled_from(ROLES)), max_size=3),
       roles=st.sets(st.sampled_from(ROLES), max_size=2), ds=st.sampled_from(DATASETS),
       act=st.sampled_from(["read", "write"]))
def test_index_agrees_with_casbin_enforcer(rules: list[dict], links: list[tuple[str, str]],
                                           roles: set[str], ds: str, act: str) -> None:
    role_links = [[f"role:{a}", f"role:{b}"] for a, b in links if a != b]
    p = policy(rules, role_links)
    sub = subject("app", tuple(sorted(roles)))
    ours = p.decide(sub, res(ds), act, NOW).allowed
    enforcer = p.casbin_enforcer()
    for r in roles:
        enforcer.add_grouping_policy("client:app", f"role:{r}", "*")
    assert enforcer.enforce("client:app", "-", ds, act) == ours


def test_casbin_export_loads_in_casbin_and_agrees(tmp_path) -> None:
    import casbin
    from typer.testing import CliRunner

    from ztgw.policies.cli import app

    out = CliRunner().invoke(app, ["export-casbin", "--out", str(tmp_path), "--bundle",
                                   str(demo_bundle_dir()), "--json"])
    assert out.exit_code == 0, out.output
    enforcer = casbin.Enforcer(str(tmp_path / "model.conf"), str(tmp_path / "policy.csv"))
    p = CompiledPolicy(load_bundle(demo_bundle_dir()))
    for roles, ds in [(("population-analyst",), "population.persons"),
                      (("population-officer",), "enterprise.companies"),
                      (("population-analyst", "suspended"), "population.persons"),
                      (("social-security-officer",), "population.persons")]:
        for r in roles:
            enforcer.add_grouping_policy("client:x", f"role:{r}", "*")
        ours = p.decide(subject("x", roles), res(ds), "read", NOW).allowed
        assert enforcer.enforce("client:x", "-", ds, "read") == ours, (roles, ds)
        for r in roles:
            enforcer.remove_grouping_policy("client:x", f"role:{r}", "*")


def test_casbin_export_is_fail_closed_for_conditions() -> None:
    from ztgw.policies.engine import casbin_export

    b = parse_bundle({"bundle": "t", "version": "1", "rules": [
        {**ALLOW, "when": {"zones": ["gov"]}},
        {"id": "d", "effect": "deny", "subjects": ["role:r"], "datasets": ["*"], "actions": ["*"],
         "when": {"zones": ["internet"]}}]})
    _, rows, omitted = casbin_export(b)
    assert omitted == ["a"] and rows == "p, role:r, *, *, deny, d\n"
