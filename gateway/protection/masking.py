"""Response masking: apply a ``mask`` obligation to JSON, NDJSON and CSV bodies.

The obligation's parameters select values three ways and give each a strategy spec (see
:mod:`.strategies` for the strategies)::

    {"fields": {"id_number": {"strategy": "keep", "first": 6, "last": 4}},   # by name
     "paths":  {"contacts.mobile": {"strategy": "pseudonym"},                # by path
                "owner.*.email":   {"strategy": "redact"}},
     "detectors": {"cn_id_number": {"strategy": "token"},                     # by detector
                  "cn_mobile":    {"strategy": "keep", "first": 3, "last": 4}}}

- ``fields``: a key of the record (top level), in every record of the response.
- ``paths``: dot-separated keys inside the record; ``*`` matches any key and arrays are
  walked transparently (``contacts.mobile`` reaches every ``mobile`` of the ``contacts``
  list). A leading ``$.`` is ignored. In CSV a path matches the column of the same name.
- ``detectors`` (older spelling ``types``): detector ids (:data:`.detectors.DETECTOR_IDS`).
  Every string anywhere in the
  record whose whole value is of that type is masked; identifiers embedded in free text
  are masked in place (a ``null`` strategy redacts the embedded span instead).

The records of a JSON answer are found by :func:`records_path` (a bare list, the list under a
:data:`RECORD_CONTAINERS` key such as ``items``, ``data.list`` or ``result.records``, else one
record); what is not a record — the envelope, objects nested in a single record — is masked
by name, path and detector at any depth (:meth:`MaskPlan.deep`), so an unknown shape fails
closed.

Names and paths are applied first; type selection then sees the remaining values. A spec
this module does not understand raises :class:`UnenforceableMask` *before* any data is
fetched, so the data plane can deny instead of serving unmasked data (fail closed).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import orjson

from .columns import column, store
from .detectors import DETECTOR_IDS, classify, find_all
from .keys import ProtectionKeys
from .strategies import (
    MASK_CHAR,
    MAX_KEEP,
    STRATEGIES,
    Masker,
    UnenforceableMask,
    column_of,
    compile_masker,
)

__all__ = [
    "MASK_CHAR",
    "MAX_KEEP",
    "RECORD_CONTAINERS",
    "STRATEGIES",
    "MaskPlan",
    "Masker",
    "UnenforceableMask",
    "compile_masker",
    "get_path",
    "holds_records",
    "records_of",
    "records_path",
    "set_path",
]

MAX_PATH_DEPTH = 16
_SELECTORS = frozenset({"fields", "paths", "types"})
_FREE_TEXT_MIN = 7  # shorter strings cannot embed any identifier next to other text
_CLEAN_LEN, _CLEAN_MAX = 16, 1 << 15


def _parse_path(path: str) -> tuple[str, ...]:
    p = path[2:] if path.startswith("$.") else path
    parts = tuple(p.split("."))
    if not p or any(not s for s in parts) or len(parts) > MAX_PATH_DEPTH:
        raise UnenforceableMask(f"bad path {path!r}")
    return parts


# Keys under which data APIs put a page's records, looked up in document order and through
# nested envelopes ({"code": 0, "data": {"list": [...], "total": n}}): ``items`` (ztgw's own
# pages), ``data`` / ``result`` / ``results`` (common envelopes), ``records`` (MyBatis-Plus
# pages), ``rows`` (bootstrap-table, many Chinese platforms), ``list`` (PageHelper),
# ``content`` (Spring Data pages), ``datas`` / ``dataList`` / ``resultList`` (also seen).
RECORD_CONTAINERS = frozenset({"items", "data", "records", "rows", "list", "result", "results",
                               "content", "datas", "dataList", "resultList"})
MAX_ENVELOPE_DEPTH = 4  # container keys followed from the top: data.page.list is depth 3
MAX_NESTING = 256  # deeper JSON than this is refused rather than walked


def records_path(doc: Any, *, weak: bool = True) -> tuple[tuple[str, ...], bool]:
    """Where a JSON answer's records are: (keys from the top, whether that is a list of records).

    - a top-level list: ``((), True)``;
    - the first list, in document order, reached through :data:`RECORD_CONTAINERS` keys only
      (``items``, ``data.list``, ``result.records`` …): ``(("data", "list"), True)``;
    - else, when ``weak``, the first top-level value that is a non-empty list of objects;
    - else one record: the innermost object reached through container keys (``{"code": 0,
      "data": {...}}``), or the document itself: ``(("data",), False)`` / ``((), False)``.
    """
    if isinstance(doc, list):
        return (), True
    if not isinstance(doc, dict):
        return (), False
    found = _container_list(doc, (), 0)
    if found is not None:
        return found, True
    if weak:
        for k, v in doc.items():
            if type(v) is list and v and all(type(x) is dict for x in v):
                return (k,), True
    path: tuple[str, ...] = ()
    node: Any = doc
    while len(path) < MAX_ENVELOPE_DEPTH:
        nxt = next((k for k, v in node.items() if k in RECORD_CONTAINERS and type(v) is dict), None)
        if nxt is None:
            break
        path, node = (*path, nxt), node[nxt]
    return path, False


def _container_list(node: dict[str, Any], path: tuple[str, ...], depth: int) -> tuple[str, ...] | None:
    for k, v in node.items():
        if k not in RECORD_CONTAINERS:
            continue
        if type(v) is list:
            return (*path, k)
        if type(v) is dict and depth + 1 < MAX_ENVELOPE_DEPTH:
            found = _container_list(v, (*path, k), depth + 1)
            if found is not None:
                return found
    return None


def get_path(doc: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        doc = doc[k]
    return doc


def set_path(doc: Any, path: tuple[str, ...], value: Any) -> Any:
    """``doc`` with the value at ``path`` replaced (the new value itself for ``()``)."""
    if not path:
        return value
    get_path(doc, path[:-1])[path[-1]] = value
    return doc


def records_of(doc: Any) -> list[Any]:
    """The records of a JSON answer (see :func:`records_path`): a page's records array, a bare
    list, or the one record."""
    path, is_list = records_path(doc)
    found = get_path(doc, path)
    if is_list:
        return found  # type: ignore[no-any-return]
    return [found] if isinstance(found, dict) else []


def holds_records(node: Any, skip: Any = None, depth: int = 0) -> bool:
    """Whether ``node`` (but not the object ``skip``) holds a non-empty list of objects."""
    if node is skip or depth > MAX_NESTING:
        return depth > MAX_NESTING
    if type(node) is list:
        if node and any(type(x) is dict for x in node):
            return True
        return any(holds_records(x, skip, depth + 1) for x in node if type(x) in (dict, list))
    if type(node) is dict:
        return any(holds_records(v, skip, depth + 1) for v in node.values() if type(v) in (dict, list))
    return False


@dataclass(frozen=True, slots=True)
class MaskPlan:
    """Compiled selections → maskers for one response."""

    maskers: Mapping[str, Masker]
    paths: tuple[tuple[str, tuple[str, ...], Masker], ...] = ()
    types: Mapping[str, Masker] = field(default_factory=dict)
    # short strings known to hold none of ``types`` (dates, categories): skipped next time
    _clean: dict[str, None] = field(default_factory=dict, compare=False, repr=False)
    # [(inline loop over the records, its field names), (name, masker) of the other fields]
    _compiled: list[Any] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def from_obligation(cls, params: Mapping[str, Any], *, keys: ProtectionKeys | None = None
                        ) -> MaskPlan:
        """Compile obligation parameters. Keyed strategies (pseudonym, token, noise) need
        ``keys``; without them they are unenforceable."""
        if not isinstance(params, Mapping):
            raise UnenforceableMask("mask parameters must be a mapping")
        unknown = set(params) - _SELECTORS - {"detectors"}
        if unknown:
            raise UnenforceableMask(f"unknown mask selectors {sorted(unknown)}")
        if "detectors" in params and "types" in params:
            raise UnenforceableMask("mask 'detectors' and its older spelling 'types' together")
        sections = {k: params.get(k) for k in _SELECTORS}
        if "detectors" in params:  # the policy bundle's spelling of 'types'
            sections["types"] = params["detectors"]
        for name, sec in sections.items():
            if sec is not None and not isinstance(sec, Mapping):
                raise UnenforceableMask(f"mask {name!r} must be a mapping")
        if not any(sections.values()):
            raise UnenforceableMask("a mask obligation needs a non-empty 'fields', 'paths' or 'detectors'")
        fields = sections["fields"] or {}
        paths = sections["paths"] or {}
        types = sections["types"] or {}
        bad = set(types) - set(DETECTOR_IDS)
        if bad:
            raise UnenforceableMask(f"unknown detector types {sorted(bad)}")
        return cls(
            {str(n): compile_masker(s, keys) for n, s in fields.items()},
            tuple((str(p), _parse_path(str(p)), compile_masker(s, keys)) for p, s in paths.items()),
            {str(t): compile_masker(s, keys, kind=str(t)) for t, s in types.items()},
        )

    # ------------------------------------------------------------------ one record

    def record(self, rec: dict[str, Any]) -> set[str]:
        """Mask one record in place; returns the field names / paths it touched."""
        touched = self._names(rec)
        if self.types:
            for key in list(rec):
                new, hit = self._by_type(rec[key], 0)
                if hit:
                    rec[key] = new
                    touched.add(key)
        return touched

    def _names(self, rec: dict[str, Any]) -> set[str]:
        """Names, then paths, on one object (what :meth:`record` does before detectors)."""
        touched = set()
        for name, masker in self.maskers.items():
            if name in rec:
                rec[name] = masker(rec[name])
                touched.add(name)
        for label, parts, masker in self.paths:
            if len(parts) == 1 and parts[0] != "*" and type(rec.get(parts[0])) is not list:
                if parts[0] in rec:  # a top-level key: the common case, no walk
                    rec[parts[0]] = masker(rec[parts[0]])
                    touched.add(label)
            elif _apply_path(rec, parts, masker):
                touched.add(label)
        return touched

    def deep(self, node: Any, touched: set[str], *, skip: Any = None, types: bool = True,
             depth: int = 0, _held: frozenset[int] | None = None) -> None:
        """Fail closed on what is not a record of the answer (a page's envelope, the objects
        nested in a single record): names and paths apply to *every* object at any depth, and
        (with ``types``) detectors to every scalar; ``skip`` (the records array, already
        masked) is left alone."""
        if node is skip:
            return
        if depth > MAX_NESTING:
            raise UnenforceableMask("the answer is nested too deeply to be masked")
        if _held is None:  # the objects from here down to the records: the envelope's own
            _held = frozenset(map(id, _path_to(node, skip) or ())) if skip is not None else frozenset()
        if type(node) is dict:
            if self.maskers or self.paths:
                # the keys leading to the records (or to the streaming framer's placeholder for
                # them) are the envelope's, not fields: a field of the same name ('data')
                # leaves them alone
                held = [(k, v) for k, v in node.items() if id(v) in _held] if _held else []
                hit = self._names(node)
                for k, v in held:
                    node[k] = v
                    hit.discard(k)
                touched |= hit
            items: Any = node.items()
        elif type(node) is list:
            items = enumerate(node)
        else:
            return
        for k, v in list(items):
            t = type(v)
            if t is dict or t is list:
                self.deep(v, touched, skip=skip, types=types, depth=depth + 1, _held=_held)
            elif types and self.types and (t is str or t is int):
                new, hit = self._by_type(v, MAX_PATH_DEPTH)
                if hit:
                    node[k] = new
                    touched.add(str(k) if type(node) is dict else "[]")

    def document(self, doc: Any) -> tuple[Any, int, set[str]]:
        """Mask a whole parsed JSON answer: its records (:func:`records_path`) as a batch, and
        everything outside them through :meth:`deep`. Returns (doc, records, touched)."""
        path, is_list = records_path(doc)
        node = get_path(doc, path)
        if is_list:
            n, touched = self.records(node)
            self.deep(doc, touched, skip=node)
            return doc, n, touched
        if type(node) is not dict:
            touched = set()
            self.deep(doc, touched)
            return doc, 0, touched
        touched = self.record(node)
        self.nested(node, touched)
        if path:
            self.deep(doc, touched, skip=node)
        return doc, 1, touched

    def nested(self, rec: dict[str, Any], touched: set[str]) -> None:
        """Names and paths on the objects nested in a single record (its detectors have already
        walked them): a single object may be an envelope this module does not recognise."""
        if self.maskers or self.paths:
            for v in rec.values():
                if type(v) is dict or type(v) is list:
                    self.deep(v, touched, types=False, depth=1)

    def _by_type(self, value: Any, depth: int) -> tuple[Any, bool]:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 10**10:
            new, hit = self.text(str(value))
            return (new, True) if hit else (value, False)
        if depth >= MAX_PATH_DEPTH:
            return value, False
        hit_any = False
        if isinstance(value, dict):
            for k in list(value):
                new, hit = self._by_type(value[k], depth + 1)
                if hit:
                    value[k], hit_any = new, True
        elif isinstance(value, list):
            for i, item in enumerate(value):
                new, hit = self._by_type(item, depth + 1)
                if hit:
                    value[i], hit_any = new, True
        return value, hit_any

    def text(self, value: str) -> tuple[Any, bool]:
        """Type-driven masking of one string: whole value, else embedded spans."""
        kind = classify(value)
        if kind is not None:
            masker = self.types.get(kind)
            return (masker(value), True) if masker else (value, False)
        if len(value) < _FREE_TEXT_MIN or value in self._clean:
            return value, False
        matches = find_all(value, self.types)
        if not matches:
            if len(value) <= _CLEAN_LEN:
                if len(self._clean) >= _CLEAN_MAX:
                    self._clean.clear()
                self._clean[value] = None
            return value, False
        out, pos = [], 0
        for m in matches:
            masked = self.types[m.type](m.value)
            out.append(value[pos:m.start])
            out.append(MASK_CHAR * len(m.value) if masked is None else str(masked))
            pos = m.end
        out.append(value[pos:])
        return "".join(out), True

    # ------------------------------------------------------------------ bodies

    def records(self, recs: list[Any]) -> tuple[int, set[str]]:
        """Mask a list of records in place: (records, touched). Same result as :meth:`record`
        on each (names, then paths, then detectors), but names and top-level paths run column
        by column through each strategy's batch form (far less interpreter work per value)."""
        dicts = [r for r in recs if type(r) is dict]
        touched: set[str] = set()
        if not self._compiled:
            self._compiled.append(_compile_fields(self.maskers, self.paths))
        loop, inlined, others, inlined_paths = self._compiled[0]
        if loop is not None:
            touched.update(label for label, hit in zip(inlined, loop(dicts), strict=True) if hit)
        for name, masker in others:
            have, values, _ = column(dicts, name)
            if have:
                store(have, name, column_of(masker)(values))
                touched.add(name)
        for label, parts, masker in self.paths:
            if label in inlined_paths:
                continue
            if len(parts) == 1 and parts[0] != "*":
                name = parts[0]
                have, values, kinds = column(dicts, name)
                if not have:
                    continue
                if list in kinds:  # a list is masked element by element
                    out = [[masker(x) for x in v] if type(v) is list else masker(v) for v in values]
                else:
                    out = column_of(masker)(values)
                store(have, name, out)
                touched.add(label)
            else:
                hit = False
                for rec in dicts:
                    hit |= _apply_path(rec, parts, masker)
                if hit:
                    touched.add(label)
        if self.types:
            self._types_by_column(dicts, touched)
        return len(dicts), touched

    def _types_by_column(self, dicts: list[dict[str, Any]], touched: set[str]) -> None:
        """Detector masking column by column: each *distinct* string of a column is judged
        once per batch (categories, dates and districts repeat on every page), then only
        the cells that change are written. Containers go value by value (:meth:`_by_type`)."""
        text, by_type = self.text, self._by_type
        for key in dict.fromkeys(chain.from_iterable(dicts)):
            have, values, kinds = column(dicts, key)
            if not kinds <= _HASHABLE_SCALARS:
                hit_any = False
                for rec in have:
                    new, hit = by_type(rec[key], 0)
                    if hit:
                        rec[key], hit_any = new, True
                if hit_any:
                    touched.add(key)
                continue
            changed: dict[str, Any] = {}
            if str in kinds:
                uniq = set(values) if len(kinds) == 1 else {v for v in values if v.__class__ is str}
                candidates = list(uniq.difference(self._clean))
                # whole values, grouped by detector and masked through each strategy's column form
                groups: dict[str, list[str]] = {}
                free: list[str] = []
                found = list(map(classify, candidates))
                if len(set(found)) == 1 and found and found[0] is not None:
                    groups[found[0]] = candidates  # one kind for the whole column (the common case)
                else:
                    for v, kind in zip(candidates, found, strict=True):
                        if kind is not None:
                            groups.setdefault(kind, []).append(v)
                        elif len(v) >= _FREE_TEXT_MIN:
                            free.append(v)
                for kind, group in groups.items():
                    masker = self.types.get(kind)
                    if masker is not None:
                        changed.update(zip(group, column_of(masker)(group), strict=True))
                for v in free:  # identifiers embedded in free text
                    new, hit = text(v)
                    if hit:
                        changed[v] = new
            if changed and len(kinds) == 1 and len(changed) == len(uniq):  # every value is masked
                store(have, key, list(map(changed.__getitem__, values)))
                hit_any = True
            else:
                idx = ([j for j, v in enumerate(values) if v.__class__ is str and v in changed]
                       if changed else [])
                store([have[j] for j in idx], key, [changed[values[j]] for j in idx])
                hit_any = bool(idx)
            if int in kinds:  # long digit runs stored as numbers (ID numbers, cards, phones)
                for j, v in enumerate(values):
                    if v.__class__ is int and v >= _BIG_INT:
                        new, hit = by_type(v, 0)
                        if hit:
                            have[j][key], hit_any = new, True
            if hit_any:
                touched.add(key)

    def json_body(self, body: bytes) -> tuple[bytes, int, set[str]]:
        """Mask a JSON answer: a page (records under a :data:`RECORD_CONTAINERS` key, at any
        envelope depth), a bare list or a single record (see :meth:`document`)."""
        doc, records, touched = self.document(orjson.loads(body))
        return orjson.dumps(doc), records, touched

    def ndjson_body(self, body: bytes) -> tuple[bytes, int, set[str]]:
        """Mask newline-delimited JSON, one record a line (blank lines dropped)."""
        out = bytearray()
        touched: set[str] = set()
        records = 0
        for line in body.splitlines():
            if not line.strip():
                continue
            rec = orjson.loads(line)
            if isinstance(rec, dict):
                touched |= self.record(rec)
                records += 1
            out += orjson.dumps(rec) + b"\n"
        return bytes(out), records, touched

    def csv_columns(self, header: list[str]) -> list[tuple[int, tuple[Masker, ...]]]:
        """Every column a name or path selects — each of duplicate headers — with its maskers
        in :meth:`record`'s order (the name's, then each path's)."""
        by_name: dict[str, list[Masker]] = {n: [m] for n, m in self.maskers.items()}
        for label, parts, masker in self.paths:  # the header is the path, with or without '$.'
            for name in dict.fromkeys((".".join(parts), label)):
                by_name.setdefault(name, []).append(masker)
        return [(i, tuple(by_name[h])) for i, h in enumerate(header) if h in by_name]

    def csv_row(self, header: list[str], cols: list[tuple[int, tuple[Masker, ...]]], row: list[str],
                touched: set[str]) -> None:
        if len(row) > len(header):  # cells without a column name cannot be selected by name
            del row[len(header):]
        for i, maskers in cols:
            if i < len(row):
                masked: Any = row[i]
                for masker in maskers:
                    masked = masker(masked)
                row[i] = "" if masked is None else _cell(masked)
        if self.types:
            for i, cell in enumerate(row):
                if cell:
                    new, hit = self.text(cell)
                    if hit:
                        row[i] = "" if new is None else _cell(new)
                        if i < len(header):
                            touched.add(header[i])

    def csv_body(self, body: bytes) -> tuple[bytes, int, set[str]]:
        text = body.decode("utf-8-sig")
        reader = csv.reader(io.StringIO(text, newline=""))
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        header = next(reader, None)
        if header is None:
            return body, 0, set()
        writer.writerow(header)
        cols = self.csv_columns(header)
        touched = {header[i] for i, _ in cols}
        records = 0
        for row in reader:
            self.csv_row(header, cols, row, touched)
            writer.writerow(row)
            records += 1
        return out.getvalue().encode("utf-8"), records, touched


