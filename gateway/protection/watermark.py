"""Leak-tracing watermarks: a keyed mark of (recipient, request) carried by the data itself.

Scheme (docs/protection.md has the full description, capacity and limits):

- Each response gets a watermark id ``w = HMAC-SM3(K, recipient ‖ request_id)[:8]`` and a
  256-bit codeword ``C_w = HMAC-SM3(K, "cw" ‖ w)``.
- *Carrier cells* are found by content only, never by field name or position, so the mark
  survives row subsets, shuffling, dropped or renamed columns and JSON ↔ CSV ↔ NDJSON
  conversion:

  - money-like numbers (a JSON float, or a string ``123.45``) with ``|x| >= 1``: one bit in
    the parity of the cents (the value moves by at most 0.01);
  - free text with Chinese characters that is not an identifier (addresses, company
    names, …), at least 4 characters: up to 3 bits, each an invisible zero-width
    character (U+200B = 0, U+200C = 1) inserted at fixed fractions of the text.
    Identifiers (ID numbers, names, phones, …) are never touched: masked or clear, they
    stay valid and joinable.

- A carrier with *anchor* ``a`` (the value without its carrier bit) gets the keyed position
  ``p = h[0]`` and whitening bit ``h[1] & 1`` with ``h = HMAC-SM3(K, a)``; it carries
  ``C_w[p] XOR whitening``.
- Tracing reads every carrier of a file (one vote per distinct anchor), and scores every
  issued watermark: ``matches`` of ``n`` votes agree with its codeword. On data that was
  not marked for ``w``, each vote agrees with probability 1/2 independently (the keyed
  whitening), so ``P[matches >= m] = binomial tail(n, m, 1/2)``; multiplied by the number
  of candidates (union bound) this is the false-attribution bound reported.
"""

from __future__ import annotations

import hmac as _hmac
import math
import re
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from .columns import column, store
from .detectors import is_cn_name, is_valid_cn_plate
from .masking import records_of

__all__ = [
    "ALPHA",
    "CODEWORD_BITS",
    "REGISTRY_FILE",
    "Candidate",
    "TraceResult",
    "WatermarkIssue",
    "WatermarkPlan",
    "WatermarkRegistry",
    "Watermarker",
    "binomial_tail",
    "read_votes",
]

CODEWORD_BITS = 256
REGISTRY_FILE = "watermarks.db"  # under HOME
ALPHA = 1e-9  # attribute only when the false-attribution bound is at most this
TEXT_SLOTS = 3
MIN_TEXT = 4
ZW0, ZW1 = "\u200b", "\u200c"
_ZW = re.compile("[\u200b\u200c]")
_MONEY = re.compile(r"-?\d{1,13}\.\d{1,2}")
_MONEY_START = frozenset("-0123456789")
_MAX_MONEY = 1e13  # beyond this, cents no longer survive a float round trip exactly
_CJK = re.compile("[\u4e00-\u9fff]")
_PRF_CACHE = 1 << 16
MEMO_SIZE = 8192
LEARN_RECORDS = 64  # records inspected in full before a response's carrier columns are fixed
MIN_CARRIER_CELLS = 16  # a column carries in at least this many of them to be marked afterwards


@dataclass(frozen=True, slots=True)
class WatermarkIssue:
    watermark_id: str
    recipient: str
    request_id: str
    dataset: str = ""
    issued_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Candidate:
    issue: WatermarkIssue
    matches: int
    votes: int
    p_value: float  # false-attribution bound: binomial tail × number of candidates


@dataclass(frozen=True, slots=True)
class TraceResult:
    votes: int
    candidates: int
    alpha: float
    attributed: tuple[Candidate, ...] = ()  # best first; empty: nobody is named
    best: Candidate | None = None

    @property
    def recipient(self) -> str | None:
        return self.attributed[0].issue.recipient if self.attributed else None

    @property
    def request_id(self) -> str | None:
        return self.attributed[0].issue.request_id if self.attributed else None

    def to_dict(self) -> dict[str, Any]:
        def cand(c: Candidate) -> dict[str, Any]:
            return {"watermark_id": c.issue.watermark_id, "recipient": c.issue.recipient,
                    "request_id": c.issue.request_id, "dataset": c.issue.dataset,
                    "matches": c.matches, "votes": c.votes, "p_value": c.p_value}

        return {"attributed": bool(self.attributed), "recipient": self.recipient,
                "request_id": self.request_id, "votes": self.votes,
                "candidates": self.candidates, "alpha": self.alpha,
                "matches": [cand(c) for c in self.attributed],
                "best_unattributed": cand(self.best) if self.best and not self.attributed else None}


