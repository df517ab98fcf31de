"""The decision engine: bundles compiled once to a casbin model + an index of closures.

Casbin holds the canonical form of the policy (``p`` rows per subject/dataset/action and
``g`` rows for the role hierarchy, see :data:`CASBIN_MODEL`); its role manager resolves role
inheritance.  Requests are decided from an index keyed by (dataset, action) whose entries are
precompiled predicates, so a decision costs a few dict look-ups and set intersections rather
than a scan of every row.  ``tests/policies`` checks that the index and casbin's own
``Enforcer`` agree on every decision.

Semantics: default deny; deny overrides allow; obligations of every matching allow rule are
merged (the stricter mask wins on a field).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import time as dtime
from functools import lru_cache
from zoneinfo import ZoneInfo

import casbin

from .bundle import PolicyBundle, Rule
from .domain import Action, Classification, Decision, Environment, Obligation, Resource, Subject
from .obligations import merge_obligations

CASBIN_MODEL = """
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act, eft, rid

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = (p.sub == "*" || g(r.sub, p.sub)) && keyMatch(r.obj, p.obj) && (p.act == "*" || r.act == p.act)
"""

LOCAL_TZ = ZoneInfo("Asia/Shanghai")  # time windows in rules are Beijing time
Predicate = Callable[[Subject, Resource, Environment], bool]


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: Rule
    subjects: frozenset[str]
    any_subject: bool
    condition: Predicate | None


def _compile_condition(rule: Rule) -> Predicate | None:
    checks: list[Predicate] = []
    when = rule.when
    if "clearance_at_least" in when:
        level = Classification.parse(when["clearance_at_least"])
        checks.append(lambda s, r, e, level=level: s.clearance >= level)
    if "zones" in when:
        zones = frozenset(str(z) for z in when["zones"])
        checks.append(lambda s, r, e, zones=zones: e.zone in zones)
    if "acr_in" in when:
        acrs = frozenset(str(a) for a in when["acr_in"])
        checks.append(lambda s, r, e, acrs=acrs: e.acr in acrs)
    if "max_risk" in when:
        limit = int(when["max_risk"])
        checks.append(lambda s, r, e, limit=limit: e.risk_score <= limit)
    if "hours" in when:
        start_s, _, end_s = str(when["hours"]).partition("-")
        start, end = dtime.fromisoformat(start_s.strip()), dtime.fromisoformat(end_s.strip())

        def in_window(s: Subject, r: Resource, e: Environment) -> bool:
            now = e.time.astimezone(LOCAL_TZ).time()
            return start <= now < end if start <= end else (now >= start or now < end)

        checks.append(in_window)
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    return lambda s, r, e: all(c(s, r, e) for c in checks)


def _dataset_matches(dataset: str, pattern: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return dataset.startswith(pattern[:-1])
    return dataset == pattern


class CompiledPolicy:
    """One bundle, compiled.  Immutable after construction; safe to share across threads."""

    def __init__(self, bundle: PolicyBundle) -> None:
        self.bundle = bundle
        self._rules = tuple(
            _Compiled(
                rule=r,
                subjects=frozenset(s for s in r.subjects if s != "*"),
                any_subject="*" in r.subjects,
                condition=_compile_condition(r),
            )
            for r in bundle.rules
        )
        self._enforcer = self._build_enforcer(bundle, with_rules=False)
        self._index_lock = threading.Lock()
        self._index: dict[tuple[str, str], tuple[_Compiled, ...]] = {}
        self._expand = lru_cache(maxsize=65536)(self._expand_uncached)

    @staticmethod
    def _build_enforcer(bundle: PolicyBundle, *, with_rules: bool) -> casbin.Enforcer:
        model = casbin.model.Model()
        model.load_model_from_text(CASBIN_MODEL)
        enforcer = casbin.Enforcer(model)
        if bundle.role_links:
            enforcer.add_grouping_policies([list(link) for link in bundle.role_links])
        if with_rules:
            enforcer.add_policies(list(casbin_policy_rows(bundle)))
        return enforcer

    def casbin_enforcer(self) -> casbin.Enforcer:
        """A full casbin Enforcer over the compiled rows (conditions are not expressible)."""
        return self._build_enforcer(self.bundle, with_rules=True)

    def _expand_uncached(self, keys: frozenset[str]) -> frozenset[str]:
        out = set(keys)
        for key in keys:
            out.update(self._enforcer.get_implicit_roles_for_user(key))
        return frozenset(out)

    def _candidates(self, dataset: str, action: str) -> tuple[_Compiled, ...]:
        key = (dataset, action)
        found = self._index.get(key)
        if found is None:
            found = tuple(
                c
                for c in self._rules
                if ("*" in c.rule.actions or action in c.rule.actions)
                and any(_dataset_matches(dataset, p) for p in c.rule.datasets)
            )
            with self._index_lock:
                if len(self._index) < 100_000:  # datasets are a catalogue, but bound it anyway
                    self._index[key] = found
        return found

    def subject_keys(self, subject: Subject) -> frozenset[str]:
        keys = {subject.id, f"client:{subject.client_id}"}
        keys.update(f"role:{r}" for r in subject.roles)
        if subject.department:
            keys.add(f"dept:{subject.department}")
        return self._expand(frozenset(keys))

    def decide(
        self, subject: Subject, resource: Resource, action: Action | str, env: Environment
    ) -> Decision:
        keys = self.subject_keys(subject)
        allows: list[Rule] = []
        for c in self._candidates(resource.dataset, action):
            if not (c.any_subject or not c.subjects.isdisjoint(keys)):
                continue
            if c.condition is not None and not c.condition(subject, resource, env):
                continue
            if c.rule.effect == "deny":
                return Decision(
                    effect="deny",
                    reason=f"denied by rule {c.rule.id}",
                    rule_id=c.rule.id,
                    ruleset=self.bundle.name,
                    ruleset_version=self.bundle.version,
                    matched_rules=(c.rule.id,),
                )
            allows.append(c.rule)
        if not allows:
            return Decision(
                effect="deny",
                reason=f"no rule allows {action} on {resource.dataset} (default deny)",
                ruleset=self.bundle.name,
                ruleset_version=self.bundle.version,
            )
        obligations = merge_obligations(o for r in allows for o in r.obligations)
        return Decision(
            effect="allow",
            reason=f"allowed by rule {allows[0].id}",
            rule_id=allows[0].id,
            ruleset=self.bundle.name,
            ruleset_version=self.bundle.version,
            obligations=obligations,
            matched_rules=tuple(r.id for r in allows),
        )


def casbin_policy_rows(bundle: PolicyBundle) -> Iterable[list[str]]:
    """The bundle as casbin ``p`` rows: sub, obj, act, eft, rid (``.*`` globs → keyMatch)."""
    for rule in bundle.rules:
        for sub in rule.subjects:
            for ds in rule.datasets:
                for act in rule.actions:
                    yield [sub, ds, act, rule.effect, rule.id]


class PolicyEngine:
    """The policy decision point: holds the active compiled policy and swaps it atomically."""

    def __init__(self, policy: CompiledPolicy) -> None:
        self._policy = policy

    @property
    def policy(self) -> CompiledPolicy:
        return self._policy

    def swap(self, policy: CompiledPolicy) -> None:
        """Replace the active policy; requests in flight finish on the one they started with."""
        self._policy = policy

    def decide(
        self, subject: Subject, resource: Resource, action: Action | str, env: Environment
    ) -> Decision:
        return self._policy.decide(subject, resource, action, env)


__all__ = [
    "CASBIN_MODEL",
    "CompiledPolicy",
    "Obligation",
    "PolicyEngine",
    "casbin_policy_rows",
]
