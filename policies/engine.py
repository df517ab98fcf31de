"""The decision engine: bundles compiled once to a casbin model + an index of closures.

Casbin holds the canonical form of the policy (``p`` rows per subject/dataset/action and
``g`` rows for the role hierarchy with department domains, see :data:`CASBIN_MODEL`); its role
manager resolves role inheritance.  Requests are decided from an index built at load:
``(dataset, action) → subject key → rules`` whose entries carry precompiled predicates, so a
decision costs a few dict look-ups instead of a scan of every row, and its size barely depends
on the number of rules.  ``tests/policies`` checks that the index and casbin's own ``Enforcer``
agree on every decision, and ``bench/policy_bench.py`` measures both.

Semantics: default deny; deny overrides allow (whatever the order); a rule applies when its
subject, dataset and action match and all its conditions hold; the deciding rule of an allow
is the first applying allow rule in bundle order; obligations of every applying allow rule are
merged (the stricter wins, see :mod:`.obligations`).  Identifiers are compared in canonical
form (:func:`.bundle.canonical_dataset`, :func:`.bundle.canonical_subject`); a dataset id that
has no canonical form is denied.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import casbin

from .bundle import PolicyBundle, Rule, canonical_dataset, canonical_subject
from .conditions import (
    CONSENT_ATTRIBUTE,
    GRANT_ATTRIBUTE,
    ConsentScope,
    GrantScope,
    Predicate,
    fuse,
    nfkc,
)
from .domain import Action, Classification, Decision, Environment, Obligation, Resource, Subject
from .obligations import (
    CONSENT,
    GRANT,
    MASK,
    MAX_ROWS,
    PROJECT,
    ROW_FILTER,
    STEP_UP,
    is_template,
    merge_obligations,
)

CASBIN_MODEL = """
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, obj, act, eft, rid

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = (p.sub == "*" || g(r.sub, p.sub, r.dom) || g(r.sub, p.sub, "*")) && keyMatch(r.obj, p.obj) \
&& (p.act == "*" || r.act == p.act)
"""
GLOBAL_DOMAIN = "*"  # role links that hold in every department
MAX_CACHE = 262_144  # memo entries per compiled policy (subjects × datasets seen); then reset
ROLE_DEPTH = 16  # longest role chain followed (casbin's default is 10)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    index: int
    rule: Rule
    deny: bool
    check: Predicate | None
    templated: bool  # obligations resolved per request


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """How one rule that targets the dataset and action fared (for explanations)."""

    rule_id: str
    effect: str
    subject_matched: bool
    failed_conditions: tuple[str, ...]
    applied: bool
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "effect": self.effect,
                "subject_matched": self.subject_matched,
                "failed_conditions": list(self.failed_conditions), "applied": self.applied,
                "description": self.description}


@dataclass(frozen=True, slots=True)
class Explanation:
    decision: Decision
    subject_keys: tuple[str, ...]
    dataset: str | None
    rules: tuple[RuleTrace, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"decision": decision_dict(self.decision), "subject_keys": list(self.subject_keys),
                "dataset": self.dataset, "rules": [t.as_dict() for t in self.rules]}


def decision_dict(d: Decision) -> dict[str, Any]:
    return {"effect": d.effect, "reason": d.reason, "rule_id": d.rule_id, "ruleset": d.ruleset,
            "ruleset_version": d.ruleset_version, "matched_rules": list(d.matched_rules),
            "obligations": [{"type": o.type, **_plain(o.params), "rule_id": o.rule_id}
                            for o in d.obligations]}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value


def _pattern_keys(dataset: str) -> tuple[str, ...]:
    """Every dataset pattern that matches ``dataset``: itself, each ``prefix.*``, and ``*``."""
    parts = dataset.split(".")
    globs = [".".join(parts[:i]) + ".*" for i in range(len(parts) - 1, 0, -1)]
    return (dataset, *globs, "*")


class CompiledPolicy:
    """One bundle, compiled.  Immutable after construction; safe to share across threads."""

    def __init__(self, bundle: PolicyBundle) -> None:
        self.bundle = bundle
        self.rules = tuple(
            CompiledRule(index=i, rule=r, deny=r.effect == "deny", check=fuse(r.conditions),
                         templated=any(is_template(o) for o in r.obligations))
            for i, r in enumerate(bundle.rules)
        )
        self._by_id = {c.rule.id: c for c in self.rules}
        # (dataset pattern, action) -> subject key ("*" for anyone) -> rule indices
        self._table: dict[tuple[str, str], dict[str, list[int]]] = {}
        for c in self.rules:
            for ds in c.rule.datasets:
                for act in c.rule.actions:
                    bucket = self._table.setdefault((ds, act), {})
                    for sub in c.rule.subjects:
                        bucket.setdefault(sub, []).append(c.index)
        self._enforcer = self._build_enforcer(bundle, with_rules=False)
        # the role graph as casbin holds it (g rows), indexed for the request path: casbin's
        # domain role manager pattern-matches every role per lookup (~1 ms at 1,000 roles)
        self._parents: dict[tuple[str, str], list[str]] = {}
        self._children: dict[tuple[str, str], list[str]] = {}
        for member, role, dom in self._enforcer.get_named_grouping_policy("g"):
            self._parents.setdefault((member, dom), []).append(role)
            self._children.setdefault((role, dom), []).append(member)
        self._lock = threading.Lock()
        self._slots: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}
        self._keys: dict[tuple[Any, ...], frozenset[str]] = {}
        self._candidates: dict[tuple[Any, ...], tuple[CompiledRule, ...]] = {}
        self._plans: dict[tuple[Any, ...], tuple[tuple[CompiledRule, ...], Decision]] = {}
        # rules whose per-request obligations are only grant/consent: their resolved decision
        # depends on nothing but the (hashable) scopes, so it is memoised on them
        self._entitlement_only = frozenset(
            c.index for c in self.rules
            if c.templated and all(o.type in (GRANT, CONSENT) for o in c.rule.obligations
                                   if is_template(o)))
        self._resolved: dict[tuple[Any, ...], Decision] = {}
        self._defaults: dict[tuple[str, str], Decision] = {}
        self._allow_decisions: dict[tuple[int, ...], Decision] = {}
        self._deny_decisions = {
            c.index: Decision(effect="deny", reason=f"denied by rule {c.rule.id}",
                              rule_id=c.rule.id, ruleset=bundle.name,
                              ruleset_version=bundle.version, matched_rules=(c.rule.id,))
            for c in self.rules if c.deny
        }

    # --- casbin ----------------------------------------------------------------------------
    @staticmethod
    def _build_enforcer(bundle: PolicyBundle, *, with_rules: bool) -> casbin.Enforcer:
        model = casbin.model.Model()
        model.load_model_from_text(CASBIN_MODEL)
        enforcer = casbin.Enforcer(model)
        if bundle.role_links:
            enforcer.add_grouping_policies([list(link) for link in casbin_role_rows(bundle)])
        if with_rules:
            enforcer.add_policies(list(casbin_policy_rows(bundle)))
        return enforcer

    def casbin_enforcer(self) -> casbin.Enforcer:
        """A full casbin Enforcer over the compiled rows (conditions are not expressible)."""
        return self._build_enforcer(self.bundle, with_rules=True)

    # --- subjects --------------------------------------------------------------------------
    def _expand(self, keys: Iterable[str], domain: str | None) -> frozenset[str]:
        out = set(keys)
        frontier = list(out)
        domains = (GLOBAL_DOMAIN,) if domain is None else (GLOBAL_DOMAIN, domain)
        for _ in range(ROLE_DEPTH):
            nxt: list[str] = []
            for key in frontier:
                for dom in domains:
                    for role in self._parents.get((key, dom), ()):
                        if role not in out:
                            out.add(role)
                            nxt.append(role)
            if not nxt:
                break
            frontier = nxt
        return frozenset(out)

    def subject_keys(self, subject: Subject) -> frozenset[str]:
        """The subject's ids, roles (with inherited ones) and department, canonical."""
        memo = (subject.id, subject.client_id, subject.roles, subject.department)
        found = self._keys.get(memo)
        if found is not None:
            return found
        dept = nfkc(subject.department) if subject.department else None
        keys = {canonical_subject(subject.id), canonical_subject(f"client:{subject.client_id}")}
        roles = {canonical_subject(f"role:{r}") for r in subject.roles}
        keys.update(roles)
        if dept:
            keys.add(f"dept:{dept}")
        expanded = self._expand(keys, dept)
        if dept:  # role in its department domain: role:R@D
            expanded |= {canonical_subject(f"{k}@{dept}") for k in expanded if k.startswith("role:")}
        with self._lock:
            if len(self._keys) >= MAX_CACHE:
                self._keys.clear()
            self._keys[memo] = expanded
        return expanded

    # --- index -----------------------------------------------------------------------------
    def _slot(self, dataset: str, action: str) -> dict[str, tuple[int, ...]]:
        """subject key → indices of the rules that target (dataset, action), every pattern."""
        slot = self._slots.get((dataset, action))
        if slot is not None:
            return slot
        merged: dict[str, set[int]] = {}
        for pat in _pattern_keys(dataset):
            for act in (action, "*"):
                for key, idx in self._table.get((pat, act), {}).items():
                    merged.setdefault(key, set()).update(idx)
        slot = {k: tuple(sorted(v)) for k, v in merged.items()}
        with self._lock:
            if len(self._slots) >= MAX_CACHE:
                self._slots.clear()
            self._slots[(dataset, action)] = slot
        return slot

    def candidates(self, keys: frozenset[str], dataset: str, action: str
                   ) -> tuple[CompiledRule, ...]:
        """Rules whose subject, dataset and action match: denies first, each in bundle order."""
        memo = (keys, dataset, action)
        found = self._candidates.get(memo)
        if found is not None:
            return found
        slot = self._slot(dataset, action)
        picked: set[int] = set(slot.get("*", ()))
        for key in keys:
            found_idx = slot.get(key)
            if found_idx:
                picked.update(found_idx)
        rules = [self.rules[i] for i in sorted(picked)]
        found = tuple([c for c in rules if c.deny] + [c for c in rules if not c.deny])
        with self._lock:
            if len(self._candidates) >= MAX_CACHE:
                self._candidates.clear()
            self._candidates[memo] = found
        return found

    # --- decisions -------------------------------------------------------------------------
    def _plan(self, memo: tuple[Any, ...], subject: Subject, raw: str, action: str
              ) -> tuple[tuple[CompiledRule, ...], Decision]:
        """The candidate rules for this subject, dataset and action, and the default deny."""
        dataset = canonical_dataset(raw)
        if dataset is None:
            plan: tuple[tuple[CompiledRule, ...], Decision] = (
                (), self._deny(f"{raw!r} is not a dataset id (denied)"))
        else:
            default = self._defaults.get((dataset, action))
            if default is None:  # shared by every subject: one object per dataset and action
                default = self._deny(f"no rule allows {action} on {dataset} (default deny)")
                self._defaults[(dataset, action)] = default
            plan = (self.candidates(self.subject_keys(subject), dataset, action), default)
        with self._lock:
            if len(self._plans) >= MAX_CACHE:
                self._plans.clear()
                self._defaults.clear()
            self._plans[memo] = plan
        return plan

    def decide(
        self, subject: Subject, resource: Resource, action: Action | str, env: Environment
    ) -> Decision:
        memo = (subject.id, subject.client_id, subject.roles, subject.department,
                resource.dataset, action)
        plan = self._plans.get(memo)
        if plan is None:
            plan = self._plan(memo, subject, resource.dataset, action)
        candidates, default = plan
        allows: list[CompiledRule] | None = None
        for c in candidates:
            if c.check is not None and not c.check(subject, resource, env):
                continue
            if c.deny:
                return self._deny_decisions[c.index]
            if c.templated and not self._template_holds(c, subject):
                continue
            if allows is None:
                allows = [c]
            else:
                allows.append(c)
        if allows is None:
            return default
        if len(allows) == 1:
            key: tuple[int, ...] = (allows[0].index,)
        else:
            key = tuple([c.index for c in allows])
        found = self._allow_decisions.get(key)
        if found is None:  # templated (per-request) obligations are never memoised
            if any(c.templated for c in allows):
                return self._allow_resolved(allows, subject, resource, env)
            found = self._allow(allows, merge_obligations(o for c in allows for o in c.rule.obligations))
            with self._lock:
                if len(self._allow_decisions) >= MAX_CACHE:
                    self._allow_decisions.clear()
                self._allow_decisions[key] = found
        return found

    def _deny(self, reason: str) -> Decision:
        return Decision(effect="deny", reason=reason, ruleset=self.bundle.name,
                        ruleset_version=self.bundle.version)

    def _allow(self, allows: list[CompiledRule], obligations: tuple[Obligation, ...]) -> Decision:
        first = allows[0].rule.id
        return Decision(effect="allow", reason=f"allowed by rule {first}", rule_id=first,
                        ruleset=self.bundle.name, ruleset_version=self.bundle.version,
                        obligations=obligations, matched_rules=tuple(c.rule.id for c in allows))

    @staticmethod
    def _template_holds(c: CompiledRule, subject: Subject) -> bool:
        """A row filter on a subject attribute the subject lacks makes the rule not apply."""
        for ob in c.rule.obligations:
            if ob.type == ROW_FILTER and "equals_subject" in ob.params:
                value = _subject_value(subject, str(ob.params["equals_subject"]))
                if not value:
                    return False
            elif ob.type == GRANT:
                if not isinstance(subject.attributes.get(GRANT_ATTRIBUTE), GrantScope):
                    return False
            elif ob.type == CONSENT and not isinstance(
                    subject.attributes.get(CONSENT_ATTRIBUTE), ConsentScope):
                return False
        return True

    def _allow_resolved(self, allows: list[CompiledRule], subject: Subject, resource: Resource,
                        env: Environment) -> Decision:
        key: tuple[Any, ...] | None = None
        if all(not c.templated or c.index in self._entitlement_only for c in allows):
            attrs = subject.attributes
            key = (tuple([c.index for c in allows]), attrs.get(GRANT_ATTRIBUTE),
                   attrs.get(CONSENT_ATTRIBUTE))
            found = self._resolved.get(key)
            if found is not None:
                return found
        decision = self._resolve_allows(allows, subject, resource, env)
        if key is not None:
            with self._lock:
                if len(self._resolved) >= MAX_CACHE:
                    self._resolved.clear()
                self._resolved[key] = decision
        return decision

    def _resolve_allows(self, allows: list[CompiledRule], subject: Subject, resource: Resource,
                        env: Environment) -> Decision:
        obs: list[Obligation] = []
        for c in allows:
            for ob in c.rule.obligations:
                if ob.type in (GRANT, CONSENT):
                    obs.extend(_entitlement(ob, subject))
                    continue
                resolved = _resolve(ob, subject, resource, env)
                if resolved is not None:
                    obs.append(resolved)
        return self._allow(allows, merge_obligations(obs))

    # --- explanations and queries ----------------------------------------------------------
    def explain(self, subject: Subject, resource: Resource, action: Action | str,
                env: Environment) -> Explanation:
        """The decision with every rule that targets the dataset and action, and why it did or
        did not apply (subject not matched, or which conditions failed)."""
        decision = self.decide(subject, resource, action, env)
        dataset = canonical_dataset(resource.dataset)
        keys = self.subject_keys(subject)
        traces: list[RuleTrace] = []
        if dataset is not None:
            slot = self._slot(dataset, action)
            targeted = sorted({i for idx in slot.values() for i in idx})
            for i in targeted:
                c = self.rules[i]
                matched = "*" in c.rule.subjects or not keys.isdisjoint(c.rule.subjects)
                failed = [k.describe for k in c.rule.conditions
                          if not k.test(subject, resource, env)]
                if not c.deny and c.templated and not self._template_holds(c, subject):
                    failed.append("subject has the attribute its row filter needs")
                traces.append(RuleTrace(c.rule.id, c.rule.effect, matched, tuple(failed),
                                        matched and not failed, c.rule.description))
        return Explanation(decision, tuple(sorted(keys)), dataset, tuple(traces))

    def accessible(self, subject: Subject, datasets: Iterable[Resource], action: str,
                   env: Environment) -> list[tuple[Resource, Decision]]:
        """What can this subject do: the decision for each catalogued dataset it may access."""
        out = []
        for res in datasets:
            d = self.decide(subject, res, action, env)
            if d.allowed:
                out.append((res, d))
        return out

    def subjects_for(self, dataset: str, action: str) -> list[dict[str, Any]]:
        """Who may do ``action`` on ``dataset``: each allow rule's subjects (with the members of
        its roles through the hierarchy), its conditions, and the deny rules that could veto."""
        canon = canonical_dataset(dataset)
        if canon is None:
            return []
        slot = self._slot(canon, action)
        targeted = [self.rules[i] for i in sorted({i for idx in slot.values() for i in idx})]
        denies = [c.rule.id for c in targeted if c.deny]
        out = []
        for c in targeted:
            if c.deny:
                continue
            for sub in c.rule.subjects:
                members = sorted(self._members(sub)) if sub.startswith("role:") else []
                out.append({"subject": sub, "via_members": members, "rule_id": c.rule.id,
                            "conditions": [k.describe for k in c.rule.conditions],
                            "obligations": [o.type for o in c.rule.obligations],
                            "unless_denied_by": denies})
        return out

    def principals_for(self, dataset: str, action: str, principals: Iterable[Subject]
                       ) -> list[dict[str, Any]]:
        """Which of these known principals (e.g. the directory's) may act on the dataset: the
        first allow rule whose subjects match each, its conditions (evaluated per request), and
        the deny rules that match it (unconditional ones exclude it)."""
        canon = canonical_dataset(dataset)
        if canon is None:
            return []
        out = []
        for p in principals:
            cands = self.candidates(self.subject_keys(p), canon, action)
            allows = [c for c in cands if not c.deny]
            if not allows:
                continue
            denies = [c for c in cands if c.deny]
            if any(not c.rule.conditions for c in denies):
                continue
            out.append({"subject": p.id, "rule_id": allows[0].rule.id,
                        "conditions": [k.describe for k in allows[0].rule.conditions],
                        "other_rules": [c.rule.id for c in allows[1:]],
                        "unless_denied_by": [c.rule.id for c in denies]})
        return out

    def _members(self, role: str) -> set[str]:
        out: set[str] = set()
        frontier = [role]
        for _ in range(ROLE_DEPTH):
            nxt = []
            for r in frontier:
                for dom in self._domains():
                    for m in self._children.get((r, dom), ()):
                        if m not in out:
                            out.add(m)
                            nxt.append(m)
            if not nxt:
                break
            frontier = nxt
        return out

    def _domains(self) -> set[str]:
        return {link[2] if len(link) > 2 else GLOBAL_DOMAIN for link in self.bundle.role_links}


