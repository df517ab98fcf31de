"""Obligation vocabulary: the parameter shape of each type, its validation, and merging.

Obligations are data the enforcement point must carry out; an enforcement point that meets a
type (or a parameter) it cannot enforce must deny (fail closed).  Every shape below is checked
when a bundle loads, so a typo fails the load, not a request.  After resolution by the engine
the data plane receives exactly these shapes (see docs/policies.md "Obligations")::

    mask       {"fields": {NAME: SPEC}, "paths": {PATH: SPEC}, "detectors": {DETECTOR: SPEC}}
               SPEC = {"strategy": STRATEGY, ...its parameters}; see MASK_STRATEGIES below
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
masks selection by selection (each field, path and detector) with the stricter strategy
(:data:`MASK_ORDER`, :func:`strictest_mask`), projections intersect, row filters on the same
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

# Mask strategies and the parameters each takes (carried out by ztgw.gateway.protection):
#   keep {first, last}   redact   null   pseudonym {format: preserve|hex}   token (FF1-SM4)
#   generalize {to: year|month|district|city|province|band, width (band)}   bucket {width}
#   noise {scale (0..1] | abs}
MASK_STRATEGIES = frozenset({"keep", "redact", "null", "pseudonym", "token", "generalize", "bucket",
                             "noise"})
MASK_SPEC_KEYS: dict[str, frozenset[str]] = {
    "keep": frozenset({"first", "last"}), "redact": frozenset(), "null": frozenset(),
    "pseudonym": frozenset({"format"}), "token": frozenset(), "generalize": frozenset({"to", "width"}),
    "bucket": frozenset({"width"}), "noise": frozenset({"scale", "abs"}),
}
# the detector ids of ztgw.gateway.protection.detectors (a test keeps the two lists equal)
MASK_DETECTORS = frozenset({
    "cn_id_number", "cn_mobile", "cn_landline", "bank_card", "cn_uscc", "email", "ipv4", "ipv6",
    "cn_passport", "cn_plate", "cn_name", "cn_address",
})
MASK_SELECTORS = ("fields", "paths", "detectors")
ABOVE_CLEARANCE_STRATEGIES = frozenset({"redact", "null", "pseudonym", "token"})
GENERALIZE_TO = ("year", "month", "band", "district", "city", "province")
MAX_KEEP_CHARS = 64  # a "keep" mask that shows more than this is not a mask
MAX_MASK_NUMBER = 1e15  # widths and absolute noise
MAX_PATH_SEGMENTS = 16
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


def _positive_number(spec: Mapping[str, Any], key: str, where: str, hi: float = MAX_MASK_NUMBER) -> float:
    n = spec[key]
    if isinstance(n, bool) or not isinstance(n, int | float) or not 0 < n <= hi:
        raise BundleError(f"{where}: {spec['strategy']}.{key} is a number in (0, {hi:g}]")
    return n


def _mask_spec(spec: Any, where: str) -> dict[str, Any]:
    """One mask spec, checked as the data plane will compile it (a typo fails the load)."""
    if not isinstance(spec, dict):
        raise BundleError(f"{where}: a mask spec is a mapping {{strategy: ..., <parameters>}}")
    strategy = spec.get("strategy", "redact")
    if strategy not in MASK_STRATEGIES:
        raise BundleError(f"{where}: mask strategy {strategy!r} is not one of {sorted(MASK_STRATEGIES)}")
    extra = set(spec) - MASK_SPEC_KEYS[strategy] - {"strategy"}
    if extra:
        allowed = sorted(MASK_SPEC_KEYS[strategy])
        raise BundleError(f"{where}: mask strategy {strategy!r} takes only {allowed or 'no parameters'}, "
                          f"got {sorted(extra)}")
    out: dict[str, Any] = {"strategy": strategy}
    if strategy == "keep":
        for key in ("first", "last"):
            if key in spec:
                n = spec[key]
                if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_KEEP_CHARS:
                    raise BundleError(f"{where}: {key} is an integer 0..{MAX_KEEP_CHARS} with 'keep'")
                out[key] = n
    elif strategy == "pseudonym":
        fmt = spec.get("format", "preserve")
        if fmt not in ("preserve", "hex"):
            raise BundleError(f"{where}: pseudonym.format is 'preserve' or 'hex'")
        out["format"] = fmt
    elif strategy == "generalize":
        to = spec.get("to")
        if to not in GENERALIZE_TO:
            raise BundleError(f"{where}: generalize.to is one of {list(GENERALIZE_TO)}")
        out["to"] = to
        if "width" in spec:
            if to != "band":
                raise BundleError(f"{where}: generalize.width goes only with to: band")
            out["width"] = _positive_number(spec, "width", where)
        elif to == "band":
            out["width"] = 10
    elif strategy == "bucket":
        if "width" not in spec:
            raise BundleError(f"{where}: bucket needs a width")
        out["width"] = _positive_number(spec, "width", where)
    elif strategy == "noise":
        if ("scale" in spec) == ("abs" in spec):
            raise BundleError(f"{where}: noise takes exactly one of scale (relative, 0..1] or abs")
        key = "scale" if "scale" in spec else "abs"
        out[key] = _positive_number(spec, key, where, 1.0 if key == "scale" else MAX_MASK_NUMBER)
    return out


_PATH_SEGMENT = re.compile(r"^(?:\*|[A-Za-z_][A-Za-z0-9_]{0,63})$")


def _mask_path(path: Any, where: str) -> str:
    if not isinstance(path, str):
        raise BundleError(f"{where}: a mask path is a string like 'contacts.mobile'")
    body = path[2:] if path.startswith("$.") else path
    parts = body.split(".")
    if not body or len(parts) > MAX_PATH_SEGMENTS or not all(_PATH_SEGMENT.match(p) for p in parts):
        raise BundleError(f"{where}: mask path {path!r} is up to {MAX_PATH_SEGMENTS} dot-separated "
                          "field names or '*'")
    return body


def _mask_params(params: dict[str, Any], where: str) -> dict[str, Any]:
    """``mask`` as written in a bundle → canonical parameters (selectors sorted by key)."""
    keys = set(params)
    if keys - {*MASK_SELECTORS, "above_clearance"}:
        raise BundleError(f"{where}: mask takes only {sorted({*MASK_SELECTORS, 'above_clearance'})}, "
                          f"got {sorted(keys)}")
    out: dict[str, Any] = {}
    if "fields" in params:
        fields = params["fields"]
        if not isinstance(fields, dict) or not fields:
            raise BundleError(f"{where}: mask.fields is a non-empty mapping")
        out["fields"] = {_field_name(n, where): _mask_spec(s, f"{where}.{n}") for n, s in fields.items()}
    if "paths" in params:
        paths = params["paths"]
        if not isinstance(paths, dict) or not paths:
            raise BundleError(f"{where}: mask.paths is a non-empty mapping of PATH: spec")
        canon: dict[str, Any] = {}
        for p, s in paths.items():
            key = _mask_path(p, where)
            if key in canon:
                raise BundleError(f"{where}: mask path {p!r} is listed twice")
            canon[key] = _mask_spec(s, f"{where}.paths.{key}")
        out["paths"] = canon
    if "detectors" in params:
        detectors = params["detectors"]
        if not isinstance(detectors, dict) or not detectors:
            raise BundleError(f"{where}: mask.detectors is a non-empty mapping of DETECTOR: spec")
        unknown = sorted(str(d) for d in detectors if d not in MASK_DETECTORS)
        if unknown:
            raise BundleError(f"{where}: unknown detector(s) {unknown}; known: {sorted(MASK_DETECTORS)}")
        out["detectors"] = {d: _mask_spec(s, f"{where}.detectors.{d}") for d, s in detectors.items()}
    if "above_clearance" in params:
        if params["above_clearance"] not in ABOVE_CLEARANCE_STRATEGIES:
            raise BundleError(f"{where}: above_clearance is one of {sorted(ABOVE_CLEARANCE_STRATEGIES)}")
        if "paths" in out or "detectors" in out:
            # resolved per request into fields only: keep paths / detectors in a second mask
            raise BundleError(f"{where}: above_clearance combines only with fields; put paths and "
                              "detectors in a separate mask obligation")
        out["above_clearance"] = params["above_clearance"]
    if not out:
        raise BundleError(f"{where}: mask needs 'fields', 'paths', 'detectors' or 'above_clearance'")
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
        return Obligation(MASK, _mask_params(params, where), rule_id)
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
# Strictness of mask strategies, strictest first: what an ordinary recipient learns of the true
# value. null (nothing) < redact (its length) < pseudonym hex (equality only) < pseudonym
# preserve (equality + shape) < token (equality + format; reversible by the gateway's key)
# < generalize (a coarse true value) < bucket (a coarse true number) < noise (an approximate
# true number) < keep (true characters).
MASK_ORDER: dict[str, int] = {"null": 0, "redact": 1, "pseudonym": 2, "token": 3, "generalize": 4,
                              "bucket": 5, "noise": 6, "keep": 7}
_GENERAL_LEVEL = {"year": ("date", 0), "month": ("date", 1), "province": ("address", 0),
                  "city": ("address", 1), "district": ("address", 2)}


def revealed_chars(spec: Mapping[str, Any]) -> float:
    """How many true characters a mask strategy lets through (lower is stricter); the
    transforming strategies (pseudonym … noise) show none verbatim but are ordered by
    :func:`mask_rank`."""
    strategy = spec.get("strategy", "redact")
    if strategy == "keep":
        return int(spec.get("first", 0)) + int(spec.get("last", 0))
    if strategy in MASK_ORDER:
        return 0
    return float("inf")  # unknown strategies are judged at enforcement time (and refused)


def mask_rank(spec: Mapping[str, Any]) -> tuple[int, float]:
    """A sort key of strictness (lower is stricter): the strategy's place in MASK_ORDER, then
    how much that strategy shows (characters kept, a finer generalisation, a narrower
    bucket, less noise). Specs of one strategy along different dimensions (generalize to a
    year vs. to a district; noise scale vs. abs) are not comparable: see :func:`strictest_mask`."""
    strategy = str(spec.get("strategy", "redact"))
    place = MASK_ORDER.get(strategy, len(MASK_ORDER))
    if strategy == "keep":
        return place, revealed_chars(spec)
    if strategy == "pseudonym":
        return place, 0 if spec.get("format") == "hex" else 1
    if strategy == "generalize":
        to = str(spec.get("to"))
        return place, -float(spec.get("width", 10)) if to == "band" else _GENERAL_LEVEL.get(to, ("", 9))[1]
    if strategy == "bucket":
        return place, -float(spec.get("width", 1))
    if strategy == "noise":
        return place, -float(spec.get("scale", spec.get("abs", 0)))
    return place, 0


def _dimension(spec: Mapping[str, Any]) -> str:
    strategy = str(spec.get("strategy", "redact"))
    if strategy == "generalize":
        to = str(spec.get("to"))
        return "band" if to == "band" else _GENERAL_LEVEL.get(to, (to, 0))[0]
    if strategy == "noise":
        return "scale" if "scale" in spec else "abs"
    return ""


def strictest_mask(specs: Iterable[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The stricter-wins merge of several specs for one selection (order-independent).

    The strictest strategy in MASK_ORDER wins; among specs of that strategy, ``keep`` shows
    the fewest characters from each end (min first, min last), ``pseudonym`` prefers ``hex``,
    ``generalize`` / ``bucket`` the coarsest, ``noise`` the largest. Specs of the winning
    strategy that cannot be compared (a date generalisation against an address one, relative
    against absolute noise) give ``redact``, stricter than both."""
    specs = list(specs)
    best = min(MASK_ORDER.get(str(s.get("strategy", "redact")), len(MASK_ORDER)) for s in specs)
    top = [s for s in specs if MASK_ORDER.get(str(s.get("strategy", "redact")), len(MASK_ORDER)) == best]
    if len(top) == 1:
        return top[0]
    if len({_dimension(s) for s in top}) > 1:
        return {"strategy": "redact"}  # a fresh mapping: merged params are never shared state
    if top[0].get("strategy") == "keep":
        first = min(int(s.get("first", 0)) for s in top)
        last = min(int(s.get("last", 0)) for s in top)
        return {"strategy": "keep", "first": first, "last": last}
    return min(top, key=lambda s: (mask_rank(s), repr(sorted(s.items()))))


