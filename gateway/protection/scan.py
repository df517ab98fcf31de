"""PII discovery: which fields of a record set hold which kinds of personal data.

Fields are judged by their content only — column names in government systems are often
opaque pinyin abbreviations (``sfzh``, ``lxdh``, ``xm``). Every string (and every long
integer) is classified as a whole value; longer strings are also searched for embedded
identifiers. A field is reported for a type when:

- it was found embedded in free text (validated, with context where the type needs it); or
- its whole-value matches cover at least :data:`STRONG_SHARE` of the field's non-empty
  values for a type validated by a check character or closed list
  (:data:`.detectors.STRONG`), :data:`WEAK_SHARE` for the weaker ones (names, passports,
  plates, landlines, addresses). A column of random 18-digit order numbers has the odd
  value that passes a check character by chance; it is not reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .detectors import STRONG, classify, find_all

__all__ = ["STRONG_SHARE", "WEAK_SHARE", "FieldFinding", "PiiReport", "scan_records"]

STRONG_SHARE = 0.05
WEAK_SHARE = 0.3
_FREE_TEXT_MIN = 7
_MAX_DEPTH = 16


@dataclass(frozen=True, slots=True)
class FieldFinding:
    field: str
    type: str
    matches: int
    rows: int


@dataclass(slots=True)
class PiiReport:
    rows: int = 0
    fields: list[FieldFinding] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows,
                "fields": [{"field": f.field, "type": f.type, "matches": f.matches, "rows": f.rows}
                           for f in self.fields]}


@dataclass(slots=True)
class _Stats:
    non_empty: int = 0
    whole: dict[str, int] = field(default_factory=dict)  # type -> matching values
    embedded: dict[str, int] = field(default_factory=dict)  # type -> matches in free text
    rows: dict[str, int] = field(default_factory=dict)  # type -> rows with any match


def _leaves(value: Any, path: str, depth: int) -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        if depth < _MAX_DEPTH:
            for k, v in value.items():
                yield from _leaves(v, f"{path}.{k}" if path else str(k), depth + 1)
    elif isinstance(value, list):
        if depth < _MAX_DEPTH:
            for v in value:
                yield from _leaves(v, path + "[]", depth + 1)
    else:
        yield path, value


def scan_records(records: Iterable[Mapping[str, Any]]) -> PiiReport:
    """Scan every record (nested fields are reported by dotted path, lists as ``[]``)."""
    stats: dict[str, _Stats] = {}
    report = PiiReport()
    for rec in records:
        report.rows += 1
        row_hits: set[tuple[str, str]] = set()
        for path, value in _leaves(rec, "", 0):
            if isinstance(value, bool) or value is None:
                continue
            if isinstance(value, int) and value >= 10**10:
                value = str(value)
            if not isinstance(value, str) or not value.strip():
                continue
            st = stats.setdefault(path, _Stats())
            st.non_empty += 1
            kind = classify(value)
            if kind is not None:
                st.whole[kind] = st.whole.get(kind, 0) + 1
                row_hits.add((path, kind))
            elif len(value) >= _FREE_TEXT_MIN:
                for m in find_all(value):
                    st.embedded[m.type] = st.embedded.get(m.type, 0) + 1
                    row_hits.add((path, m.type))
        for path, kind in row_hits:
            st = stats[path]
            st.rows[kind] = st.rows.get(kind, 0) + 1
    for path, st in stats.items():
        for kind in sorted(st.rows, key=lambda k: -st.rows[k]):
            whole, embedded = st.whole.get(kind, 0), st.embedded.get(kind, 0)
            share = STRONG_SHARE if kind in STRONG else WEAK_SHARE
            if embedded or (whole and whole >= share * st.non_empty):
                report.fields.append(FieldFinding(path, kind, whole + embedded, st.rows[kind]))
    return report
