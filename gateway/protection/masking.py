"""Response masking: apply a ``mask`` obligation to JSON and CSV bodies in one pass.

A mask obligation names fields and a strategy per field::

    {"fields": {"id_number": {"strategy": "keep", "first": 6, "last": 4},
                "mobile":    {"strategy": "keep", "first": 3, "last": 4},
                "remark":    {"strategy": "redact"}}}

Strategies: ``keep`` (first N / last M characters, the rest ``*``), ``redact`` (every character
``*``, length kept), ``null`` (the value becomes null / empty).  A spec this module does not
understand raises :class:`UnenforceableMask` *before* any data is fetched, so the data plane can
deny instead of serving unmasked data (fail closed).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

MASK_CHAR = "*"
STRATEGIES = frozenset({"keep", "redact", "null"})
MAX_KEEP = 64

Masker = Callable[[Any], Any]


class UnenforceableMask(ValueError):
    """A mask obligation this gateway cannot carry out."""


def _keep(first: int, last: int) -> Masker:
    def mask(value: Any) -> Any:
        if value is None:
            return None
        text = str(value)
        n = len(text)
        if first + last >= n:
            # too short to show anything safely: reveal at most one char from the front
            return text[: min(first, 1)] + MASK_CHAR * (n - min(first, 1))
        return text[:first] + MASK_CHAR * (n - first - last) + (text[n - last:] if last else "")

    return mask


def _redact(value: Any) -> Any:
    return None if value is None else MASK_CHAR * len(str(value))


def _null(value: Any) -> Any:
    return None


def compile_masker(spec: Mapping[str, Any]) -> Masker:
    strategy = spec.get("strategy", "redact")
    if strategy not in STRATEGIES:
        raise UnenforceableMask(f"unknown masking strategy {strategy!r}")
    if strategy == "keep":
        try:
            first, last = int(spec.get("first", 0)), int(spec.get("last", 0))
        except (TypeError, ValueError) as exc:
            raise UnenforceableMask("keep needs integer 'first'/'last'") from exc
        if not (0 <= first <= MAX_KEEP and 0 <= last <= MAX_KEEP):
            raise UnenforceableMask("keep 'first'/'last' out of range")
        return _keep(first, last)
    return _redact if strategy == "redact" else _null


@dataclass(frozen=True, slots=True)
class MaskPlan:
    """Compiled field → masker map for one response."""

    maskers: Mapping[str, Masker]

    @classmethod
    def from_obligation(cls, params: Mapping[str, Any]) -> MaskPlan:
        fields = params.get("fields")
        if not isinstance(fields, Mapping) or not fields:
            raise UnenforceableMask("a mask obligation needs a non-empty 'fields' mapping")
        return cls({str(name): compile_masker(spec) for name, spec in fields.items()})

    def record(self, rec: dict[str, Any]) -> set[str]:
        """Mask one record in place; returns the field names it touched."""
        touched = set()
        for name, masker in self.maskers.items():
            if name in rec:
                rec[name] = masker(rec[name])
                touched.add(name)
        return touched

    def json_body(self, body: bytes) -> tuple[bytes, int, set[str]]:
        """Mask a JSON list page ``{"items": [...]}``, a bare list or a single record."""
        doc = orjson.loads(body)
        touched: set[str] = set()
        records = 0
        if isinstance(doc, dict) and isinstance(doc.get("items"), list):
            items = doc["items"]
        elif isinstance(doc, list):
            items = doc
        elif isinstance(doc, dict):
            items = [doc]
        else:
            items = []
        for rec in items:
            if isinstance(rec, dict):
                touched |= self.record(rec)
                records += 1
        return orjson.dumps(doc), records, touched

    def csv_body(self, body: bytes) -> tuple[bytes, int, set[str]]:
        text = body.decode("utf-8-sig")
        reader = csv.reader(io.StringIO(text, newline=""))
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        header = next(reader, None)
        if header is None:
            return body, 0, set()
        writer.writerow(header)
        cols = [(i, self.maskers[h]) for i, h in enumerate(header) if h in self.maskers]
        touched = {header[i] for i, _ in cols}
        records = 0
        for row in reader:
            for i, masker in cols:
                if i < len(row):
                    masked = masker(row[i])
                    row[i] = "" if masked is None else masked
            writer.writerow(row)
            records += 1
        return out.getvalue().encode("utf-8"), records, touched
