"""Obligation vocabulary: the parameter shape of each type, its validation, and merging.

Obligations are data the enforcement point must carry out; an enforcement point that meets a
type (or a parameter) it cannot enforce must deny (fail closed).  Every shape below is checked
when a bundle loads, so a typo fails the load, not a request.  After resolution by the engine
the data plane receives exactly these shapes (see docs/policies.md "Obligations")::

    mask       {"fields": {NAME: {"strategy": "keep"|"redact"|"null", "first": n, "last": m}}}
    project    {"fields": [NAME, ...]}                       only these fields leave the gateway
    row_filter {"field": NAME, "in": [VALUE, ...]}           only records whose field is listed
    max_rows   {"limit": n, "per": "response"|"day"}         at most n records per response/day
    watermark  {"scheme": "recipient"}                       embed the recipient's fingerprint
    step_up    {"acr_values": [ACR, ...]}                    re-authenticate at one of these

Bundle-only spellings, resolved per request by the engine (never seen by the data plane):
``row_filter {"field": F, "equals_subject": ATTR}`` (the subject's attribute, e.g. district or
id_number: "only the caller's district", "only the data subject's own records") and
``mask {"above_clearance": STRATEGY}`` (mask every field classified above the subject's
clearance).  A ``step_up`` already satisfied by the token's ``acr`` is dropped.
``grant {}`` resolves to the caller's active grant (issue 6): ``project`` on the granted fields,
``row_filter`` on its row scope, ``max_rows`` per day (quota) and per response; ``consent {}``
resolves to ``row_filter`` on the dataset's key field ``in`` the consenting data subjects.  Both
make their rule not apply when the caller has no such grant or consent (fail closed).

When several allow rules match, all their obligations apply (conjunction, the stricter wins):
masks field by field with the stricter strategy, projections intersect, row filters on the same
field intersect, the smallest row limit per period wins, everything else is kept once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .domain import Obligation
from .errors import BundleError

MASK = "mask"
WATERMARK = "watermark"
ROW_FILTER = "row_filter"
PROJECT = "project"
MAX_ROWS = "max_rows"
STEP_UP = "step_up"
GRANT = "grant"  # bundle-only: resolved from the caller's grant
CONSENT = "consent"  # bundle-only: resolved from the data subjects' consents
KNOWN_TYPES = frozenset({MASK, WATERMARK, ROW_FILTER, PROJECT, MAX_ROWS, STEP_UP})  # data plane sees
BUNDLE_ONLY_TYPES = frozenset({GRANT, CONSENT})  # resolved by the engine into KNOWN_TYPES

MASK_STRATEGIES = frozenset({"keep", "redact", "null"})
MAX_KEEP_CHARS = 64  # a "keep" mask that shows more than this is not a mask
MAX_ROW_LIMIT = 10_000_000
ROW_PERIODS = frozenset({"response", "day"})
WATERMARK_SCHEMES = frozenset({"recipient"})
MAX_FILTER_VALUES = 1024
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ATTR = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,63}$")


# --- validation (bundle load) ---------------------------------------------------------------
def _field_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not _FIELD.match(name):
        raise BundleError(f"{where}: field name {name!r} is not an identifier")
    return name


def _mask_spec(spec: Any, where: str) -> dict[str, Any]:
    if not isinstance(spec, dict) or set(spec) - {"strategy", "first", "last"}:
        raise BundleError(f"{where}: a mask spec is {{strategy, first, last}}")
    strategy = spec.get("strategy", "redact")
    if strategy not in MASK_STRATEGIES:
        raise BundleError(f"{where}: mask strategy must be one of {sorted(MASK_STRATEGIES)}")
    out: dict[str, Any] = {"strategy": strategy}
    for key in ("first", "last"):
        if key in spec:
            n = spec[key]
            if strategy != "keep" or not isinstance(n, int) or isinstance(n, bool) or not (
                0 <= n <= MAX_KEEP_CHARS
            ):
                raise BundleError(f"{where}: {key} is an integer 0..{MAX_KEEP_CHARS} with 'keep'")
            out[key] = n
    return out


def validate_obligation(item: Any, rule_id: str, where: str) -> Obligation:
    """Check one obligation as written in a bundle and return it in canonical form."""
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        raise BundleError(f"{where}: an obligation is a mapping with a 'type'")
    kind = item["type"]
    params = {k: v for k, v in item.items() if k != "type"}
    keys = set(params)

    def only(*allowed: str) -> None:
        if keys - set(allowed):
            raise BundleError(f"{where}: {kind} takes only {sorted(allowed)}, got {sorted(keys)}")

    if kind == MASK:
        only("fields", "above_clearance")
        out: dict[str, Any] = {}
        if "fields" in params:
            fields = params["fields"]
            if not isinstance(fields, dict) or not fields:
                raise BundleError(f"{where}: mask.fields is a non-empty mapping")
            out["fields"] = {_field_name(n, where): _mask_spec(s, f"{where}.{n}")
                             for n, s in fields.items()}
        if "above_clearance" in params:
            if params["above_clearance"] not in MASK_STRATEGIES - {"keep"}:
                raise BundleError(f"{where}: above_clearance is 'redact' or 'null'")
            out["above_clearance"] = params["above_clearance"]
        if not out:
            raise BundleError(f"{where}: mask needs 'fields' or 'above_clearance'")
        return Obligation(MASK, out, rule_id)
    if kind == PROJECT:
        only("fields")
        fields = params.get("fields")
        if not isinstance(fields, list) or not fields:
            raise BundleError(f"{where}: project.fields is a non-empty list")
        return Obligation(PROJECT, {"fields": sorted({_field_name(f, where) for f in fields})},
                          rule_id)
    if kind == ROW_FILTER:
        field = _field_name(params.get("field"), where)
        if "in" in params:
            only("field", "in")
            values = params["in"]
            if (not isinstance(values, list) or not values or len(values) > MAX_FILTER_VALUES
                    or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values)):
                raise BundleError(f"{where}: row_filter.in is a non-empty list of strings")
            return Obligation(ROW_FILTER, {"field": field, "in": sorted({str(v) for v in values})},
                              rule_id)
        only("field", "equals_subject")
        attr = params.get("equals_subject")
        if not isinstance(attr, str) or not _ATTR.match(attr):
            raise BundleError(f"{where}: row_filter needs 'in' or 'equals_subject: ATTRIBUTE'")
        return Obligation(ROW_FILTER, {"field": field, "equals_subject": attr}, rule_id)
    if kind == MAX_ROWS:
        only("limit", "per")
        limit, per = params.get("limit"), params.get("per", "response")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= MAX_ROW_LIMIT:
            raise BundleError(f"{where}: max_rows.limit is an integer 1..{MAX_ROW_LIMIT}")
        if per not in ROW_PERIODS:
            raise BundleError(f"{where}: max_rows.per is one of {sorted(ROW_PERIODS)}")
        return Obligation(MAX_ROWS, {"limit": limit, "per": per}, rule_id)
    if kind == WATERMARK:
        only("scheme")
        scheme = params.get("scheme", "recipient")
        if scheme not in WATERMARK_SCHEMES:
            raise BundleError(f"{where}: watermark.scheme is one of {sorted(WATERMARK_SCHEMES)}")
        return Obligation(WATERMARK, {"scheme": scheme}, rule_id)
    if kind == STEP_UP:
        only("acr_values")
        acrs = params.get("acr_values")
        if not isinstance(acrs, list) or not acrs or not all(isinstance(a, str) and a for a in acrs):
            raise BundleError(f"{where}: step_up.acr_values is a non-empty list of ACR strings")
        return Obligation(STEP_UP, {"acr_values": sorted(set(acrs))}, rule_id)
    if kind in (GRANT, CONSENT):
        only()
        return Obligation(kind, {}, rule_id)
    raise BundleError(f"{where}: unknown obligation type {kind!r}; "
                      f"known: {sorted(KNOWN_TYPES | BUNDLE_ONLY_TYPES)}")


def is_template(ob: Obligation) -> bool:
    """Whether the obligation depends on the request (resolved per decision)."""
    return (ob.type == ROW_FILTER and "equals_subject" in ob.params) or (
        ob.type == MASK and "above_clearance" in ob.params
    ) or ob.type in (STEP_UP, GRANT, CONSENT)


# --- merging --------------------------------------------------------------------------------
def revealed_chars(spec: Mapping[str, Any]) -> float:
    """How much of a value a mask strategy lets through (lower is stricter)."""
    strategy = spec.get("strategy", "redact")
    if strategy in ("redact", "null"):
        return 0
    if strategy == "keep":
        return int(spec.get("first", 0)) + int(spec.get("last", 0))
    return float("inf")  # unknown strategies are judged at enforcement time (and refused)


def _rules(obs: list[Obligation]) -> str | None:
    return ",".join(dict.fromkeys(o.rule_id for o in obs if o.rule_id)) or None


def merge_obligations(obligations: Iterable[Obligation]) -> tuple[Obligation, ...]:
    """Conjunction of the obligations of every matching allow rule; the stricter wins."""
    masks: dict[str, Mapping[str, Any]] = {}
    mask_obs: list[Obligation] = []
    projection: set[str] | None = None
    project_obs: list[Obligation] = []
    filters: dict[str, tuple[set[str], list[Obligation]]] = {}
    limits: dict[str, Obligation] = {}
    others: dict[tuple[str, str], Obligation] = {}
    for ob in obligations:
        if ob.type == MASK:
            for name, spec in dict(ob.params.get("fields", {})).items():
                current = masks.get(name)
                if current is None or revealed_chars(spec) < revealed_chars(current):
                    masks[name] = spec
            mask_obs.append(ob)
        elif ob.type == PROJECT:
            fields = set(ob.params.get("fields", ()))
            projection = fields if projection is None else projection & fields
            project_obs.append(ob)
        elif ob.type == ROW_FILTER and "in" in ob.params:
            field = str(ob.params["field"])
            values = {str(v) for v in ob.params["in"]}
            if field in filters:
                filters[field][0].intersection_update(values)
                filters[field][1].append(ob)
            else:
                filters[field] = (values, [ob])
        elif ob.type == MAX_ROWS:
            per = str(ob.params.get("per", "response"))
            current_limit = limits.get(per)
            if current_limit is None or int(ob.params["limit"]) < int(current_limit.params["limit"]):
                limits[per] = ob
        else:
            others.setdefault((ob.type, repr(sorted(ob.params.items()))), ob)
    merged: list[Obligation] = []
    if masks:
        merged.append(Obligation(MASK, {"fields": masks}, _rules(mask_obs)))
    if projection is not None:
        merged.append(Obligation(PROJECT, {"fields": sorted(projection)}, _rules(project_obs)))
    for field, (values, obs) in filters.items():
        # an empty intersection is a filter that matches nothing: still enforced, never dropped
        merged.append(Obligation(ROW_FILTER, {"field": field, "in": sorted(values)}, _rules(obs)))
    merged.extend(limits[p] for p in sorted(limits))
    merged.extend(others.values())
    return tuple(merged)