@lru_cache(maxsize=4096)
def binomial_tail(n: int, m: int) -> float:
    """P[X >= m] for X ~ Binomial(n, 1/2), to double precision."""
    if m <= 0:
        return 1.0
    if m > n:
        return 0.0
    if 2 * m <= n:  # terms would grow: use the (decreasing) complement
        return max(0.0, 1.0 - binomial_tail(n, n - m + 1))
    # Σ_{k>=m} C(n,k) / 2^n = C(n,m)/2^n · Σ r_k with r_{k+1} = r_k (n-k)/(k+1), decreasing
    log_first = math.lgamma(n + 1) - math.lgamma(m + 1) - math.lgamma(n - m + 1) - n * math.log(2)
    total, r = 1.0, 1.0
    for k in range(m, n):
        r *= (n - k) / (k + 1)
        total += r
        if r < 1e-17 * total:
            break
    return min(1.0, math.exp(log_first + math.log(total)))


# ------------------------------------------------------------------ the keyed scheme


class Watermarker:
    """Marks records for a (recipient, request) and traces files back to them.

    ``key`` is the watermark key (:attr:`.keys.ProtectionKeys.watermark`); ``registry``
    records every issued watermark so :meth:`trace` knows the candidates.
    """

    def __init__(self, key: bytes, registry: WatermarkRegistry | None = None) -> None:
        if len(key) < 16:
            raise ValueError("the watermark key must be at least 128 bits")
        # HMAC-SM3 through OpenSSL (same function as ztgw.crypto.sm3.hmac); copying a keyed
        # context saves the two key-block compressions per carrier
        self._base = _hmac.new(bytes(key), digestmod="sm3")
        self.registry = registry
        self._prf = lru_cache(maxsize=_PRF_CACHE)(self._prf_raw)

    def _prf_raw(self, anchor: str) -> bytes:
        h = self._base.copy()
        h.update(anchor.encode("utf-8"))
        return h.digest()

    def watermark_id(self, recipient: str, request_id: str) -> str:
        return self._prf_raw("id\x00" + recipient + "\x00" + request_id)[:8].hex()

    def codeword(self, watermark_id: str) -> int:
        return int.from_bytes(self._prf("cw\x00" + watermark_id), "big")

    def plan(self, recipient: str, request_id: str, dataset: str = "") -> WatermarkPlan:
        """The per-response plan; registers the issue when a registry is attached."""
        wid = self.watermark_id(recipient, request_id)
        issue = WatermarkIssue(wid, recipient, request_id, dataset, time.time())
        if self.registry is not None:
            self.registry.record(issue)
        return WatermarkPlan(self, issue, self.codeword(wid))

    def mark_records(self, records: list[dict[str, Any]], recipient: str, request_id: str,
                     dataset: str = "") -> list[dict[str, Any]]:
        """Mark ``records`` in place for (recipient, request) and return them."""
        plan = self.plan(recipient, request_id, dataset)
        for rec in records:
            plan.record(rec)
        return records

    # -- one value
    def _bit(self, codeword: int, h: bytes, slot: int) -> int:
        return (codeword >> h[2 * slot]) & 1 ^ (h[2 * slot + 1] & 1)

    def mark_value(self, value: Any, codeword: int) -> tuple[Any, int]:
        """(marked value, bits embedded)."""
        if isinstance(value, float):
            if not math.isfinite(value) or not 1 <= abs(value) < _MAX_MONEY:
                return value, 0
            cents = round(value * 100)
            bit = self._bit(codeword, self._prf("n" + str(cents >> 1)), 0)
            return ((cents & ~1) | bit) / 100, 1
        if not isinstance(value, str) or len(value) < MIN_TEXT - 1:
            return value, 0
        if value[0] in _MONEY_START:  # only money: text starting with a digit never carries
            if "." not in value or not _MONEY.fullmatch(value):
                return value, 0
            cents = round(float(value) * 100)
            if abs(cents) < 100:
                return value, 0
            bit = self._bit(codeword, self._prf("n" + str(cents >> 1)), 0)
            cents = (cents & ~1) | bit
            return f"{'-' if cents < 0 else ''}{abs(cents) // 100}.{abs(cents) % 100:02d}", 1
        base = _ZW.sub("", value) if ("\u200b" in value or "\u200c" in value) else value
        slots = _text_slots(base)
        if not slots:
            return value, 0
        h = self._prf("t" + base)
        out, prev = [], 0
        for i, cut in enumerate(slots):
            out.append(base[prev:cut])
            out.append(ZW1 if self._bit(codeword, h, i) else ZW0)
            prev = cut
        out.append(base[prev:])
        return "".join(out), len(slots)

    # -- tracing
    def trace(self, records: Iterable[Mapping[str, Any]], candidates: Iterable[WatermarkIssue] | None = None,
              *, alpha: float = ALPHA) -> TraceResult:
        if candidates is None:
            candidates = self.registry.all() if self.registry is not None else []
        votes = read_votes(self, records)
        n = sum(z + o for z, o in votes.values())
        cands = list(candidates)
        scored: list[Candidate] = []
        zeros = sum(z for z, _ in votes.values())
        diffs = [(pos, o - z) for pos, (z, o) in votes.items()]
        for issue in cands:
            cw = self.codeword(issue.watermark_id)
            m = zeros + sum(d for pos, d in diffs if (cw >> pos) & 1)
            scored.append(Candidate(issue, m, n, min(1.0, binomial_tail(n, m) * max(1, len(cands)))))
        scored.sort(key=lambda c: (c.p_value, -c.matches))
        hits = tuple(c for c in scored if c.p_value <= alpha)
        return TraceResult(n, len(cands), alpha, hits, scored[0] if scored else None)


