"""Obligation vocabulary and merging.

Obligations are data the enforcement point must carry out; an enforcement point that meets a
type it cannot enforce must deny (fail closed).  When several allow rules match, their
obligations are merged: masks field by field with the stricter strategy winning, the smallest
row limit winning, everything else kept once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .domain import Obligation

MASK = "mask"
WATERMARK = "watermark"
ROW_FILTER = "row_filter"
PROJECT = "project"
MAX_ROWS = "max_rows"
STEP_UP = "step_up"
KNOWN_TYPES = frozenset({MASK, WATERMARK, ROW_FILTER, PROJECT, MAX_ROWS, STEP_UP})


def revealed_chars(spec: Mapping[str, Any]) -> float:
    """How much of a value a mask strategy lets through (lower is stricter)."""
    strategy = spec.get("strategy", "redact")
    if strategy in ("redact", "null"):
        return 0
    if strategy == "keep":
        return int(spec.get("first", 0)) + int(spec.get("last", 0))
    return float("inf")  # unknown strategies are judged at enforcement time (and refused)


def merge_obligations(obligations: Iterable[Obligation]) -> tuple[Obligation, ...]:
    masks: dict[str, Mapping[str, Any]] = {}
    mask_rules: list[str] = []
    max_rows: Obligation | None = None
    others: dict[tuple[str, str], Obligation] = {}
    for ob in obligations:
        if ob.type == MASK:
            for name, spec in dict(ob.params.get("fields", {})).items():
                current = masks.get(name)
                if current is None or revealed_chars(spec) < revealed_chars(current):
                    masks[name] = spec
            if ob.rule_id:
                mask_rules.append(ob.rule_id)
        elif ob.type == MAX_ROWS:
            if max_rows is None or int(ob.params.get("limit", 0)) < int(
                max_rows.params.get("limit", 0)
            ):
                max_rows = ob
        else:
            others.setdefault((ob.type, repr(sorted(ob.params.items()))), ob)
    merged: list[Obligation] = []
    if masks:
        merged.append(
            Obligation(MASK, {"fields": masks}, ",".join(dict.fromkeys(mask_rules)) or None)
        )
    if max_rows is not None:
        merged.append(max_rows)
    merged.extend(others.values())
    return tuple(merged)
