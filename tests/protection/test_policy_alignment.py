"""The policy bundle's mask vocabulary and the protection library agree: whatever a bundle
accepts, the data plane can carry out (and the detector ids are the same list)."""

from __future__ import annotations

from typing import Any

import pytest

from ztgw.gateway.protection.detectors import DETECTOR_IDS
from ztgw.gateway.protection.keys import ProtectionKeys
from ztgw.gateway.protection.masking import MaskPlan, UnenforceableMask
from ztgw.gateway.protection.strategies import STRATEGIES, compile_masker
from ztgw.policies.errors import BundleError
from ztgw.policies.obligations import (
    MASK_DETECTORS,
    MASK_SPEC_KEYS,
    MASK_STRATEGIES,
    merge_obligations,
    validate_obligation,
)

KEYS = ProtectionKeys(bytes(range(32)))


def test_same_strategies_parameters_and_detectors() -> None:
    assert MASK_STRATEGIES == STRATEGIES
    assert set(MASK_DETECTORS) == set(DETECTOR_IDS)
    from ztgw.gateway.protection.strategies import _SPEC_KEYS
    assert {k: set(v) for k, v in MASK_SPEC_KEYS.items()} == _SPEC_KEYS


SPECS: list[dict[str, Any]] = [
    {"strategy": "keep", "first": 3, "last": 4}, {"strategy": "redact"}, {"strategy": "null"},
    {"strategy": "pseudonym"}, {"strategy": "pseudonym", "format": "hex"}, {"strategy": "token"},
    {"strategy": "generalize", "to": "year"}, {"strategy": "generalize", "to": "month"},
    {"strategy": "generalize", "to": "band", "width": 5}, {"strategy": "generalize", "to": "band"},
    {"strategy": "generalize", "to": "district"}, {"strategy": "generalize", "to": "city"},
    {"strategy": "generalize", "to": "province"}, {"strategy": "bucket", "width": 0.5},
    {"strategy": "noise", "scale": 1}, {"strategy": "noise", "abs": 3.5},
    # rejected by both
    {"strategy": "shuffle"}, {"strategy": "keep", "first": 99}, {"strategy": "bucket"},
    {"strategy": "noise", "scale": 0.1, "abs": 1}, {"strategy": "generalize", "to": "street"},
    {"strategy": "redact", "first": 1}, {"strategy": "pseudonym", "format": "b64"},
    {"strategy": "noise", "scale": 1.5}, {"strategy": "bucket", "width": True},
]


@pytest.mark.parametrize("spec", SPECS, ids=repr)
def test_a_spec_loads_in_a_bundle_exactly_when_the_data_plane_can_enforce_it(spec: dict[str, Any]) -> None:
    try:
        compile_masker(spec, KEYS)
        enforceable = True
    except UnenforceableMask:
        enforceable = False
    try:
        ob = validate_obligation({"type": "mask", "fields": {"f": spec}, "paths": {"a.*.b": spec},
                                  "detectors": {"cn_mobile": spec}}, "r", "here")
    except BundleError:
        assert not enforceable
        return
    assert enforceable
    (merged,) = merge_obligations([ob])
    plan = MaskPlan.from_obligation(merged.params, keys=KEYS)  # what build_plan does
    assert set(plan.maskers) == {"f"} and set(plan.types) == {"cn_mobile"} and len(plan.paths) == 1


def test_a_merged_bundle_mask_runs_on_a_record() -> None:
    obs = [validate_obligation({"type": "mask", "detectors": {"cn_id_number": {"strategy": "token"}},
                                "paths": {"$.contacts.mobile": {"strategy": "keep", "first": 3}}},
                               "r1", "here"),
           validate_obligation({"type": "mask", "fields": {"age": {"strategy": "generalize", "to": "band"}},
                                "detectors": {"cn_id_number": {"strategy": "redact"}}}, "r2", "here")]
    (merged,) = merge_obligations(obs)
    plan = MaskPlan.from_obligation(merged.params, keys=KEYS)
    rec = {"sfzh": "11010519491231002X", "age": 47, "note": "身份证 11010519491231002X 已核验",
           "contacts": [{"mobile": "13800138000"}, {"mobile": "13912345678"}]}
    touched = plan.record(rec)
    assert rec["sfzh"] == "*" * 18 and "11010519491231002X" not in rec["note"]
    assert rec["age"] == "40-49"
    assert [c["mobile"] for c in rec["contacts"]] == ["138********", "139********"]
    assert {"sfzh", "note", "age", "contacts.mobile"} <= touched


def test_detectors_and_types_spellings() -> None:
    a = MaskPlan.from_obligation({"detectors": {"email": {"strategy": "redact"}}})
    b = MaskPlan.from_obligation({"types": {"email": {"strategy": "redact"}}})
    assert set(a.types) == set(b.types) == {"email"}
    with pytest.raises(UnenforceableMask):
        MaskPlan.from_obligation({"types": {"email": {}}, "detectors": {"email": {}}})
    with pytest.raises(UnenforceableMask):
        MaskPlan.from_obligation({"fields": {}, "detectors": {}})