# ints never carry and must not share a table with floats (1 == 1.0 == True)
_FLAT_CARRIERS = frozenset({str, float, type(None)})


def _text_slots(base: str) -> tuple[int, ...]:
    """Cut points for the zero-width bits of an eligible free-text value, else ()."""
    n = len(base)
    if n < MIN_TEXT or _CJK.search(base) is None:
        return ()
    return _cjk_slots(base)


@lru_cache(maxsize=_PRF_CACHE)  # category values (民族, 行业, …) repeat in every page
def _cjk_slots(base: str) -> tuple[int, ...]:
    # identifiers stay exactly valid; a string with Chinese characters can only be a name,
    # a plate or an address (allowed) — the others are ASCII-only
    if is_cn_name(base) or (len(base) <= 9 and is_valid_cn_plate(base)):
        return ()
    n = len(base)
    k = min(TEXT_SLOTS, n // MIN_TEXT)
    return tuple((i + 1) * n // (k + 1) for i in range(k))


def read_votes(wm: Watermarker, records: Iterable[Mapping[str, Any]]) -> dict[int, tuple[int, int]]:
    """Codeword-bit votes per position, one per distinct anchor (conflicting anchors dropped)."""
    seen: dict[tuple[str, int], tuple[int, int]] = {}
    dropped: set[tuple[str, int]] = set()

    def vote(anchor: str, slot: int, observed: int) -> None:
        key = (anchor, slot)
        if key in dropped:
            return
        h = wm._prf(anchor)
        v = (h[2 * slot], observed ^ (h[2 * slot + 1] & 1))
        old = seen.get(key)
        if old is None:
            seen[key] = v
        elif old != v:
            del seen[key]
            dropped.add(key)

    def visit(value: Any, depth: int) -> None:
        if isinstance(value, dict):
            if depth < 16:
                for v in value.values():
                    visit(v, depth + 1)
        elif isinstance(value, list):
            if depth < 16:
                for v in value:
                    visit(v, depth + 1)
        elif isinstance(value, float):
            if math.isfinite(value) and 1 <= abs(value) < _MAX_MONEY:
                cents = round(value * 100)
                vote("n" + str(cents >> 1), 0, cents & 1)
        elif isinstance(value, str):
            if value[:1] in _MONEY_START:
                if _MONEY.fullmatch(value):
                    cents = round(float(value) * 100)
                    if abs(cents) >= 100:
                        vote("n" + str(cents >> 1), 0, cents & 1)
                return
            marks = _ZW.findall(value)
            if not marks:
                return
            base = _ZW.sub("", value)
            if len(marks) != len(_text_slots(base)):
                return  # damaged or not ours
            for i, zw in enumerate(marks):
                vote("t" + base, i, 1 if zw == ZW1 else 0)

    for rec in records:
        visit(rec, 0)
    out: dict[int, list[int]] = {}
    for pos, bit in seen.values():
        out.setdefault(pos, [0, 0])[bit] += 1
    return {p: (z, o) for p, (z, o) in out.items()}


# ------------------------------------------------------------------ per-response plan


@dataclass(slots=True)
class WatermarkPlan:
    """Marks the records of one response (JSON, NDJSON, CSV bodies, or record by record)."""

    marker: Watermarker
    issue: WatermarkIssue
    codeword: int
    bits: int = field(default=0)
    # Carrier columns are learnt from the first records; later records only visit those.
    # Skipping an eligible cell is safe: the tracer reads every carrier it finds and an
    # unmarked one is just a coin-flip vote.
    _seen: dict[str, int] = field(default_factory=dict)
    _learning: int = LEARN_RECORDS
    _keys: tuple[str, ...] | None = None
    _memo: dict[Any, tuple[Any, int]] = field(default_factory=dict)  # repeated values, one response

    @property
    def watermark_id(self) -> str:
        """Put this in the audit event as ``ztgw.watermark.id``."""
        return self.issue.watermark_id

    def record(self, rec: dict[str, Any]) -> int:
        keys = self._keys
        if keys is None:
            n = self._record(rec, rec.keys(), learn=True)
            self._learning -= 1
            if self._learning <= 0:
                # a column where few learnt cells carried (a rare long district name, a
                # minority's 民族) adds few votes but costs a full column pass: skipped
                self._keys = tuple(k for k, c in self._seen.items() if c >= MIN_CARRIER_CELLS)
        else:
            n = self._record(rec, keys, learn=False)
        self.bits += n
        return n

    def _record(self, rec: dict[str, Any], keys: Iterable[str], *, learn: bool) -> int:
        n = 0
        mark = self.marker.mark_value
        cw = self.codeword
        memo = self._memo
        for k in keys:
            v = rec.get(k)
            t = type(v)
            if t is str:
                # cheap pre-filter, same rule as mark_value: money starts with a digit or '-'
                # and has a '.', text carriers hold Chinese characters
                if len(v) < MIN_TEXT - 1:  # type: ignore[arg-type]
                    continue
                if v[0] in _MONEY_START:  # type: ignore[index]
                    if "." not in v:  # type: ignore[operator]
                        continue
                elif len(v) < MIN_TEXT or _CJK.search(v) is None:  # type: ignore[arg-type]
                    continue
            elif t is dict:
                sub = _NestedPlan(self.marker, cw)
                n += sub._record(v, list(v), learn=False)  # type: ignore[union-attr, arg-type]
                if learn:
                    self._seen[k] = LEARN_RECORDS  # nested values are always visited
                continue
            elif t is list:
                sub = _NestedPlan(self.marker, cw)
                for item in v:  # type: ignore[union-attr]
                    if isinstance(item, dict):
                        n += sub._record(item, list(item), learn=False)
                if learn:
                    self._seen[k] = LEARN_RECORDS
                continue
            elif t is not float:
                continue
            hit = memo.get(v)
            if hit is None:
                hit = mark(v, cw)
                if len(memo) < MEMO_SIZE:
                    memo[v] = hit
            if hit[1]:
                rec[k] = hit[0]
                n += hit[1]
                if learn:
                    self._seen[k] = self._seen.get(k, 0) + 1
        return n

    def records(self, recs: list[Any]) -> int:
        """Mark a list of records in place (column by column once the carriers are learnt)."""
        learnt = 0
        i = 0
        while self._keys is None and i < len(recs):
            if type(recs[i]) is dict:
                learnt += self.record(recs[i])  # counts its own bits
            i += 1
        if self._keys is None:
            return learnt
        mark, cw, memo = self.marker.mark_value, self.codeword, self._memo
        rest = [r for r in recs[i:] if type(r) is dict]
        n = 0
        for k in self._keys:
            have, values, kinds = column(rest, k)
            if kinds <= _FLAT_CARRIERS:  # the common case: strings / floats / nulls, batch-wise
                # each distinct value is marked once (the batch is already in memory, so is
                # this table of its distinct values), then written back
                table = {v: memo.get(v) or mark(v, cw) for v in set(values)}
                if len(memo) < MEMO_SIZE and len(table) < MEMO_SIZE:
                    memo.update(table)
                if any(h[1] for h in table.values()):
                    # every cell written through the table, carriers or not (an unchanged cell
                    # gets its own value back): a C-level map beats picking the carriers out
                    out = {v: h[0] if h[1] else v for v, h in table.items()}
                    bits = {v: h[1] for v, h in table.items()}
                    store(have, k, list(map(out.__getitem__, values)))
                    n += sum(map(bits.__getitem__, values))
                continue
            for rec in have:
                v = rec[k]
                t = type(v)
                if t is str or t is float:
                    hit = memo.get(v)
                    if hit is None:
                        hit = mark(v, cw)
                        if len(memo) < MEMO_SIZE:
                            memo[v] = hit
                    if hit[1]:
                        rec[k] = hit[0]
                        n += hit[1]
                elif t is dict or t is list:
                    n += _NestedPlan(self.marker, cw)._record({k: v}, (k,), learn=False)
        self.bits += n
        return learnt + n

    def csv_row(self, row: list[str]) -> None:  # CSV rows are short lists: visit every cell
        mark, cw = self.marker.mark_value, self.codeword
        for i, cell in enumerate(row):
            new, b = mark(cell, cw)
            if b:
                row[i] = new
                self.bits += b

    def json_body(self, body: bytes) -> tuple[bytes, int]:
        doc = orjson.loads(body)
        recs = records_of(doc)
        self.records(recs)
        return orjson.dumps(doc), sum(1 for r in recs if type(r) is dict)


class _NestedPlan:
    """Nested objects are visited in full (no column learning)."""

    def __init__(self, marker: Watermarker, codeword: int) -> None:
        self.marker, self.codeword = marker, codeword
        self._seen: dict[str, int] = {}
        self._memo: dict[Any, tuple[Any, int]] = {}

    _record = WatermarkPlan._record


# ------------------------------------------------------------------ registry


class WatermarkRegistry:
    """Issued watermarks in SQLite (``HOME/watermarks.db``): the candidates of a trace.

    Holds no personal data: the recipient's client id, the request id, the dataset."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.touch(mode=0o600)
        self._db = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS issued (watermark_id TEXT PRIMARY KEY, recipient TEXT NOT NULL,"
            " request_id TEXT NOT NULL, dataset TEXT NOT NULL, issued_at REAL NOT NULL)")

    def record(self, issue: WatermarkIssue) -> None:
        self._db.execute("INSERT OR IGNORE INTO issued VALUES (?, ?, ?, ?, ?)",
                         (issue.watermark_id, issue.recipient, issue.request_id, issue.dataset,
                          issue.issued_at))

    def all(self) -> list[WatermarkIssue]:
        rows = self._db.execute("SELECT watermark_id, recipient, request_id, dataset, issued_at FROM issued")
        return [WatermarkIssue(*r) for r in rows]

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM issued").fetchone()[0])

    def close(self) -> None:
        self._db.close()
