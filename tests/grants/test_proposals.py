"""Classification proposals from PII detection: raise, never lower; only fields most rows hold."""

from __future__ import annotations

from ztgw.gateway.catalogue import PersonalInfo
from ztgw.gateway.grants.proposals import propose

from .conftest import World


def test_proposals_raise_and_never_lower(world: World) -> None:
    d = world.dataset("enterprise.companies")
    findings = [
        {"field": "legal_rep_id_number", "type": "cn_id_number", "rows": 90},  # 重要 → 核心
        {"field": "contact_phone", "type": "cn_mobile", "rows": 80},  # 重要 already; flag raised
        {"field": "name", "type": "cn_name", "rows": 10},  # too few rows: no proposal
        {"field": "uscc", "type": "cn_uscc", "rows": 100},  # not personal data
        {"field": "not_in_schema", "type": "cn_id_number", "rows": 100},
    ]
    got = {p["field"]: p["proposed"] for p in propose(d, findings, 100)}
    assert got == {"legal_rep_id_number": {"classification": "核心", "pi": "sensitive"},
                   "contact_phone": {"classification": "重要", "pi": "personal"}}
    persons = world.dataset("population.persons")
    assert persons.pi["id_number"] == PersonalInfo.SENSITIVE
    # id_number is already 核心 / sensitive: a weaker finding proposes nothing
    assert propose(persons, [{"field": "id_number", "type": "cn_mobile", "rows": 100}], 100) == []