def _subject_value(subject: Subject, attr: str) -> str | None:
    if attr == "department":
        value: Any = subject.department
    elif attr in ("id", "name", "client_id"):
        value = getattr(subject, attr)
    else:
        value = subject.attributes.get(attr)
    if value is None or isinstance(value, Mapping | list | tuple | set):
        return None
    text = nfkc(value)
    return text or None


def _entitlement(ob: Obligation, subject: Subject) -> list[Obligation]:
    """``grant`` / ``consent`` as the enforceable obligations they stand for (fail closed: a
    missing scope becomes a row filter that matches nothing)."""
    if ob.type == GRANT:
        g = subject.attributes.get(GRANT_ATTRIBUTE)
        if not isinstance(g, GrantScope):
            return [Obligation(PROJECT, {"fields": []}, ob.rule_id)]
        out = [Obligation(PROJECT, {"fields": sorted(g.fields)}, ob.rule_id)]
        if g.row_field:
            out.append(Obligation(ROW_FILTER, {"field": g.row_field, "in": sorted(g.row_values)},
                                  ob.rule_id))
        if g.rows_per_day:
            out.append(Obligation(MAX_ROWS, {"limit": g.rows_per_day, "per": "day"}, ob.rule_id))
        if g.rows_per_request:
            out.append(Obligation(MAX_ROWS, {"limit": g.rows_per_request, "per": "response"},
                                  ob.rule_id))
        return out
    c = subject.attributes.get(CONSENT_ATTRIBUTE)
    if not isinstance(c, ConsentScope):
        return [Obligation(ROW_FILTER, {"field": "id", "in": []}, ob.rule_id)]
    return [Obligation(ROW_FILTER, {"field": c.field, "in": sorted(c.values)}, ob.rule_id)]


