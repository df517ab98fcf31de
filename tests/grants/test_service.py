"""The rules of requests, approvals, grants and consent, and their enforcement by the policy
engine through the in-memory index (real SQLite, real demo bundle)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from ztgw.gateway.grants.index import EntitlementIndex
from ztgw.gateway.grants.receipts import ReceiptInvalid, verify_receipt
from ztgw.gateway.grants.service import GrantError
from ztgw.gateway.grants.store import GrantStore
from ztgw.policies.conditions import CONSENT_ATTRIBUTE, GRANT_ATTRIBUTE, GrantScope
from ztgw.policies.domain import Environment, Resource, Subject

from .conftest import MARKET, POLICE, World, app, approver, citizen


def decide(w: World, subject: Subject, dataset: str) -> object:
    ds = w.dataset(dataset)
    enriched = w.grants.index.apply(subject, ds)
    res = Resource(dataset=ds.dataset, classification=ds.classification,
                   owner_department=ds.owner_department, fields=ds.fields)
    return w.engine.decide(enriched, res, "read", Environment(time=datetime.now(UTC)))


def request_companies(w: World, **kw: object) -> str:
    r = w.service.create_request(app("demo-research"), dataset="enterprise.companies",
                                 fields=["uscc", "name", "industry"], purpose="产业布局研究",
                                 days=30, **kw)
    return str(r.id)


def test_approved_grant_is_enforced_as_projection_rows_and_quota(world: World) -> None:
    research = app("demo-research")
    assert not decide(world, research, "enterprise.companies").allowed  # default deny
    rid = request_companies(world, row_field="district", row_values=["吴江区"], rows_per_day=50)
    assert not decide(world, research, "enterprise.companies").allowed  # pending ≠ granted
    r = world.service.approve(approver("zhouqiang", MARKET), rid, "用途明确，范围最小")
    assert r.status == "approved" and r.grant_id
    d = decide(world, research, "enterprise.companies")
    assert d.allowed and d.rule_id == "grant-read"
    obs = {o.type: dict(o.params) for o in d.obligations}
    assert obs["project"] == {"fields": ["industry", "name", "uscc"]}
    assert obs["row_filter"] == {"field": "district", "in": ["吴江区"]}
    assert obs["max_rows"] == {"limit": 50, "per": "day"}
    # a grant for one dataset opens nothing else
    assert not decide(world, research, "population.persons").allowed
    actions = [e["event"]["action"] for e in world.events]
    assert actions == ["grant-request-created", "grant-request-approved", "grant-created"]
    assert all(e["event"]["dataset"] == "ztgw.admin" for e in world.events)


def test_owner_of_another_department_cannot_decide(world: World) -> None:
    rid = request_companies(world)
    with pytest.raises(GrantError) as exc:
        world.service.approve(approver("zhaolei", POLICE), rid, "不是我部门的")
    assert exc.value.status == 403
    with pytest.raises(GrantError):
        world.service.reject(approver("zhaolei", POLICE), rid, "不是我部门的")
    # and a same-department user without the approver role cannot either
    staff = Subject(id="user:x", kind="user", name="x", client_id="c", department=MARKET)
    with pytest.raises(GrantError):
        world.service.approve(staff, rid, "无审批角色")
    assert world.service.get_request(rid).status == "pending"


def test_requester_cannot_approve_own_request(world: World) -> None:
    owner = approver("zhouqiang", MARKET)
    r = world.service.create_request(owner, dataset="enterprise.companies", fields=["name"],
                                     purpose="自用", days=1)
    with pytest.raises(GrantError) as exc:
        world.service.approve(owner, r.id, "自批")
    assert exc.value.code == "self_approval"


def test_core_data_needs_two_distinct_approvers(world: World) -> None:
    research = app("demo-research")
    r = world.service.create_request(research, dataset="population.persons",
                                     fields=["id_number", "name"], purpose="人口普查核对", days=7)
    assert r.required_approvals == 2  # id_number is 核心
    first = approver("zhaolei", POLICE)
    r = world.service.approve(first, r.id, "同意")
    assert r.status == "pending" and not decide(world, research, "population.persons").allowed
    with pytest.raises(GrantError) as exc:
        world.service.approve(first, r.id, "再次同意")
    assert exc.value.code == "already_approved"
    r = world.service.approve(approver("sunli", POLICE), r.id, "复核同意")
    assert r.status == "approved"
    assert decide(world, research, "population.persons").allowed
    # a request without 核心 fields needs one
    r2 = world.service.create_request(research, dataset="population.persons",
                                      fields=["gender", "district"], purpose="统计", days=7)
    assert r2.required_approvals == 1


def test_rejection_closes_the_request(world: World) -> None:
    rid = request_companies(world)
    r = world.service.reject(approver("zhouqiang", MARKET), rid, "用途不明确")
    assert r.status == "rejected" and r.decision_reason == "用途不明确"
    with pytest.raises(GrantError):
        world.service.approve(approver("zhouqiang", MARKET), rid, "改主意")
    assert not decide(world, app("demo-research"), "enterprise.companies").allowed


def test_narrowing_never_widens(world: World) -> None:
    owner = approver("zhouqiang", MARKET)
    rid = request_companies(world, row_field="district", row_values=["吴江区", "姑苏区"],
                            rows_per_day=100)
    gid = world.service.approve(owner, rid, "同意").grant_id
    for kw in ({"fields": ["uscc", "contact_phone"]}, {"row_values": ["吴江区", "虎丘区"]},
               {"rows_per_day": 1000}, {"expires_at": int(time.time()) + 400 * 86400},
               {"fields": []}):
        with pytest.raises(GrantError) as exc:
            world.service.narrow(owner, gid, "扩大", **kw)
        assert exc.value.status == 400, kw
    g = world.service.narrow(owner, gid, "收窄", fields=["uscc"], row_values=["吴江区"],
                             rows_per_day=10)
    assert g.fields == ("uscc",) and g.row_values == ("吴江区",) and g.version == 2
    obs = {o.type: dict(o.params)
           for o in decide(world, app("demo-research"), "enterprise.companies").obligations}
    assert obs["project"] == {"fields": ["uscc"]}
    assert obs["row_filter"]["in"] == ["吴江区"] and obs["max_rows"]["limit"] == 10


def test_revocation_is_enforced_on_the_next_decision(world: World) -> None:
    owner = approver("zhouqiang", MARKET)
    gid = world.service.approve(owner, request_companies(world), "同意").grant_id
    assert decide(world, app("demo-research"), "enterprise.companies").allowed
    world.service.revoke(owner, gid, "项目结束")
    assert not decide(world, app("demo-research"), "enterprise.companies").allowed
    with pytest.raises(GrantError):
        world.service.revoke(owner, gid, "再次撤销")
    with pytest.raises(GrantError):
        world.service.revoke(approver("zhaolei", POLICE), gid, "别的部门")


def test_expiry_is_checked_against_the_clock_at_request_time(world: World) -> None:
    owner = approver("zhouqiang", MARKET)
    now = int(time.time())
    rid = world.service.create_request(app("demo-research"), dataset="enterprise.companies",
                                       fields=["name"], purpose="短期", expires_at=now + 2).id
    world.service.approve(owner, rid, "同意")
    assert decide(world, app("demo-research"), "enterprise.companies").allowed
    time.sleep(2.2)  # no reload in between: the index itself checks the clock
    assert not decide(world, app("demo-research"), "enterprise.companies").allowed


def test_another_replica_sees_a_revocation_through_the_change_counter(world: World) -> None:
    replica = EntitlementIndex(GrantStore(world.directory.engine))
    owner = approver("zhouqiang", MARKET)
    gid = world.service.approve(owner, request_companies(world), "同意").grant_id
    ds = world.dataset("enterprise.companies")
    assert replica.poll_once()
    assert isinstance(replica.apply(app("demo-research"), ds).attributes[GRANT_ATTRIBUTE], GrantScope)
    world.service.revoke(owner, gid, "撤销")
    assert replica.poll_once()
    assert GRANT_ATTRIBUTE not in replica.apply(app("demo-research"), ds).attributes
    assert not replica.poll_once()  # nothing changed since


def test_directory_strings_cannot_forge_a_grant(world: World) -> None:
    forged = Subject(id="user:mallory", kind="user", name="mallory", client_id="demo-portal",
                     attributes={GRANT_ATTRIBUTE: "yes", CONSENT_ATTRIBUTE: "all"})
    assert not decide(world, forged, "enterprise.companies").allowed
    enriched = world.grants.index.apply(forged, world.dataset("enterprise.companies"))
    assert GRANT_ATTRIBUTE not in enriched.attributes


def test_bad_requests_are_refused(world: World) -> None:
    research = app("demo-research")
    cases = [
        {"dataset": "nope", "fields": ["a"], "purpose": "x", "days": 1},
        {"dataset": "enterprise.companies", "fields": ["secret"], "purpose": "x", "days": 1},
        {"dataset": "enterprise.companies", "fields": ["name"], "purpose": "  ", "days": 1},
        {"dataset": "enterprise.companies", "fields": ["name"], "purpose": "x", "days": 400},
        {"dataset": "enterprise.companies", "fields": ["name"], "purpose": "x"},
        {"dataset": "enterprise.companies", "fields": ["name"], "purpose": "x", "days": 1,
         "row_values": ["a"]},
        {"dataset": "enterprise.companies", "fields": ["name"], "purpose": "x", "days": 1,
         "rows_per_day": 0},
    ]
    for kw in cases:
        with pytest.raises(GrantError) as exc:
            world.service.create_request(research, **kw)
        assert exc.value.status in (400, 404), kw


def test_consent_reads_only_consenting_citizens_records(world: World) -> None:
    fintech = app("demo-fintech")
    assert not decide(world, fintech, "population.persons").allowed
    cr = world.service.request_consent(fintech, dataset="population.persons",
                                       purpose="贷款资格核验", days=30, citizen="citizen")
    me = citizen("citizen", world.citizen_key)
    assert [r.id for r in world.service.pending_consent_requests(me)] == [cr.id]
    # someone else cannot answer a request addressed to another citizen
    with pytest.raises(GrantError):
        world.service.give_consent(citizen("other", "110101199001011237"), cr.id)
    consent = world.service.give_consent(me, cr.id, days=7)
    d = decide(world, fintech, "population.persons")
    assert d.allowed and d.rule_id == "consent-read"
    obs = {o.type: dict(o.params) for o in d.obligations}
    assert obs["row_filter"] == {"field": "id_number", "in": [world.citizen_key]}
    # the same consent holds for the citizen's social-security records (subject field id_number)
    assert not decide(world, fintech, "social-security.contributions").allowed  # other dataset
    statement = verify_receipt(consent.receipt, world.grants.signer.public_key)
    assert statement["consent_id"] == consent.id and statement["client_id"] == "demo-fintech"
    assert world.citizen_key not in consent.receipt  # masked in the receipt
    world.service.revoke_consent(me, consent.id)
    assert not decide(world, fintech, "population.persons").allowed


def test_receipt_tampering_is_detected(world: World) -> None:
    cr = world.service.request_consent(app("demo-fintech"), dataset="population.persons",
                                       purpose="核验", days=30)
    consent = world.service.give_consent(citizen("citizen", world.citizen_key), cr.id)
    tampered = consent.receipt.replace("demo-fintech", "demo-evilapp")
    with pytest.raises(ReceiptInvalid):
        verify_receipt(tampered, world.grants.signer.public_key)
    with pytest.raises(ReceiptInvalid):
        verify_receipt("not json", world.grants.signer.public_key)


def test_only_citizens_with_an_id_number_consent(world: World) -> None:
    cr = world.service.request_consent(app("demo-fintech"), dataset="population.persons",
                                       purpose="核验", days=30)
    for who in (approver("zhaolei", POLICE), citizen("nobody", "")):
        with pytest.raises(GrantError) as exc:
            world.service.give_consent(who, cr.id)
        assert exc.value.status == 403
    with pytest.raises(GrantError):  # a dataset without a data-subject field
        world.service.request_consent(app("demo-fintech"), dataset="enterprise.companies",
                                      purpose="核验", days=30)


def test_owner_confirms_a_field_classification(world: World) -> None:
    owner = approver("zhouqiang", MARKET)
    d = world.service.confirm_field(owner, "enterprise.companies", "contact_phone", "核心",
                                    "personal")
    assert d.fields["contact_phone"].label == "核心"
    assert world.dataset("enterprise.companies").pi["contact_phone"].value == "personal"
    with pytest.raises(GrantError):
        world.service.confirm_field(approver("zhaolei", POLICE), "enterprise.companies", "name",
                                    "一般", "none")


def test_only_applications_ask_for_consent(world: World) -> None:
    with pytest.raises(GrantError) as exc:
        world.service.request_consent(citizen("citizen", world.citizen_key),
                                      dataset="population.persons", purpose="冒充应用", days=1)
    assert exc.value.status == 403


def test_a_second_vote_by_the_same_approver_is_impossible_in_the_store(world: World) -> None:
    """The race the service's own check cannot see: the primary key refuses the second row."""
    r = world.service.create_request(app("demo-research"), dataset="population.persons",
                                     fields=["id_number"], purpose="核对", days=3)
    store = world.grants.store
    assert store.record_approval(r.id, "user:zhaolei", "approve", "同意")
    assert not store.record_approval(r.id, "user:zhaolei", "approve", "再次")
    assert store.record_approval(r.id, "user:sunli", "approve", "同意")
    assert sorted(a.approver for a in store.get_request(r.id).approvals) == ["user:sunli", "user:zhaolei"]