def _rules(obs: list[Obligation]) -> str | None:
    return ",".join(dict.fromkeys(o.rule_id for o in obs if o.rule_id)) or None


def merge_obligations(obligations: Iterable[Obligation]) -> tuple[Obligation, ...]:
    """Conjunction of the obligations of every matching allow rule; the stricter wins."""
    masks: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    mask_obs: list[Obligation] = []
    projection: set[str] | None = None
    project_obs: list[Obligation] = []
    filters: dict[str, tuple[set[str], list[Obligation]]] = {}
    limits: dict[str, Obligation] = {}
    others: dict[tuple[str, str], Obligation] = {}
    for ob in obligations:
        if ob.type == MASK:
            for selector in MASK_SELECTORS:
                for name, spec in dict(ob.params.get(selector, {})).items():
                    masks.setdefault((selector, name), []).append(spec)
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
        # "fields" is always present (possibly empty); "paths" / "detectors" only when used
        mask_params: dict[str, Any] = {"fields": {}}
        for (selector, name), specs in masks.items():
            mask_params.setdefault(selector, {})[name] = strictest_mask(specs)
        merged.append(Obligation(MASK, mask_params, _rules(mask_obs)))
    if projection is not None:
        merged.append(Obligation(PROJECT, {"fields": sorted(projection)}, _rules(project_obs)))
    for field, (values, obs) in filters.items():
        # an empty intersection is a filter that matches nothing: still enforced, never dropped
        merged.append(Obligation(ROW_FILTER, {"field": field, "in": sorted(values)}, _rules(obs)))
    merged.extend(limits[p] for p in sorted(limits))
    merged.extend(others.values())
    return tuple(merged)