_MISSING = object()
_HASHABLE_SCALARS = frozenset({str, int, float, bool, type(None)})
_BIG_INT = 10**10  # integers below this cannot be any identifier
_FAST = 256  # strings shorter than this are masked by slicing inside the loop


def _compile_fields(maskers: Mapping[str, Masker], paths: tuple[tuple[str, tuple[str, ...], Masker], ...]
                    ) -> tuple[Any, tuple[str, ...], list[tuple[str, Masker]], frozenset[str]]:
    """One loop over the records for every keep / redact / null field (and top-level path):
    per value a dict lookup, a type and length check and a slice — no call. The generated
    source holds only numbers and generated names; field names and maskers are bound as
    variables, never written into the source.

    Returns (loop or None, the labels it covers in order, the other fields, the labels of
    the paths it covers). Fields come before paths, as in :meth:`MaskPlan.record`; only the
    leading run of simple paths joins the loop, and none on a key that a non-inline field
    masks, so every value sees its maskers in the order :meth:`MaskPlan.record` applies them."""
    entries: list[tuple[str, str, Masker, bool]] = []  # (label, key, masker, is_path)
    others: list[tuple[str, Masker]] = []
    for name, masker in maskers.items():
        if getattr(masker, "inline", None) is not None:
            entries.append((name, name, masker, False))
        else:
            others.append((name, masker))
    later = {n for n, _ in others}
    for label, parts, masker in paths:  # only a leading run of paths: they keep their order
        if not (len(parts) == 1 and parts[0] != "*" and parts[0] not in later
                and getattr(masker, "inline", None) is not None):
            break
        entries.append((label, parts[0], masker, True))
    if not entries:
        return None, (), others, frozenset()
    env: dict[str, Any] = {"M": _MISSING, "len": len, "str": str, "list": list}
    body = []
    for i, (_, key, masker, is_path) in enumerate(entries):
        kind = masker.inline  # type: ignore[attr-defined]
        env[f"k{i}"], env[f"m{i}"] = key, masker
        body += [f"        v = r.get(k{i}, M)", "        if v is not M:", f"            h{i} = True"]
        if is_path:  # a path walks a list: each element is masked
            body += ["            if v.__class__ is list:", f"                r[k{i}] = [m{i}(x) for x in v]",
                     "            else:"]
        pad = "    " if is_path else ""
        if kind[0] == "null":
            body.append(f"            {pad}r[k{i}] = None")
            continue
        if kind[0] == "keep":
            first, last = int(kind[1]), int(kind[2])
            shown = first + last
            env[f"s{i}"] = [MASK_CHAR * (n - shown) if n > shown else "" for n in range(_FAST)]
            # the condition runs first and binds n = len(v) for the slices
            tail = f" + v[n - {last}:]" if last else ""
            body.append(f"            {pad}r[k{i}] = v[:{first}] + s{i}[n]{tail} "
                        f"if v.__class__ is str and {shown} < (n := len(v)) < {_FAST} else m{i}(v)")
        else:  # redact
            env[f"s{i}"] = [MASK_CHAR * n for n in range(_FAST)]
            body.append(f"            {pad}r[k{i}] = s{i}[n] "
                        f"if v.__class__ is str and (n := len(v)) < {_FAST} else m{i}(v)")
    flags = [f"h{i}" for i in range(len(entries))]
    src = "\n".join([
        "def loop(dicts):",
        *[f"    {f} = False" for f in flags],
        "    for r in dicts:",
        *body,
        f"    return ({', '.join(flags)},)",
    ])
    exec(compile(src, "<ztgw mask plan>", "exec"), env)  # noqa: S102 - source built from numbers only
    return (env["loop"], tuple(e[0] for e in entries), others,
            frozenset(e[0] for e in entries if e[3]))


