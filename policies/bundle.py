"""Policy bundles: reviewable YAML rules, parsed and validated into typed rules.

A bundle is a folder ``policies/bundles/<name>/`` holding ``policy.yaml``::

    bundle: demo
    version: "2026.11.1"
    roles:                       # role hierarchy, compiled to casbin ``g`` rows
      - [role:population-officer, role:population-reader]
    rules:
      - id: population-read-masked
        effect: allow            # allow | deny; deny overrides allow
        subjects: [role:population-reader]   # client:ID, user:NAME, role:R, dept:D or "*"
        datasets: [population.persons]       # exact, prefix glob "population.*", or "*"
        actions: [read]
        when: {clearance_at_least: 重要}      # optional declarative conditions (conditions.py)
        obligations:
          - type: mask
            fields: {id_number: {strategy: keep, first: 6, last: 4}}

Rule text is data: it is validated here and compiled to closures once at load, never
evaluated as code.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .conditions import CONDITIONS, Condition, compile_conditions
from .domain import Effect, Obligation
from .errors import BundleError
from .obligations import validate_obligation

POLICY_FILE = "policy.yaml"
MAX_BUNDLE_BYTES = 8 * 1024 * 1024  # a bundle bigger than this is a mistake, not a policy
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_SUBJECT = re.compile(r"^(\*|(client|user|role|dept):[^\s,]{1,128})$")
_DATASET = re.compile(r"^(\*|[a-z0-9_-]+(\.[a-z0-9_-]+)*(\.\*)?)$")
_DATASET_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
ACTIONS = frozenset({"read", "write", "delete", "admin", "*"})
MAX_RULES = 200_000


def canonical_dataset(value: str) -> str | None:
    """The one spelling of a dataset id, or None if it is not one (callers deny).

    NFKC folds full-width and compatibility characters, case is folded, and trailing ``/``
    or ``.`` are dropped, so ``Population.Persons/`` and ``ｐｏｐｕｌａｔｉｏｎ.persons`` name
    the same dataset as ``population.persons`` — for deny rules as much as for allow rules.
    """
    text = unicodedata.normalize("NFKC", value).casefold().rstrip("/.")
    return text if _DATASET_NAME.match(text) else None


def canonical_subject(value: str) -> str:
    """The one spelling of a subject key: NFKC everywhere; role names also case-folded."""
    text = unicodedata.normalize("NFKC", value)
    if text.startswith("role:"):
        return "role:" + text[5:].casefold()
    return text


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    effect: Effect
    subjects: tuple[str, ...]
    datasets: tuple[str, ...]
    actions: tuple[str, ...]
    when: Mapping[str, Any] = field(default_factory=dict)
    obligations: tuple[Obligation, ...] = ()
    description: str = ""
    conditions: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyBundle:
    name: str
    version: str
    rules: tuple[Rule, ...]
    role_links: tuple[tuple[str, ...], ...] = ()
    source: Path | None = None


def load_bundle(path: Path) -> PolicyBundle:
    """Read and validate a bundle folder (or a policy.yaml file)."""
    file = path / POLICY_FILE if path.is_dir() else path
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read policy bundle {file}: {exc.strerror}") from exc
    if len(raw) > MAX_BUNDLE_BYTES:
        raise BundleError(f"policy bundle {file} is larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        doc = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BundleError(f"policy bundle {file} is not valid UTF-8 YAML: {exc}") from exc
    bundle = parse_bundle(doc)
    return PolicyBundle(bundle.name, bundle.version, bundle.rules, bundle.role_links, file)


def parse_bundle(doc: Any) -> PolicyBundle:
    if not isinstance(doc, dict):
        raise BundleError("a policy bundle is a mapping with 'bundle', 'version' and 'rules'")
    unknown = set(doc) - {"bundle", "version", "description", "roles", "rules"}
    if unknown:
        raise BundleError(f"unknown top-level keys in bundle: {sorted(unknown)}")
    name = _text(doc.get("bundle"), "bundle")
    version = _text(doc.get("version"), "version")
    links = tuple(_role_link(item) for item in _list(doc.get("roles", []), "roles"))
    items = _list(doc.get("rules"), "rules")
    if len(items) > MAX_RULES:
        raise BundleError(f"a bundle holds at most {MAX_RULES} rules")
    rules = tuple(_rule(item, i) for i, item in enumerate(items))
    seen: set[str] = set()
    for rule in rules:
        if rule.id in seen:
            raise BundleError(f"duplicate rule id {rule.id!r}")
        seen.add(rule.id)
    return PolicyBundle(name=name, version=version, rules=rules, role_links=links)


def _rule(item: Any, index: int) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(item, dict):
        raise BundleError(f"{where} must be a mapping")
    unknown = set(item) - {
        "id", "effect", "subjects", "datasets", "actions", "when", "obligations", "description"
    }
    if unknown:
        raise BundleError(f"{where}: unknown keys {sorted(unknown)}")
    rule_id = _text(item.get("id"), f"{where}.id")
    if not _ID.match(rule_id):
        raise BundleError(f"{where}: rule id {rule_id!r} has characters outside [A-Za-z0-9_.:-]")
    where = f"rule {rule_id!r}"
    effect = item.get("effect")
    if effect not in ("allow", "deny"):
        raise BundleError(f"{where}: effect must be 'allow' or 'deny'")
    subjects = _patterns(item.get("subjects"), _SUBJECT, f"{where}.subjects")
    datasets = _patterns(item.get("datasets"), _DATASET, f"{where}.datasets")
    actions = tuple(_list(item.get("actions"), f"{where}.actions"))
    bad = [a for a in actions if a not in ACTIONS]
    if bad or not actions:
        raise BundleError(f"{where}: actions must be a non-empty subset of {sorted(ACTIONS)}")
    when = item.get("when") or {}
    if not isinstance(when, dict) or set(when) - CONDITIONS:
        raise BundleError(f"{where}: 'when' keys must be among {sorted(CONDITIONS)}")
    conditions = compile_conditions(when, f"{where}.when")
    obligations = tuple(
        validate_obligation(o, rule_id, f"{where}.obligations[{i}]")
        for i, o in enumerate(_list(item.get("obligations", []), f"{where}.obligations"))
    )
    if effect == "deny" and obligations:
        raise BundleError(f"{where}: a deny rule carries no obligations")
    return Rule(
        id=rule_id,
        effect=effect,
        subjects=subjects,
        datasets=datasets,
        actions=actions,
        when=dict(when),
        obligations=obligations,
        description=str(item.get("description", "")),
        conditions=conditions,
    )


def _role_link(item: Any) -> tuple[str, ...]:
    """``[member, role]`` holds in every department; ``[member, role, 部门]`` only in that one."""
    if (
        not isinstance(item, list | tuple)
        or len(item) not in (2, 3)
        or not all(isinstance(x, str) and _SUBJECT.match(x) for x in item[:2])
        or (len(item) == 3 and (not isinstance(item[2], str) or not item[2].strip()))
    ):
        raise BundleError(f"roles entries are [member, role] or [member, role, department], "
                          f"got {item!r}")
    link = (canonical_subject(item[0]), canonical_subject(item[1]))
    return (*link, unicodedata.normalize("NFKC", item[2])) if len(item) == 3 else link


def _patterns(value: Any, pattern: re.Pattern[str], where: str) -> tuple[str, ...]:
    items = _list(value, where)
    if not items:
        raise BundleError(f"{where} must not be empty")
    out: list[str] = []
    for x in items:
        if not isinstance(x, str) or not pattern.match(x):
            raise BundleError(f"{where}: {x!r} is not a valid pattern")
        out.append(canonical_subject(x) if pattern is _SUBJECT else x)
    return tuple(dict.fromkeys(out))


def _list(value: Any, where: str) -> Sequence[Any]:
    if value is None:
        raise BundleError(f"{where} is required")
    if not isinstance(value, list):
        raise BundleError(f"{where} must be a list")
    return value


def _text(value: Any, where: str) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise BundleError(f"{where} must be a non-empty string")
    return value.strip()
