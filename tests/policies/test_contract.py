"""The contract the data plane and the admin API rely on (INTERFACES for the policy engine)."""

from __future__ import annotations

import dataclasses
import inspect

from ztgw.gateway.demo.realm import demo_bundle_dir
from ztgw.policies import engine, obligations
from ztgw.policies.bundle import load_bundle
from ztgw.policies.domain import Decision


def test_decision_fields_and_engine_surface() -> None:
    assert [f.name for f in dataclasses.fields(Decision)] == [
        "effect", "reason", "rule_id", "ruleset", "ruleset_version", "obligations", "matched_rules"]
    params = list(inspect.signature(engine.PolicyEngine.decide).parameters)
    assert params == ["self", "subject", "resource", "action", "env"]
    e = engine.PolicyEngine(engine.CompiledPolicy(load_bundle(demo_bundle_dir())))
    assert e.policy.bundle.name == "demo"
    assert callable(e.swap)


def test_obligation_type_names() -> None:
    expected = {"mask", "watermark", "row_filter", "project", "max_rows", "step_up"}
    assert expected == obligations.KNOWN_TYPES