def _path_to(node: Any, target: Any, depth: int = 0) -> list[Any] | None:
    """The objects from ``node`` down to ``target`` (found by identity, or by equality for a
    string placeholder), both included; None when it is not there."""
    if node is target or (type(target) is str and type(node) is str and node == target):
        return [node]
    if depth > MAX_NESTING:
        return None
    children: Any = node.values() if type(node) is dict else node if type(node) is list else ()
    placeholder = type(target) is str
    for v in children:
        if v is target or type(v) is dict or type(v) is list or (placeholder and type(v) is str):
            found = _path_to(v, target, depth + 1)
            if found is not None:
                return [node, *found]
    return None


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _apply_path(node: Any, parts: tuple[str, ...], masker: Masker) -> bool:
    if isinstance(node, list):
        hit = False
        for item in node:
            hit |= _apply_path(item, parts, masker)
        return hit
    if not isinstance(node, dict):
        return False
    head, rest = parts[0], parts[1:]
    keys = list(node) if head == "*" else ([head] if head in node else [])
    hit = False
    for k in keys:
        if rest:
            hit |= _apply_path(node[k], rest, masker)
        elif isinstance(node[k], list):
            node[k] = [masker(v) for v in node[k]]
            hit = True
        else:
            node[k] = masker(node[k])
            hit = True
    return hit