def _resolve(ob: Obligation, subject: Subject, resource: Resource,
             env: Environment) -> Obligation | None:
    if ob.type == ROW_FILTER and "equals_subject" in ob.params:
        value = _subject_value(subject, str(ob.params["equals_subject"]))
        return Obligation(ROW_FILTER, {"field": ob.params["field"], "in": [value or ""]}, ob.rule_id)
    if ob.type == MASK and "above_clearance" in ob.params:
        fields = dict(ob.params.get("fields", {}))
        strategy = ob.params["above_clearance"]
        for name, level in resource.fields.items():
            if Classification.parse(level) > subject.clearance:
                fields[name] = {"strategy": strategy}
        return Obligation(MASK, {"fields": fields}, ob.rule_id) if fields else None
    if ob.type == STEP_UP:
        return None if env.acr is not None and env.acr in ob.params["acr_values"] else ob
    return ob


def casbin_role_rows(bundle: PolicyBundle) -> Iterable[list[str]]:
    """The role hierarchy as casbin ``g`` rows: member, role, department domain (``*``)."""
    for link in bundle.role_links:
        yield [link[0], link[1], link[2] if len(link) > 2 else GLOBAL_DOMAIN]


def casbin_policy_rows(bundle: PolicyBundle) -> Iterable[list[str]]:
    """The bundle as casbin ``p`` rows: sub, obj, act, eft, rid (``.*`` globs → keyMatch)."""
    for rule in bundle.rules:
        for sub in rule.subjects:
            for ds in rule.datasets:
                for act in rule.actions:
                    yield [sub, ds, act, rule.effect, rule.id]


