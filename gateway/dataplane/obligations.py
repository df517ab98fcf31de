"""Carrying out a decision's obligations on one response (the enforcement half of the PDP/PEP).

The engine (``ztgw.policies``) says *what* must happen; this module does it, in one pass over
the records: row filter → projection → mask → watermark, then row limits.  Parameter shapes are
those of ``ztgw.policies.obligations``.  Anything this module cannot carry out raises
:class:`Unenforceable` *before* the upstream is called, and the request is denied.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from ztgw.policies.domain import Decision, Obligation
from ztgw.policies.obligations import MASK, MAX_ROWS, PROJECT, ROW_FILTER, STEP_UP, WATERMARK

from ..errors import ServiceUnavailable
from ..protection.keys import ProtectionKeys
from ..protection.masking import MaskPlan, UnenforceableMask
from ..protection.streaming import Pipeline, RecordWithheld
from ..protection.watermark import Watermarker, WatermarkPlan

ENFORCEABLE = frozenset({MASK, PROJECT, ROW_FILTER, MAX_ROWS, WATERMARK, STEP_UP})


class Unenforceable(ValueError):
    """An obligation the data plane cannot carry out (the request must be denied)."""


class StepUpRequired(Exception):
    """The decision allows only after a stronger authentication (RFC 9470)."""

    def __init__(self, acr_values: list[str]) -> None:
        super().__init__("step-up authentication required")
        self.acr_values = acr_values


@dataclass
class ResponsePlan:
    mask: MaskPlan | None = None
    project: frozenset[str] | None = None
    filters: tuple[tuple[str, frozenset[str]], ...] = ()
    max_rows: int | None = None  # per response
    daily_limit: int | None = None  # records per subject, dataset and day
    watermark: bool = False
    # filled while the response is processed
    touched: set[str] = field(default_factory=set)
    records: int = 0
    dropped: int = 0
    watermark_plan: WatermarkPlan | None = None

    @property
    def empty(self) -> bool:
        return not (self.mask or self.project is not None or self.filters or self.max_rows
                    or self.daily_limit or self.watermark)

    def applied(self) -> list[str]:
        out = []
        if self.filters:
            out.append(ROW_FILTER)
        if self.project is not None:
            out.append(PROJECT)
        if self.mask:
            out.append(MASK)
        if self.watermark:
            out.append(WATERMARK)
        if self.max_rows or self.daily_limit:
            out.append(MAX_ROWS)
        return out


# Compiled mask plans by obligation object.  The engine hands out the same Obligation objects
# for every request its decision memo answers, so a hot (subject, dataset) pair compiles its
# mask once instead of per request (compiling was ~45 % of a small response's CPU).  The
# entry holds the obligation itself, so its id cannot be reused while cached; per-request
# (templated) obligations are new objects and simply miss.  A plan's pseudonym/token maskers
# remember recent raw values (their speed-up within a response): entries are rebuilt after
# MASK_PLAN_TTL seconds so no clear value outlives that in the process.
_MASK_PLANS: dict[int, tuple[Obligation, ProtectionKeys, MaskPlan, float]] = {}
_MASK_PLANS_MAX = 4096
MASK_PLAN_TTL = 60.0


def _mask_plan(ob: Obligation, keys: ProtectionKeys) -> MaskPlan:
    now = time.monotonic()
    hit = _MASK_PLANS.get(id(ob))
    if hit is not None and hit[0] is ob and hit[1] is keys and now - hit[3] < MASK_PLAN_TTL:
        return hit[2]
    try:
        mask = MaskPlan.from_obligation(ob.params, keys=keys)
    except UnenforceableMask as exc:
        raise Unenforceable(str(exc)) from exc
    if len(_MASK_PLANS) >= _MASK_PLANS_MAX:
        _MASK_PLANS.clear()
    _MASK_PLANS[id(ob)] = (ob, keys, mask, now)
    return mask


def build_plan(decision: Decision, keys: ProtectionKeys) -> ResponsePlan:
    plan = ResponsePlan()
    filters: dict[str, frozenset[str]] = {}
    for ob in decision.obligations:
        p = ob.params
        if ob.type not in ENFORCEABLE:
            raise Unenforceable(f"obligation {ob.type!r} cannot be enforced here")
        if ob.type == STEP_UP:
            raise StepUpRequired(list(p.get("acr_values", [])))
        if ob.type == MASK:
            plan.mask = _mask_plan(ob, keys)
        elif ob.type == PROJECT:
            fields = frozenset(str(f) for f in p.get("fields", ()))
            if not fields:
                raise Unenforceable("a projection needs fields")
            plan.project = fields if plan.project is None else plan.project & fields
        elif ob.type == ROW_FILTER:
            if "in" not in p:
                raise Unenforceable("an unresolved row filter reached the data plane")
            name, values = str(p["field"]), frozenset(str(v) for v in p["in"])
            filters[name] = filters[name] & values if name in filters else values
        elif ob.type == MAX_ROWS:
            limit, per = int(p["limit"]), p.get("per", "response")
            if per == "response":
                plan.max_rows = limit if plan.max_rows is None else min(plan.max_rows, limit)
            elif per == "day":
                plan.daily_limit = limit if plan.daily_limit is None else min(plan.daily_limit, limit)
            else:
                raise Unenforceable(f"max_rows per {per!r} is not supported")
        elif ob.type == WATERMARK:
            if p.get("scheme", "recipient") != "recipient":
                raise Unenforceable("unknown watermark scheme")
            plan.watermark = True
    plan.filters = tuple(sorted(filters.items()))
    return plan


def rewrite_query(plan: ResponsePlan, params: list[tuple[str, str]], pushdown: frozenset[str]
                  ) -> list[tuple[str, str]] | None:
    """Push obligations down to the upstream's query where it can apply them.

    A single-value row filter on a field the upstream filters by is forced into the query (a
    caller-chosen value for that field is replaced); ``size`` is capped at the row limit.
    Returns None when the request can only return nothing (the caller asked for a value the
    filter excludes).
    """
    out = list(params)
    for name, allowed in plan.filters:
        if name in pushdown and len(allowed) == 1:
            asked = [v for k, v in out if k == name]
            if any(v not in allowed for v in asked):
                return None
            out = [(k, v) for k, v in out if k != name] + [(name, next(iter(allowed)))]
    if plan.max_rows is not None:
        sizes = [v for k, v in out if k == "size"]
        size = int(sizes[0]) if sizes and sizes[0].isdigit() else None
        if size is None or size > plan.max_rows:
            out = [(k, v) for k, v in out if k != "size"] + [("size", str(plan.max_rows))]
    return out


class SharedQuotaStore(Protocol):
    async def used(self, subject: str, dataset: str) -> int: ...
    async def add(self, subject: str, dataset: str, n: int) -> int: ...


class DailyQuota:
    """Records returned per (subject, dataset, UTC day): in-process, or shared by every replica
    through ``store`` (Redis, :class:`ztgw.gateway.state.limits.RedisQuotaStore`).  A store
    that does not answer refuses the request (503) unless ``fail_open``, which counts locally."""

    def __init__(self, store: SharedQuotaStore | None = None, fail_open: bool = False) -> None:
        self._used: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()
        self.store, self.fail_open = store, fail_open

    async def remaining(self, subject: str, dataset: str, limit: int) -> int:
        if self.store is not None:
            try:
                return limit - await self.store.used(subject, dataset)
            except Exception as exc:
                if not self.fail_open:
                    raise _unavailable() from exc
        day = datetime.now(UTC).date().isoformat()
        return limit - self._used.get((subject, dataset, day), 0)

    async def consume(self, subject: str, dataset: str, n: int) -> None:
        if self.store is not None:
            try:
                await self.store.add(subject, dataset, n)
                return
            except Exception as exc:  # closed: the records are not sent when not accounted
                if not self.fail_open:
                    raise _unavailable() from exc
        self._count(subject, dataset, n)

    def _count(self, subject: str, dataset: str, n: int) -> None:
        day = datetime.now(UTC).date().isoformat()
        with self._lock:
            if len(self._used) > 100_000:
                self._used = {k: v for k, v in self._used.items() if k[2] == day}
            key = (subject, dataset, day)
            self._used[key] = self._used.get(key, 0) + n


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("the shared quota store is unavailable", code="quota_unavailable")


def _keep(plan: ResponsePlan, rec: Mapping[str, Any]) -> bool:
    return all(str(rec.get(name)) in allowed for name, allowed in plan.filters)


def apply_json(plan: ResponsePlan, body: bytes, limit: int | None) -> bytes:
    """A buffered JSON answer through the same pipeline as a streamed one
    (:meth:`ztgw.gateway.protection.streaming.Pipeline.document`): the records are found under
    any documented container key (``items``, ``data``, ``data.list`` …) or are the bare list,
    else the answer is one record (withheld → LookupError); when masking, what lies outside
    the records is masked too. Raises ValueError on an answer it cannot protect."""
    doc = orjson.loads(body)
    pipe = stream_pipeline(plan, limit)
    try:
        doc = pipe.document(doc)
    except RecordWithheld as exc:
        raise LookupError("the record is outside what the caller may see") from exc
    finish_stream(plan, pipe)
    return orjson.dumps(doc)


def apply_csv(plan: ResponsePlan, body: bytes, limit: int | None) -> bytes:
    """A buffered CSV answer through the streaming pipeline (every column of a duplicated
    header name is masked; cells beyond the header are dropped when masking)."""
    pipe = stream_pipeline(plan, limit)
    out = pipe.body(body, "csv")
    finish_stream(plan, pipe)
    return out


class StreamSelector:
    """Row filter → row limit → projection for :class:`ztgw.gateway.protection.streaming.Pipeline`
    (its ``select`` hook): the streaming twin of :func:`apply_json` / :func:`apply_csv`."""

    def __init__(self, plan: ResponsePlan, limit: int | None) -> None:
        self.plan, self.limit, self.kept = plan, limit, 0
        self.may_drop = bool(plan.filters) or limit is not None
        self._filters: list[tuple[int | None, frozenset[str]]] = []
        self._columns: list[int] = []

    def _admit(self) -> bool:
        if self.limit is not None and self.kept >= self.limit:
            return False
        self.kept += 1
        return True

    def record(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        if not _keep(self.plan, rec) or not self._admit():
            return None
        project = self.plan.project
        return rec if project is None else {k: v for k, v in rec.items() if k in project}

    def csv_header(self, header: list[str]) -> list[str]:
        self._filters = [(header.index(name) if name in header else None, allowed)
                         for name, allowed in self.plan.filters]
        self._columns = [i for i, h in enumerate(header)
                         if self.plan.project is None or h in self.plan.project]
        return [header[i] for i in self._columns]

    def csv_row(self, row: list[str]) -> list[str] | None:
        if not row:  # a blank line is no record (as csv.DictReader reads it)
            return None
        for i, allowed in self._filters:
            # a missing column reads as None, exactly as apply_csv's DictReader gives it
            if str(row[i] if i is not None and i < len(row) else None) not in allowed:
                return None
        if not self._admit():
            return None
        return [row[i] if i < len(row) else "" for i in self._columns]


def stream_pipeline(plan: ResponsePlan, limit: int | None) -> Pipeline:
    """A :class:`Pipeline` carrying out ``plan`` record by record — for
    ``BodyStream(pipe, fmt, content_encoding, max_output=...)`` on an upstream body that is
    streamed, not buffered. ``limit`` is what :func:`apply_json` takes (max rows, daily
    remainder). Call :func:`finish_stream` after ``BodyStream.close()``."""
    needs_select = bool(plan.filters) or limit is not None or plan.project is not None
    return Pipeline(mask=plan.mask, watermark=plan.watermark_plan,
                    select=StreamSelector(plan, limit) if needs_select else None)


def finish_stream(plan: ResponsePlan, pipe: Pipeline) -> None:
    """Copy what the stream did into the plan (records, dropped, touched) for the audit event
    and the daily quota, as apply_json does."""
    plan.records, plan.dropped = pipe.records, pipe.dropped
    plan.touched |= pipe.touched


def start_watermark(plan: ResponsePlan, marker: Watermarker, recipient: str, request_id: str,
                    dataset: str) -> None:
    if plan.watermark:
        plan.watermark_plan = marker.plan(recipient, request_id, dataset)
