"""Audit events through structlog: a processor pipeline over a dict whose last step is the trail.

Any component can write an audit event with structlog's API and ECS dotted keys::

    audit = audit_logger(log, dataset="ztgw.iam")
    done = audit.info("grant approved", **{"event.action": "access-grant-approved",
                                           "user.name": "owner1", "user.target.name": "app"})

``done`` is the future of :meth:`AuditLog.emit` (wait on it for 重要/核心 decisions).  The
pipeline: structlog's message → ``message``; dotted keys → nested ECS objects; ECS base fields
(``@timestamp``, ``ecs.version``, ``event.id``, ``event.kind``, data stream).  The audit writer then
cleans every string and fingerprints secret-named fields (:func:`.events.sanitize`).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from concurrent.futures import Future
from typing import Any

import structlog

from .events import ECS_VERSION, iso_now, new_event_id
from .log import AuditLog

EventDict = MutableMapping[str, Any]


def nest_dotted(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """``{"user.name": "x"}`` → ``{"user": {"name": "x"}}`` (ECS documents are nested)."""
    message = event_dict.pop("event", None)
    out: dict[str, Any] = {}
    for key, value in event_dict.items():
        parts = str(key).split(".")
        cur = out
        for part in parts[:-1]:
            nxt = cur.get(part)
            if not isinstance(nxt, dict):
                nxt = cur[part] = {}
            cur = nxt
        cur[parts[-1]] = value
    if message is not None:
        out["message"] = str(message)
    return out


def ecs_base(dataset: str) -> Any:
    def add(_: Any, method: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("@timestamp", iso_now())
        event_dict.setdefault("ecs", {"version": ECS_VERSION})
        ev = event_dict.setdefault("event", {})
        ev.setdefault("id", new_event_id())
        ev.setdefault("kind", "alert" if method in ("warning", "error", "critical") else "event")
        ev.setdefault("dataset", dataset)
        ev.setdefault("module", "ztgw")
        event_dict.setdefault("data_stream", {"type": "logs", "dataset": ev["dataset"],
                                              "namespace": "default"})
        return event_dict
    return add


class _TrailWriter:
    """structlog's "logger": every level hands the finished document to the trail."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    def _emit(self, **event: Any) -> Future[None]:
        return self._log.emit(event)

    info = debug = warning = error = critical = msg = _emit


def audit_logger(log: AuditLog, *, dataset: str = "ztgw.audit") -> Any:
    """A structlog logger whose events land in the audit trail (returns the emit future)."""
    return structlog.wrap_logger(
        _TrailWriter(log),
        processors=[structlog.contextvars.merge_contextvars, nest_dotted, ecs_base(dataset)],
    )
