"""Policy as code: YAML test cases (given → expect) run against a compiled bundle.

A test file holds ``cases`` (and optionally ``bundle:``, a path relative to the file)::

    cases:
      - name: the analyst reads population data masked
        subject: {id: client:demo-analytics, roles: [population-analyst], clearance: 重要,
                  department: 市大数据局, attributes: {district: "440106"}}
        resource: {dataset: population.persons, classification: 核心,
                   owner_department: 市公安局, fields: {id_number: 核心}}
        action: read
        env: {time: "2026-11-20T11:00:00+08:00", zone: gov-intranet, acr: "…", risk: 10}
        expect:
          effect: allow
          rule_id: population-analyst-read-masked
          obligations:               # each listed obligation must be present, params equal
            - {type: mask, fields: {id_number: {strategy: keep, first: 6, last: 4}}}
          no_obligations: [row_filter]   # these types must be absent

``ztgw policy test DIR`` runs ``DIR/tests/*.yaml`` against the bundle ``DIR`` (or every
``*.yaml`` in DIR against the bundle each file names).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from .bundle import POLICY_FILE, load_bundle
from .domain import Classification, Decision, Environment, Resource, Subject
from .engine import CompiledPolicy, decision_dict
from .errors import BundleError

DEFAULT_TIME = "2026-01-05T10:00:00+08:00"  # a Monday, office hours, Beijing time


@dataclass(slots=True)
class CaseResult:
    file: str
    name: str
    passed: bool
    failures: list[str] = field(default_factory=list)
    decision: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "name": self.name, "passed": self.passed,
                "failures": self.failures, "decision": self.decision}


def subject_from(doc: Mapping[str, Any]) -> Subject:
    if not isinstance(doc, Mapping) or not isinstance(doc.get("id"), str):
        raise BundleError("a test subject is a mapping with an 'id' like client:ID or user:NAME")
    sid = str(doc["id"])
    kind = "user" if sid.startswith("user:") else "client"
    client_id = str(doc.get("client_id") or (sid.split(":", 1)[1] if kind == "client" else "app"))
    attrs = doc.get("attributes") or {}
    if not isinstance(attrs, Mapping):
        raise BundleError("subject.attributes is a mapping")
    return Subject(id=sid, kind=kind, name=str(doc.get("name", sid.split(":", 1)[-1])),
                   client_id=client_id, roles=frozenset(str(r) for r in doc.get("roles") or ()),
                   department=doc.get("department"),
                   clearance=_level(doc.get("clearance", "一般")), attributes=dict(attrs))


def resource_from(doc: Mapping[str, Any] | str) -> Resource:
    if isinstance(doc, str):
        doc = {"dataset": doc}
    if not isinstance(doc, Mapping) or not isinstance(doc.get("dataset"), str):
        raise BundleError("a test resource is a mapping with a 'dataset'")
    fields = {str(k): _level(v) for k, v in (doc.get("fields") or {}).items()}
    record = doc.get("record_id")
    return Resource(dataset=str(doc["dataset"]), classification=_level(doc.get("classification", "一般")),
                    owner_department=doc.get("owner_department"),
                    record_id=None if record is None else str(record), fields=fields,
                    attributes=dict(doc.get("attributes") or {}))


def env_from(doc: Mapping[str, Any] | None) -> Environment:
    doc = doc or {}
    if not isinstance(doc, Mapping):
        raise BundleError("env is a mapping")
    raw = doc.get("time", DEFAULT_TIME)
    try:
        when = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
    except ValueError as exc:
        raise BundleError(f"env.time {raw!r} is not ISO-8601") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    risk = doc.get("risk", doc.get("risk_score", 0))
    if not isinstance(risk, int) or isinstance(risk, bool):
        raise BundleError("env.risk is an integer")
    return Environment(time=when, source_ip=doc.get("source_ip"), zone=doc.get("zone"),
                       acr=doc.get("acr"), risk_score=risk, device=doc.get("device"),
                       attributes=dict(doc.get("attributes") or {}))


def _level(value: Any) -> Classification:
    try:
        return Classification.parse(value)
    except (ValueError, TypeError) as exc:
        raise BundleError(str(exc)) from exc


def check(decision: Decision, expect: Mapping[str, Any]) -> list[str]:
    """The ways ``decision`` falls short of ``expect`` (empty when it passes)."""
    failures = []
    got = decision_dict(decision)
    if "effect" in expect and got["effect"] != expect["effect"]:
        failures.append(f"effect: expected {expect['effect']}, got {got['effect']} ({got['reason']})")
    if "rule_id" in expect and got["rule_id"] != expect["rule_id"]:
        failures.append(f"rule_id: expected {expect['rule_id']}, got {got['rule_id']}")
    if "matched_rules" in expect and sorted(got["matched_rules"]) != sorted(expect["matched_rules"]):
        failures.append(f"matched_rules: expected {expect['matched_rules']}, got {got['matched_rules']}")
    have = [{k: v for k, v in o.items() if k != "rule_id"} for o in got["obligations"]]
    for want in expect.get("obligations") or ():
        if not any(_contains(h, want) for h in have):
            failures.append(f"obligation {want} not found in {have}")
    for kind in expect.get("no_obligations") or ():
        if any(h["type"] == kind for h in have):
            failures.append(f"obligation type {kind} present but expected absent")
    unknown = set(expect) - {"effect", "rule_id", "matched_rules", "obligations", "no_obligations"}
    if unknown:
        failures.append(f"unknown expect keys {sorted(unknown)}")
    return failures


def _contains(have: Any, want: Any) -> bool:
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(k in have and _contains(have[k], v)
                                                 for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and sorted(map(str, have)) == sorted(map(str, want))
    return bool(have == want)


def run_file(file: Path, policy: CompiledPolicy | None = None) -> list[CaseResult]:
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BundleError(f"cannot read test file {file}: {exc}") from exc
    if not isinstance(doc, Mapping) or not isinstance(doc.get("cases"), list):
        raise BundleError(f"{file}: a test file is a mapping with a 'cases' list")
    if policy is None or "bundle" in doc:
        if "bundle" not in doc:
            raise BundleError(f"{file}: name the bundle under test ('bundle: PATH')")
        policy = CompiledPolicy(load_bundle((file.parent / str(doc["bundle"])).resolve()))
    results = []
    for i, case in enumerate(doc["cases"]):
        name = str(case.get("name", f"case {i}")) if isinstance(case, Mapping) else f"case {i}"
        try:
            if not isinstance(case, Mapping) or not isinstance(case.get("expect"), Mapping):
                raise BundleError("a case is a mapping with subject, resource, action and expect")
            decision = policy.decide(subject_from(case.get("subject") or {}),
                                     resource_from(case.get("resource") or {}),
                                     str(case.get("action", "read")), env_from(case.get("env")))
            failures = check(decision, case["expect"])
            results.append(CaseResult(file.name, name, not failures, failures, decision_dict(decision)))
        except BundleError as exc:
            results.append(CaseResult(file.name, name, False, [f"invalid case: {exc}"]))
    return results


def run_dir(path: Path) -> list[CaseResult]:
    """Run a bundle's tests (``DIR/tests/*.yaml``) or a folder of test files."""
    if (path / POLICY_FILE).is_file():
        policy = CompiledPolicy(load_bundle(path))
        files = sorted((path / "tests").glob("*.yaml"))
        if not files:
            raise BundleError(f"bundle {path} has no tests/*.yaml")
        return [r for f in files for r in run_file(f, policy)]
    if path.is_file():
        return run_file(path)
    files = sorted(path.glob("*.yaml"))
    if not files:
        raise BundleError(f"no test files (*.yaml) in {path}")
    return [r for f in files for r in run_file(f)]
