"""Mask obligations in a bundle: every protection strategy and selector (fields, paths, detectors)
is validated at load with a clear BundleError, and several masks merge "stricter wins" in the
documented order (MASK_ORDER), independently of rule order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgw.policies.bundle import parse_bundle
from ztgw.policies.domain import Classification, Environment, Obligation, Resource, Subject
from ztgw.policies.engine import CompiledPolicy
from ztgw.policies.errors import BundleError
from ztgw.policies.obligations import (
    MASK_ORDER,
    MASK_STRATEGIES,
    mask_rank,
    merge_obligations,
    strictest_mask,
    validate_obligation,
)

NOON = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)


def _mask(**params: Any) -> Obligation:
    return validate_obligation({"type": "mask", **params}, "r", "rules[0].obligations[0]")


def _policy(*obligation_lists: list[dict[str, Any]]) -> CompiledPolicy:
    rules = [{"id": f"r{i}", "effect": "allow", "subjects": ["role:r"], "datasets": ["population.*"],
              "actions": ["read"], "obligations": obs} for i, obs in enumerate(obligation_lists)]
    return CompiledPolicy(parse_bundle({"bundle": "t", "version": "1", "rules": rules}))


def _decide(p: CompiledPolicy, fields: dict[str, Classification] | None = None,
            clearance: Classification = Classification.GENERAL) -> Any:
    s = Subject(id="client:app", kind="client", name="app", client_id="app", roles=frozenset({"r"}),
                department=None, clearance=clearance, attributes={})
    r = Resource(dataset="population.persons", classification=Classification.IMPORTANT,
                 owner_department=None, record_id=None, fields=fields or {}, attributes={})
    return p.decide(s, r, "read", Environment(time=NOON))


EVERY_STRATEGY = [
    ({"strategy": "keep", "first": 6, "last": 4}, {"strategy": "keep", "first": 6, "last": 4}),
    ({"strategy": "redact"}, {"strategy": "redact"}),
    ({}, {"strategy": "redact"}),
    ({"strategy": "null"}, {"strategy": "null"}),
    ({"strategy": "pseudonym"}, {"strategy": "pseudonym", "format": "preserve"}),
    ({"strategy": "pseudonym", "format": "hex"}, {"strategy": "pseudonym", "format": "hex"}),
    ({"strategy": "token"}, {"strategy": "token"}),
    ({"strategy": "generalize", "to": "year"}, {"strategy": "generalize", "to": "year"}),
    ({"strategy": "generalize", "to": "district"}, {"strategy": "generalize", "to": "district"}),
    ({"strategy": "generalize", "to": "band"}, {"strategy": "generalize", "to": "band", "width": 10}),
    ({"strategy": "generalize", "to": "band", "width": 5},
     {"strategy": "generalize", "to": "band", "width": 5}),
    ({"strategy": "bucket", "width": 1000}, {"strategy": "bucket", "width": 1000}),
    ({"strategy": "noise", "scale": 0.05}, {"strategy": "noise", "scale": 0.05}),
    ({"strategy": "noise", "abs": 100}, {"strategy": "noise", "abs": 100}),
]


@pytest.mark.parametrize(("spec", "canonical"), EVERY_STRATEGY)
def test_every_strategy_loads_under_every_selector(spec: dict[str, Any], canonical: dict[str, Any]) -> None:
    ob = _mask(fields={"f": spec}, paths={"$.contacts.*.mobile": spec}, detectors={"cn_mobile": spec})
    assert ob.params == {"fields": {"f": canonical}, "paths": {"contacts.*.mobile": canonical},
                         "detectors": {"cn_mobile": canonical}}


def test_the_strategy_lists_agree() -> None:
    assert set(MASK_ORDER) == MASK_STRATEGIES
    assert {s["strategy"] for _, s in EVERY_STRATEGY} == MASK_STRATEGIES


@pytest.mark.parametrize(("params", "message"), [
    ({"fields": {"f": {"strategy": "shuffle"}}}, "mask strategy 'shuffle' is not one of"),
    ({"fields": {"f": {"strategy": "redact", "first": 3}}}, "'redact' takes only no parameters"),
    ({"fields": {"f": {"strategy": "keep", "first": 65}}}, "first is an integer 0..64"),
    ({"fields": {"f": {"strategy": "keep", "last": True}}}, "last is an integer"),
    ({"fields": {"f": {"strategy": "pseudonym", "format": "base64"}}}, "pseudonym.format"),
    ({"fields": {"f": {"strategy": "token", "tweak": "x"}}}, "'token' takes only no parameters"),
    ({"fields": {"f": {"strategy": "generalize"}}}, "generalize.to is one of"),
    ({"fields": {"f": {"strategy": "generalize", "to": "street"}}}, "generalize.to is one of"),
    ({"fields": {"f": {"strategy": "generalize", "to": "year", "width": 5}}}, "only with to: band"),
    ({"fields": {"f": {"strategy": "generalize", "to": "band", "width": 0}}}, "generalize.width"),
    ({"fields": {"f": {"strategy": "bucket"}}}, "bucket needs a width"),
    ({"fields": {"f": {"strategy": "bucket", "width": "10"}}}, "bucket.width"),
    ({"fields": {"f": {"strategy": "bucket", "width": -1}}}, "bucket.width"),
    ({"fields": {"f": {"strategy": "noise"}}}, "exactly one of scale"),
    ({"fields": {"f": {"strategy": "noise", "scale": 0.1, "abs": 5}}}, "exactly one of scale"),
    ({"fields": {"f": {"strategy": "noise", "scale": 2}}}, "noise.scale"),
    ({"fields": {"f": {"strategy": "noise", "abs": float("nan")}}}, "noise.abs"),
    ({"fields": {"f": "redact"}}, "a mask spec is a mapping"),
    ({"paths": {"a..b": {"strategy": "redact"}}}, "mask path 'a..b'"),
    ({"paths": {"a.b c": {"strategy": "redact"}}}, "mask path"),
    ({"paths": {".".join(["a"] * 17): {"strategy": "redact"}}}, "up to 16"),
    ({"paths": {"a.b": {"strategy": "redact"}, "$.a.b": {"strategy": "null"}}}, "listed twice"),
    ({"paths": {}}, "mask.paths is a non-empty mapping"),
    ({"detectors": {"cn_ssn": {"strategy": "redact"}}}, "unknown detector(s) ['cn_ssn']"),
    ({"detectors": []}, "mask.detectors is a non-empty mapping"),
    ({"detectors": {"email": {"strategy": "redact"}}, "above_clearance": "redact"},
     "above_clearance combines only with fields"),
    ({"above_clearance": "keep"}, "above_clearance is one of"),
    ({"types": {"email": {"strategy": "redact"}}}, "mask takes only"),
    ({}, "mask needs"),
])
def test_bad_masks_fail_the_load_with_a_clear_message(params: dict[str, Any], message: str) -> None:
    with pytest.raises(BundleError) as err:
        _policy([{"type": "mask", **params}])
    assert message in str(err.value)


def test_above_clearance_takes_keyed_strategies() -> None:
    p = _policy([{"type": "mask", "above_clearance": "token"}],
                [{"type": "mask", "detectors": {"cn_id_number": {"strategy": "pseudonym"}}}])
    d = _decide(p, fields={"id_number": Classification.CORE, "name": Classification.GENERAL})
    (mask,) = [o for o in d.obligations if o.type == "mask"]
    assert mask.params == {"fields": {"id_number": {"strategy": "token"}},
                           "detectors": {"cn_id_number": {"strategy": "pseudonym", "format": "preserve"}}}


# --- merging ----------------------------------------------------------------------------------
def _merged(*masks: dict[str, Any]) -> dict[str, Any]:
    (ob,) = merge_obligations([_mask(**m) for m in masks])
    return dict(ob.params)


def test_merge_follows_the_documented_order() -> None:
    order = ["null", "redact", "pseudonym", "token", "generalize", "bucket", "noise", "keep"]
    assert sorted(MASK_ORDER, key=MASK_ORDER.__getitem__) == order
    specs = [dict(s) for s, _ in EVERY_STRATEGY if s]
    for a in specs:
        for b in specs:
            won = strictest_mask([a, b])
            # never less strict than either input
            assert mask_rank(won) <= mask_rank(_mask(fields={"f": a}).params["fields"]["f"]) or \
                won == {"strategy": "redact"}
            assert won == strictest_mask([b, a])


def test_merge_within_a_strategy() -> None:
    keep = _merged({"fields": {"f": {"strategy": "keep", "first": 6, "last": 2}}},
                   {"fields": {"f": {"strategy": "keep", "first": 3, "last": 4}}})
    assert keep["fields"]["f"] == {"strategy": "keep", "first": 3, "last": 2}
    pseud = _merged({"fields": {"f": {"strategy": "pseudonym"}}},
                    {"fields": {"f": {"strategy": "pseudonym", "format": "hex"}}})
    assert pseud["fields"]["f"]["format"] == "hex"
    coarse = _merged({"fields": {"f": {"strategy": "generalize", "to": "district"}}},
                     {"fields": {"f": {"strategy": "generalize", "to": "city"}}})
    assert coarse["fields"]["f"]["to"] == "city"
    assert _merged({"fields": {"f": {"strategy": "generalize", "to": "month"}}},
                   {"fields": {"f": {"strategy": "generalize", "to": "year"}}})["fields"]["f"]["to"] == "year"
    assert _merged({"fields": {"f": {"strategy": "bucket", "width": 10}}},
                   {"fields": {"f": {"strategy": "bucket", "width": 100}}})["fields"]["f"]["width"] == 100
    assert _merged({"fields": {"f": {"strategy": "noise", "scale": 0.1}}},
                   {"fields": {"f": {"strategy": "noise", "scale": 0.3}}})["fields"]["f"]["scale"] == 0.3


def test_incomparable_specs_of_one_strategy_merge_to_redact() -> None:
    assert _merged({"fields": {"f": {"strategy": "generalize", "to": "year"}}},
                   {"fields": {"f": {"strategy": "generalize", "to": "district"}}}
                   )["fields"]["f"] == {"strategy": "redact"}
    noise = _merged({"fields": {"f": {"strategy": "noise", "scale": 0.1}}},
                    {"fields": {"f": {"strategy": "noise", "abs": 10}}})
    assert noise["fields"]["f"] == {"strategy": "redact"}
    # a stricter strategy still beats the conflict
    assert _merged({"fields": {"f": {"strategy": "generalize", "to": "year"}}},
                   {"fields": {"f": {"strategy": "generalize", "to": "district"}}},
                   {"fields": {"f": {"strategy": "null"}}})["fields"]["f"] == {"strategy": "null"}


def test_selectors_merge_separately_and_fields_is_always_present() -> None:
    merged = _merged({"detectors": {"cn_mobile": {"strategy": "keep", "first": 3, "last": 4}}},
                     {"detectors": {"cn_mobile": {"strategy": "token"}, "email": {"strategy": "null"}},
                      "paths": {"a.b": {"strategy": "redact"}}},
                     {"fields": {"cn_mobile": {"strategy": "keep", "first": 1}}})
    assert merged == {"fields": {"cn_mobile": {"strategy": "keep", "first": 1}},
                      "paths": {"a.b": {"strategy": "redact"}},
                      "detectors": {"cn_mobile": {"strategy": "token"}, "email": {"strategy": "null"}}}
    only_detectors = _merged({"detectors": {"email": {"strategy": "redact"}}})
    assert only_detectors == {"fields": {}, "detectors": {"email": {"strategy": "redact"}}}


def test_two_rules_merge_through_the_engine() -> None:
    p = _policy([{"type": "mask", "detectors": {"cn_id_number": {"strategy": "token"}},
                  "fields": {"birth_date": {"strategy": "generalize", "to": "month"}}}],
                [{"type": "mask", "detectors": {"cn_id_number": {"strategy": "keep", "first": 6}},
                  "fields": {"birth_date": {"strategy": "generalize", "to": "year"}}}])
    d = _decide(p)
    assert d.allowed
    (mask,) = [o for o in d.obligations if o.type == "mask"]
    assert mask.params["detectors"] == {"cn_id_number": {"strategy": "token"}}
    assert mask.params["fields"] == {"birth_date": {"strategy": "generalize", "to": "year"}}
    assert set(mask.rule_id.split(",")) == {"r0", "r1"}


_SPECS = st.sampled_from([c for _, c in EVERY_STRATEGY]) | st.builds(
    lambda f, la: {"strategy": "keep", "first": f, "last": la}, st.integers(0, 8), st.integers(0, 8))


@settings(max_examples=300, deadline=None)
@given(specs=st.lists(_SPECS, min_size=1, max_size=6), seed=st.randoms())
def test_merge_is_order_independent_and_never_looser(specs: list[dict[str, Any]], seed: Any) -> None:
    shuffled = list(specs)
    seed.shuffle(shuffled)
    won = strictest_mask(specs)
    assert won == strictest_mask(shuffled)
    assert MASK_ORDER[won["strategy"]] <= min(MASK_ORDER[s["strategy"]] for s in specs)
    same = [s for s in specs if s["strategy"] == won["strategy"]]
    if won["strategy"] == "keep":
        assert all(won["first"] <= s.get("first", 0) and won["last"] <= s.get("last", 0) for s in same)
    elif won != {"strategy": "redact"} or same:
        assert all(mask_rank(won) <= mask_rank(s) for s in same)
