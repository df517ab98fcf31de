"""Sigma rules over ztgw's ECS audit events: evaluated in-process, converted for Kibana.

pySigma parses each rule and resolves its ``condition`` into a tree of AND/OR/NOT over
``field = value`` leaves; :func:`compile_rule` turns that tree into one Python closure over
an event dict, so the in-process engine and Elasticsearch (via pySigma's Lucene backend,
:func:`to_elasticsearch`) read the very same rule text.

Matching follows the Sigma specification: strings compare case-insensitively, ``*``/``?``
are wildcards, ``|re`` is a regular expression (``|re|i`` case-insensitive), numbers compare
exactly, ``null`` matches a missing field, and a list-valued ECS field matches when any of
its elements does.  Rules live in ``scanners/rules/*.yaml``, ``logsource: {product: ztgw,
service: access|auth|iam}`` selects the ``event.dataset`` they read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule
from sigma.types import (
    SigmaBool,
    SigmaCIDRExpression,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

from .errors import RuleError

Event = dict[str, Any]
Matcher = Callable[[Event], bool]

# Sigma levels → ECS event.severity (1–4 scale kept by ztgw) and a risk score
LEVELS: dict[str, tuple[int, float]] = {
    "informational": (1, 10.0), "low": (1, 21.0), "medium": (2, 47.0),
    "high": (3, 73.0), "critical": (4, 99.0),
}
# logsource service → the event.dataset the rule reads (a rule without one reads every event)
SERVICES: dict[str, str] = {
    "access": "ztgw.access", "auth": "ztgw.auth", "iam": "ztgw.iam", "admin": "ztgw.admin",
}
_MISSING = object()


def get_field(event: Event, dotted: str) -> Any:
    """ECS dotted field from nested objects (``url.path``), or from a flat key."""
    if dotted in event:
        return event[dotted]
    cur: Any = event
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return _MISSING
        cur = cur[part]
    return cur


def _string_matcher(value: SigmaString) -> Callable[[str], bool]:
    """Case-insensitive comparison of one Sigma string (with wildcards) to a text value."""
    parts = value.s
    plain = [p for p in parts if isinstance(p, str)]
    specials = [p for p in parts if not isinstance(p, str)]
    text = "".join(plain).casefold()
    if not specials:
        return lambda v: v.casefold() == text
    if all(p is SpecialChars.WILDCARD_MULTI for p in specials) and len(plain) == 1:
        lead = parts[0] is SpecialChars.WILDCARD_MULTI
        trail = parts[-1] is SpecialChars.WILDCARD_MULTI
        if lead and trail and len(parts) == 3:
            return lambda v: text in v.casefold()
        if lead and len(parts) == 2:
            return lambda v: v.casefold().endswith(text)
        if trail and len(parts) == 2:
            return lambda v: v.casefold().startswith(text)
    pattern = "".join(
        re.escape(p) if isinstance(p, str)
        else ".*" if p is SpecialChars.WILDCARD_MULTI else "."
        for p in parts)
    rx = re.compile(pattern, re.IGNORECASE | re.DOTALL)
    return lambda v: rx.fullmatch(v) is not None


def _value_matcher(value: Any) -> Callable[[Any], bool]:
    """One Sigma value against one (scalar) event value."""
    if isinstance(value, SigmaString):
        match = _string_matcher(value)
        return lambda v: isinstance(v, str | int | float) and not isinstance(v, bool) and match(str(v))
    if isinstance(value, SigmaRegularExpression):
        flags = 0
        for flag in value.flags:
            flags |= value.sigma_to_python_flags[flag]
        rx = re.compile(str(value.regexp), flags)
        return lambda v: isinstance(v, str | int | float) and rx.search(str(v)) is not None
    if isinstance(value, SigmaBool):
        b = value.boolean
        return lambda v: v is b
    if isinstance(value, SigmaNumber):
        n = value.number
        return lambda v: (isinstance(v, int | float) and not isinstance(v, bool) and v == n) or (
            isinstance(v, str) and v == str(n))
    if isinstance(value, SigmaCIDRExpression):
        import ipaddress

        net = ipaddress.ip_network(value.cidr, strict=False)

        def in_net(v: Any) -> bool:
            try:
                return isinstance(v, str) and ipaddress.ip_address(v) in net
            except ValueError:
                return False
        return in_net
    raise RuleError(f"unsupported Sigma value type {type(value).__name__}")


def _leaf(node: ConditionFieldEqualsValueExpression) -> Matcher:
    fname = node.field
    if isinstance(node.value, SigmaNull):
        return lambda ev: get_field(ev, fname) in (_MISSING, None)
    match = _value_matcher(node.value)

    def leaf(ev: Event) -> bool:
        v = get_field(ev, fname)
        if v is _MISSING or v is None:
            return False
        if isinstance(v, list):
            return any(match(x) for x in v)
        return match(v)
    return leaf


def _keyword(node: ConditionValueExpression) -> Matcher:
    """A field-less Sigma value: searched in the event's message and URL path."""
    match = _value_matcher(node.value)
    return lambda ev: any(
        (v := get_field(ev, f)) is not _MISSING and v is not None and match(v)
        for f in ("message", "url.path", "url.original", "user_agent.original"))