def casbin_export(bundle: PolicyBundle) -> tuple[str, str, list[str]]:
    """The bundle as casbin files (``model.conf``, ``policy.csv``) for casbin tooling and
    adapters.  Plain casbin rows cannot carry conditions or obligations, so the export is the
    fail-closed projection: a conditional allow rule is left out (listed in the third value), a
    conditional deny rule is kept unconditionally."""
    lines, omitted = [], []
    for rule in bundle.rules:
        if rule.conditions and rule.effect == "allow":
            omitted.append(rule.id)
            continue
        for sub in rule.subjects:
            for ds in rule.datasets:
                for act in rule.actions:
                    lines.append(f"p, {sub}, {ds}, {act}, {rule.effect}, {rule.id}")
    for member, role, dom in casbin_role_rows(bundle):
        if "," in dom or dom != dom.strip():
            raise ValueError(f"department {dom!r} cannot be written as a casbin CSV field")
        lines.append(f"g, {member}, {role}, {dom}")
    return CASBIN_MODEL.strip() + "\n", "\n".join(lines) + "\n", omitted


class PolicyEngine:
    """The policy decision point: holds the active compiled policy and swaps it atomically.

    A candidate (shadow) policy may run next to the active one: it is decided on the same
    inputs and every difference goes to ``on_divergence``; its answer is never enforced.
    """

    def __init__(self, policy: CompiledPolicy) -> None:
        self._policy = policy
        self._shadow: CompiledPolicy | None = None
        self._on_divergence: Any = None

    @property
    def policy(self) -> CompiledPolicy:
        return self._policy

    @property
    def shadow(self) -> CompiledPolicy | None:
        return self._shadow

    def swap(self, policy: CompiledPolicy) -> None:
        """Replace the active policy; requests in flight finish on the one they started with."""
        self._policy = policy

    def set_shadow(self, policy: CompiledPolicy | None, on_divergence: Any = None) -> None:
        """Run ``policy`` in shadow; ``on_divergence(subject, resource, action, active, shadow)``."""
        self._on_divergence = on_divergence
        self._shadow = policy

    def decide(
        self, subject: Subject, resource: Resource, action: Action | str, env: Environment
    ) -> Decision:
        decision = self._policy.decide(subject, resource, action, env)
        shadow = self._shadow
        if shadow is not None:
            try:
                candidate = shadow.decide(subject, resource, action, env)
                if differs(decision, candidate) and self._on_divergence is not None:
                    self._on_divergence(subject, resource, action, decision, candidate)
            except Exception:  # noqa: S110 - a broken shadow must never affect live traffic
                pass
        return decision


def differs(a: Decision, b: Decision) -> bool:
    """Whether two decisions would be enforced differently (effect, deciding rule, obligations)."""
    if a.effect != b.effect:
        return True
    return a.effect == "allow" and (a.rule_id != b.rule_id or _obs(a) != _obs(b))


def _obs(d: Decision) -> list[Any]:
    return sorted(repr((o.type, _plain(o.params))) for o in d.obligations)


__all__ = [
    "CASBIN_MODEL",
    "CompiledPolicy",
    "Explanation",
    "Obligation",
    "PolicyEngine",
    "RuleTrace",
    "casbin_export",
    "casbin_policy_rows",
    "casbin_role_rows",
    "decision_dict",
    "differs",
]