def _fragment(value: SigmaString) -> tuple[str, bool]:
    """A Sigma string as a regex fragment, and whether it is a plain "contains"."""
    parts = value.s
    if (len(parts) == 3 and parts[0] is SpecialChars.WILDCARD_MULTI
            and parts[2] is SpecialChars.WILDCARD_MULTI and isinstance(parts[1], str)):
        return re.escape(parts[1]), True
    body = "".join(
        re.escape(p) if isinstance(p, str)
        else ".*" if p is SpecialChars.WILDCARD_MULTI else "."
        for p in parts)
    return f"^(?:{body})$", False


def _merged(field_name: str, leaves: list[ConditionFieldEqualsValueExpression]) -> Matcher | None:
    """Many string/regex values of one field OR-ed together → one compiled regex search
    (the usual shape of a Sigma rule: a field with a list of ``|contains`` values)."""
    frags: list[str] = []
    flags: int | None = None
    for leaf in leaves:
        v = leaf.value
        if isinstance(v, SigmaString):
            frag, _ = _fragment(v)
            f = re.IGNORECASE | re.DOTALL
        elif isinstance(v, SigmaRegularExpression):
            frag = str(v.regexp)
            f = 0
            for flag in v.flags:
                f |= v.sigma_to_python_flags[flag]
        else:
            return None
        if flags is not None and f != flags:
            return None
        flags = f
        frags.append(f"(?:{frag})")
    try:
        rx = re.compile("|".join(frags), flags or 0)
    except re.error:
        return None
    parts = tuple(field_name.split("."))
    search = rx.search

    def match(ev: Event) -> bool:
        v: Any = ev
        for p in parts:
            if not isinstance(v, dict):
                return False
            v = v.get(p)
            if v is None:
                return False
        if isinstance(v, str):
            return search(v) is not None
        if isinstance(v, list):
            return any(isinstance(x, str) and search(x) is not None for x in v)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return search(str(v)) is not None
        return False
    return match


Prefilter = list[tuple[str, str, int]]  # (field, regex fragment, flags): one must match


def _prefilter(node: Any) -> Prefilter | None:
    """A necessary condition of ``node`` as (field, regex) alternatives, or None when none
    can be derived (NOT, numbers, null …).  Lets the engine skip a rule with one combined
    regex search per field when no rule can match the event (the usual, benign case)."""
    if isinstance(node, ConditionOR):
        out: Prefilter = []
        for a in node.args:
            sub = _prefilter(a)
            if sub is None:
                return None
            out += sub
        return out
    if isinstance(node, ConditionAND):
        for a in node.args:
            sub = _prefilter(a)
            if sub is not None:
                return sub
        return None
    if isinstance(node, ConditionFieldEqualsValueExpression):
        v = node.value
        if isinstance(v, SigmaString):
            frag, contains = _fragment(v)
            if contains:  # a plain substring: checked with `in`, no regex
                return [(node.field, "\0lit" + str(v.s[1]).casefold(), -1)]
            return [(node.field, frag, re.IGNORECASE | re.DOTALL)]
        if isinstance(v, SigmaRegularExpression):
            f = 0
            for flag in v.flags:
                f |= v.sigma_to_python_flags[flag]
            return [(node.field, str(v.regexp), f)]
    return None


def _compile(node: Any) -> Matcher:
    if isinstance(node, ConditionAND):
        subs = [_compile(a) for a in node.args]
        return lambda ev: all(s(ev) for s in subs)
    if isinstance(node, ConditionOR):
        by_field: dict[str, list[ConditionFieldEqualsValueExpression]] = {}
        rest: list[Any] = []
        for a in node.args:
            if isinstance(a, ConditionFieldEqualsValueExpression) and isinstance(
                    a.value, SigmaString | SigmaRegularExpression):
                by_field.setdefault(a.field, []).append(a)
            else:
                rest.append(a)
        subs: list[Matcher] = []
        for fname, leaves in by_field.items():
            merged = _merged(fname, leaves) if len(leaves) > 1 else None
            if merged is None:
                rest.extend(leaves)
            else:
                subs.append(merged)
        subs += [_compile(a) for a in rest]
        if len(subs) == 1:
            return subs[0]
        return lambda ev: any(s(ev) for s in subs)
    if isinstance(node, ConditionNOT):
        sub = _compile(node.args[0])
        return lambda ev: not sub(ev)
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return _leaf(node)
    if isinstance(node, ConditionValueExpression):
        return _keyword(node)
    raise RuleError(f"unsupported Sigma condition element {type(node).__name__}")


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A Sigma rule ready to run: identity and metadata for alerts, one matcher."""

    id: str
    title: str
    level: str
    severity: int
    risk_score: float
    dataset: str | None
    tags: tuple[str, ...]
    description: str
    matcher: Matcher = field(repr=False)
    group_by: str = "source.ip"
    prefilter: Prefilter | None = field(default=None, repr=False)

    def matches(self, event: Event) -> bool:
        ds = self.dataset
        if ds is not None:
            ev = event.get("event")
            if not isinstance(ev, dict) or ev.get("dataset") != ds:
                return False
        return self.matcher(event)


def compile_rule(rule: SigmaRule) -> CompiledRule:
    try:
        trees = [c.parse() for c in rule.detection.parsed_condition]
    except SigmaError as exc:
        raise RuleError(f"rule {rule.title!r}: {exc}") from exc
    subs = [_compile(t) for t in trees]
    pre: Prefilter | None = []
    for t in trees:
        p = _prefilter(t)
        pre = None if p is None or pre is None else pre + p
    matcher: Matcher = subs[0] if len(subs) == 1 else (lambda ev: any(s(ev) for s in subs))
    level = rule.level.name.lower() if rule.level is not None else "medium"
    severity, risk = LEVELS.get(level, (2, 47.0))
    service = rule.logsource.service
    group_by = str(rule.custom_attributes.get("ztgw_group_by", "source.ip"))
    return CompiledRule(
        id=str(rule.id) if rule.id else rule.title, title=rule.title, level=level,
        severity=severity, risk_score=risk,
        dataset=SERVICES.get(service, f"ztgw.{service}") if service else None,
        tags=tuple(str(t) for t in rule.tags), description=rule.description or "",
        matcher=matcher, group_by=group_by, prefilter=pre or None,
    )


MEMO_SIZE = 8192  # per prefilter check: field values repeat (user agents, list routes)


def _memoised(check: Callable[[str], bool]) -> Callable[[str], bool]:
    memo: dict[str, bool] = {}

    def cached(text: str) -> bool:
        hit = memo.get(text)
        if hit is None:
            if len(memo) >= MEMO_SIZE:
                memo.clear()
            hit = memo[text] = check(text)
        return hit
    return cached


def _checker(frags: list[str], flags: int) -> Callable[[str], bool]:
    """Substrings (one alternation over the case-folded text) or regular expressions, each
    searched on its own (an alternation of regexes with ``.*`` parts backtracks badly)."""
    if flags == -1:
        # one case-sensitive alternation over the case-folded text: the engine's first-char
        # set skips most positions (an IGNORECASE alternation cannot)
        search = re.compile("|".join(re.escape(f[4:]) for f in dict.fromkeys(frags))).search
        return lambda text: search(text.casefold()) is not None
    gated = [(required_literals(f, flags), re.compile(f, flags).search) for f in dict.fromkeys(frags)]
    fold = bool(flags & re.IGNORECASE)

    def any_regex(text: str) -> bool:
        low = text.casefold() if fold else text
        for need, search in gated:
            # the regex cannot match unless one of its required substrings is present
            if need is not None and not any(lit in low for lit in need):
                continue
            if search(text) is not None:
                return True
        return False
    return any_regex


_SPACE = "\0space"  # a whitespace class in a required set (gate mode only)
# characters an ordinary data-API path is made of; a literal with any other ASCII character
# is "special": text that contains it contains a character outside this set
_ORDINARY = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_-")
_SPECIAL_CHAR = re.compile(r"[^a-zA-Z0-9/_\-]").search


def _special(lit: str) -> bool:
    """Whether ``lit`` contains an ASCII character outside :data:`_ORDINARY` (ASCII
    punctuation has no case variants, so this survives case-insensitive matching)."""
    return lit == _SPACE or any(c < "\x80" and c not in _ORDINARY for c in lit)


def _required(items: Any, gate: bool = False) -> frozenset[str] | None:
    """Substrings one of which every match of the parsed sequence ``items`` contains (the
    most selective such set), or None when none can be proven.  In ``gate`` mode sets of
    "special" substrings are preferred (and a whitespace class counts as one)."""
    from re import _constants as k

    best: frozenset[str] | None = None
    run = ""

    def score(cand: frozenset[str]) -> tuple[bool, int]:
        return (gate and all(map(_special, cand)), min(map(len, cand)))

    def consider(cand: frozenset[str] | None) -> None:
        nonlocal best
        if cand and (best is None or score(cand) > score(best)):
            best = cand

    for op, av in [*list(items), (None, None)]:
        if op is k.LITERAL:
            run += chr(av)
            continue
        if run:
            consider(frozenset({run}))
            run = ""
        if op is k.SUBPATTERN:
            consider(_required(av[3], gate))
        elif op is k.BRANCH:
            alts = [_required(a, gate) for a in av[1]]
            if all(a is not None for a in alts):
                consider(frozenset().union(*alts))  # type: ignore[arg-type]
        elif op in (k.MAX_REPEAT, k.MIN_REPEAT) and av[0] >= 1:
            consider(_required(av[2], gate))
        elif op is k.IN and gate:
            chars: set[str] = set()
            for iop, iav in av:
                if iop is k.LITERAL:
                    chars.add(chr(iav))
                elif iop is k.CATEGORY and iav is k.CATEGORY_SPACE:
                    chars.add(_SPACE)
                else:
                    chars.clear()
                    break
            consider(frozenset(chars) or None)
    return best


def required_literals(pattern: str, flags: int, gate: bool = False) -> frozenset[str] | None:
    """A cheap gate for a regex: substrings (case-folded when the regex ignores case) one of
    which any match must contain; None when it cannot be derived.  ``gate=True`` prefers
    sets of special substrings (see :class:`RuleSet`); a whitespace class is then ``\\0space``."""
    from re import _parser

    try:
        need = _required(_parser.parse(pattern, flags).data, gate)
    except Exception:  # an unusual pattern: no gate, the regex always runs
        return None
    if need is None:
        return None
    return frozenset(n.casefold() for n in need) if flags & re.IGNORECASE else need


MAX_GATE_WORDS = 12


def _field_gate(groups: list[tuple[list[str], int]]) -> Callable[[str], bool] | None:
    """One cheap necessary condition for every prefilter check of one field: the text has a
    character outside ``[A-Za-z0-9/_-]`` (one C-level scan) or contains one of the few
    required literals made only of such ordinary characters.  A benign data-API path
    (``/api/population/persons/110101199003071234``) passes neither and costs ~1 µs.
    None when no such gate exists (a regex without required literals, or too many words)."""
    words: set[str] = set()
    for frags, flags in groups:
        for f in frags:
            need = {f[4:]} if flags == -1 else required_literals(f, flags, gate=True)
            if not need:
                return None
            words |= {w.casefold() for w in need if not _special(w)}
    if len(words) > MAX_GATE_WORDS:
        return None
    special = _SPECIAL_CHAR
    if not words:
        return lambda text: special(text) is not None
    ws = tuple(sorted(words))

    def gate(text: str) -> bool:
        if special(text) is not None:
            return True
        low = text.lower()  # only [A-Za-z0-9/_-] here: lower() is casefold()
        for w in ws:  # noqa: SIM110 - a plain loop: no generator per event
            if w in low:
                return True
        return False
    return gate


Check = Callable[[str], bool]


class RuleSet:
    """Rules indexed by dataset, with one combined prefilter per (field, flags) behind one
    cheap gate per field (:func:`_field_gate`): an event no prefiltered rule can match
    costs a character scan per field, not every rule."""

    def __init__(self, rules: list[CompiledRule]) -> None:
        self.rules = rules
        datasets = {r.dataset for r in rules if r.dataset is not None}
        self._plans: dict[str | None, tuple[list[tuple[tuple[str, ...], Check | None, list[Check]]],
                                            list[CompiledRule], list[CompiledRule]]] = {}
        for ds in [*datasets, None]:
            mine = [r for r in rules if r.dataset in (ds, None)]
            pre = [r for r in mine if r.prefilter]
            always = [r for r in mine if not r.prefilter]
            groups: dict[tuple[str, int], list[str]] = {}
            for r in pre:
                for fname, frag, flags in r.prefilter or ():
                    groups.setdefault((fname, flags), []).append(frag)
            per_field: dict[str, list[tuple[list[str], int]]] = {}
            for (fname, flags), frags in groups.items():
                per_field.setdefault(fname, []).append((frags, flags))
            checks: list[tuple[tuple[str, ...], Check | None, list[Check]]] = []
            try:
                for fname, fgroups in per_field.items():
                    checks.append((tuple(fname.split(".")), _field_gate(fgroups),
                                   [_memoised(_checker(frags, flags)) for frags, flags in fgroups]))
            except re.error:  # a fragment that cannot be compiled: no prefilter for this dataset
                checks, always, pre = [], mine, []
            self._plans[ds] = (checks, pre, always)

    def candidates(self, ev: Event) -> list[CompiledRule]:
        """The rules worth evaluating fully on ``ev`` (a superset of those that match)."""
        meta = ev.get("event")
        ds = meta.get("dataset") if isinstance(meta, dict) else None
        plan = self._plans.get(ds) or self._plans[None]
        checks, pre, always = plan
        for parts, gate, searches in checks:
            v: Any = ev
            for p in parts:
                v = v.get(p) if isinstance(v, dict) else None
                if v is None:
                    break
            if v is None:
                continue
            for x in (v if isinstance(v, list) else (v,)):
                text = x if isinstance(x, str) else str(x)
                if gate is not None and not gate(text):
                    continue
                for search in searches:
                    if search(text):
                        return pre + always
        return always


def load_collection(paths: Iterable[Path] | None = None) -> SigmaCollection:
    """The bundled rules (``scanners/rules``) or the given YAML files/folders."""
    texts: list[str] = []
    if paths is None:
        pkg = resources.files("ztgw.scanners.rules")
        texts = [p.read_text(encoding="utf-8") for p in sorted(pkg.iterdir(), key=lambda p: p.name)
                 if p.name.endswith((".yaml", ".yml"))]
    else:
        for p in paths:
            files = sorted(p.glob("*.y*ml")) if p.is_dir() else [p]
            texts += [f.read_text(encoding="utf-8") for f in files]
    try:
        return SigmaCollection.merge([SigmaCollection.from_yaml(t) for t in texts])
    except SigmaError as exc:
        raise RuleError(f"invalid Sigma rule: {exc}") from exc


def load_rules(paths: Iterable[Path] | None = None) -> list[CompiledRule]:
    return [compile_rule(r) for r in load_collection(paths).rules if isinstance(r, SigmaRule)]


def _pipeline() -> Any:
    """ztgw's logsources → ``event.dataset`` conditions (the fields are ECS already)."""
    from sigma.processing.conditions import LogsourceCondition
    from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
    from sigma.processing.transformations import AddConditionTransformation

    return ProcessingPipeline(name="ztgw ECS audit events", priority=20, items=[
        ProcessingItem(
            identifier=f"ztgw_{service}",
            transformation=AddConditionTransformation({"event.dataset": dataset}),
            rule_conditions=[LogsourceCondition(product="ztgw", service=service)],
        )
        for service, dataset in SERVICES.items()
    ])


def to_elasticsearch(collection: SigmaCollection | None = None, output: str = "default"
                     ) -> list[Any]:
    """The rules as Elasticsearch queries (Lucene by default; ``dsl_lucene``, ``kibana_ndjson``,
    ``siem_rule`` … are pySigma's other output formats)."""
    from sigma.backends.elasticsearch import LuceneBackend

    backend = LuceneBackend(processing_pipeline=_pipeline())
    try:
        return list(backend.convert(collection or load_collection(), output))
    except SigmaError as exc:
        raise RuleError(f"conversion failed: {exc}") from exc
