"""Automatic response: temporary IP blocks, account locks, token revocations, risk scores.

Every action has an expiry, is audited when taken and when undone, and can be undone by id
(``ztgw alerts undo``).  Actions live in a small SQLite book under the home, so the gateway
process that takes them and the operator's CLI that lifts them agree; the data plane reads
them through :class:`Blocklist`, an in-memory snapshot refreshed at most once a second, so a
check costs a dict lookup.

Where the data plane should consult it (wired by the gateway's owner):
  * before authentication — ``blocklist.blocked_ip(source_ip)`` → 403 ``address_blocked``;
  * after token verification — ``blocklist.token_revoked(fingerprint(jti))`` → 401;
    ``blocklist.account_locked(subject.name)`` → 403 ``account_locked``;
  * into the policy environment — ``blocklist.risk(subject.name)`` (0–100) as
    ``environment.risk_score``, which the policies turn into step-up or deny.
The sign-in form should check ``account_locked`` and ``blocked_ip`` as well.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from ztgw.audit.events import ECS_VERSION, clean, iso_now, new_event_id

from .errors import BadInput

Kind = Literal["block-ip", "lock-account", "revoke-token", "raise-risk"]
KINDS: tuple[str, ...] = ("block-ip", "lock-account", "revoke-token", "raise-risk")
MAX_TTL = 7 * 86_400  # no automatic action outlives a week without a person renewing it
REFRESH = 1.0  # seconds between snapshot reloads in the data plane


@dataclass(frozen=True, slots=True)
class ResponseAction:
    id: int
    kind: str
    target: str
    value: float
    reason: str
    rule_id: str
    alert_id: str
    created: float
    expires: float
    undone: float | None = None
    undone_by: str | None = None

    @property
    def active(self) -> bool:
        return self.undone is None and self.expires > time.time()

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "active": self.active}


class ResponseActions(Protocol):
    """What the detection engine asks of the data plane (in-process implementation below)."""

    def block_ip(self, ip: str, ttl: float, *, reason: str, rule_id: str, alert_id: str
                 ) -> ResponseAction: ...
    def lock_account(self, user: str, ttl: float, *, reason: str, rule_id: str, alert_id: str
                     ) -> ResponseAction: ...
    def revoke_token(self, fingerprint: str, ttl: float, *, reason: str, rule_id: str,
                     alert_id: str) -> ResponseAction: ...
    def raise_risk(self, subject: str, delta: float, ttl: float, *, reason: str, rule_id: str,
                   alert_id: str) -> ResponseAction: ...


def response_event(action: ResponseAction, verb: str, actor: str = "ztgw-detection"
                   ) -> dict[str, Any]:
    """The audit record of an action taken, undone or expired (dataset ``ztgw.response``)."""
    return {
        "@timestamp": iso_now(), "ecs": {"version": ECS_VERSION},
        "message": clean(f"{action.kind} {verb}: {action.target}", 256),
        "event": {"id": new_event_id(), "kind": "event", "category": ["intrusion_detection"],
                  "type": ["deletion" if verb == "undone" else "creation"],
                  "action": f"response-{action.kind}-{verb}", "outcome": "success",
                  "dataset": "ztgw.response", "module": "ztgw", "provider": "detection"},
        "data_stream": {"type": "logs", "dataset": "ztgw.response", "namespace": "default"},
        "user": {"name": clean(actor, 128)},
        "rule": {"id": clean(action.rule_id, 128)},
        "ztgw": {"response": {"id": action.id, "kind": action.kind,
                              "target": clean(action.target, 128), "value": action.value,
                              "expires": action.expires, "alert_id": action.alert_id}},
    }


_SCHEMA = """
CREATE TABLE IF NOT EXISTS response (
  id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, target TEXT NOT NULL,
  value REAL NOT NULL DEFAULT 0, reason TEXT NOT NULL, rule_id TEXT NOT NULL,
  alert_id TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL,
  undone REAL, undone_by TEXT, undo_audited INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS response_active ON response (kind, target, expires);
CREATE TABLE IF NOT EXISTS alert_ack (
  alert_id TEXT PRIMARY KEY, acked_at REAL NOT NULL, acked_by TEXT NOT NULL, note TEXT,
  audited INTEGER NOT NULL DEFAULT 0);
"""


def open_db(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(_SCHEMA)
    return conn


class ResponseBook:
    """The book of actions (SQLite, shared by the gateway and the CLI)."""

    def __init__(self, path: Path, emit: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.path = path
        self._conn = open_db(path)
        self._lock = threading.Lock()
        self._emit = emit or (lambda _e: None)

    def close(self) -> None:
        self._conn.close()

    def _row(self, r: tuple[Any, ...]) -> ResponseAction:
        return ResponseAction(*r)

    _COLS = "id, kind, target, value, reason, rule_id, alert_id, created, expires, undone, undone_by"

    def take(self, kind: str, target: str, ttl: float, *, value: float = 0.0, reason: str,
             rule_id: str, alert_id: str) -> ResponseAction:
        if kind not in KINDS:
            raise BadInput(f"unknown response kind {kind!r}")
        if not target or len(target) > 256:
            raise BadInput("a response needs a target of at most 256 characters")
        ttl = max(1.0, min(float(ttl), MAX_TTL))
        now = time.time()
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO response (kind, target, value, reason, rule_id, alert_id, created,"
                " expires) VALUES (?,?,?,?,?,?,?,?)",
                (kind, target, value, reason[:512], rule_id, alert_id, now, now + ttl))
            action = ResponseAction(int(cur.lastrowid or 0), kind, target, value, reason[:512],
                                    rule_id, alert_id, now, now + ttl)
        self._emit(response_event(action, "taken"))
        return action

    # the ResponseActions protocol
    def block_ip(self, ip: str, ttl: float, *, reason: str, rule_id: str, alert_id: str
                 ) -> ResponseAction:
        return self.take("block-ip", ip, ttl, reason=reason, rule_id=rule_id, alert_id=alert_id)

    def lock_account(self, user: str, ttl: float, *, reason: str, rule_id: str, alert_id: str
                     ) -> ResponseAction:
        return self.take("lock-account", user, ttl, reason=reason, rule_id=rule_id,
                         alert_id=alert_id)

    def revoke_token(self, fingerprint: str, ttl: float, *, reason: str, rule_id: str,
                     alert_id: str) -> ResponseAction:
        return self.take("revoke-token", fingerprint, ttl, reason=reason, rule_id=rule_id,
                         alert_id=alert_id)

    def raise_risk(self, subject: str, delta: float, ttl: float, *, reason: str, rule_id: str,
                   alert_id: str) -> ResponseAction:
        return self.take("raise-risk", subject, ttl, value=delta, reason=reason, rule_id=rule_id,
                         alert_id=alert_id)

    def get(self, action_id: int) -> ResponseAction | None:
        r = self._conn.execute(f"SELECT {self._COLS} FROM response WHERE id = ?",  # noqa: S608
                               (action_id,)).fetchone()
        return self._row(r) if r else None

    def list(self, *, active_only: bool = False, limit: int = 500) -> list[ResponseAction]:
        where = "WHERE undone IS NULL AND expires > ?" if active_only else "WHERE ? IS NOT NULL"
        rows = self._conn.execute(
            f"SELECT {self._COLS} FROM response {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
            (time.time(), limit)).fetchall()
        return [self._row(r) for r in rows]

    def active(self) -> list[ResponseAction]:
        return self.list(active_only=True, limit=100_000)

    def undo(self, action_id: int, actor: str) -> ResponseAction:
        """Lift an action now; the gateway audits it (:meth:`audit_undone`)."""
        with self._lock:
            cur = self._conn.execute(
                "UPDATE response SET undone = ?, undone_by = ? WHERE id = ? AND undone IS NULL",
                (time.time(), actor[:128], action_id))
        action = self.get(action_id)
        if action is None:
            raise BadInput(f"no response action {action_id}")
        if cur.rowcount == 0:
            raise BadInput(f"response action {action_id} was already undone")
        return action

    def audit_undone(self) -> int:
        """Emit the audit record of every undo not yet audited (the CLI cannot reach the
        gateway's trail; the gateway does this on each refresh)."""
        rows = self._conn.execute(
            f"SELECT {self._COLS} FROM response WHERE undone IS NOT NULL AND undo_audited = 0"  # noqa: S608
        ).fetchall()
        for r in rows:
            a = self._row(r)
            self._emit(response_event(a, "undone", a.undone_by or "operator"))
            self._conn.execute("UPDATE response SET undo_audited = 1 WHERE id = ?", (a.id,))
        return len(rows)

    def audit_acks(self) -> int:
        """Emit the audit record of every acknowledgement not yet audited."""
        rows = self._conn.execute(
            "SELECT alert_id, acked_by, note FROM alert_ack WHERE audited = 0").fetchall()
        for alert_id, actor, note in rows:
            self._emit(ack_event(alert_id, actor, note))
            self._conn.execute("UPDATE alert_ack SET audited = 1 WHERE alert_id = ?", (alert_id,))
        return len(rows)


def ack_event(alert_id: str, actor: str, note: str | None) -> dict[str, Any]:
    """The audit record of an acknowledged alert (dataset ``ztgw.response``)."""
    return {
        "@timestamp": iso_now(), "ecs": {"version": ECS_VERSION},
        "message": clean(f"alert {alert_id} acknowledged", 256),
        "event": {"id": new_event_id(), "kind": "event", "category": ["intrusion_detection"],
                  "type": ["change"], "action": "alert-acknowledged", "outcome": "success",
                  "dataset": "ztgw.response", "module": "ztgw", "provider": "detection"},
        "data_stream": {"type": "logs", "dataset": "ztgw.response", "namespace": "default"},
        "user": {"name": clean(actor, 128)},
        "ztgw": {"alert": {"id": clean(alert_id, 64), "note": clean(note or "", 512)}},
    }


class Blocklist:
    """The data plane's read side: O(1) checks on a snapshot refreshed once a second."""

    def __init__(self, book: ResponseBook, refresh: float = REFRESH) -> None:
        self.book = book
        self.refresh = refresh
        self._at = 0.0
        self._snap: dict[str, dict[str, float]] = {k: {} for k in KINDS}
        self._lock = threading.Lock()

    def _snapshot(self) -> dict[str, dict[str, float]]:
        now = time.monotonic()
        if now - self._at >= self.refresh:
            with self._lock:
                if now - self._at >= self.refresh:
                    snap: dict[str, dict[str, float]] = {k: {} for k in KINDS}
                    for a in self.book.active():
                        if a.kind == "raise-risk":
                            snap[a.kind][a.target] = min(100.0, snap[a.kind].get(a.target, 0.0) + a.value)
                        else:
                            snap[a.kind][a.target] = max(snap[a.kind].get(a.target, 0.0), a.expires)
                    self._snap, self._at = snap, now
        return self._snap

    def _live(self, kind: str, key: str | None) -> bool:
        if not key:
            return False
        exp = self._snapshot()[kind].get(key)
        return exp is not None and exp > time.time()

    def blocked_ip(self, ip: str | None) -> bool:
        return self._live("block-ip", ip)

    def account_locked(self, user: str | None) -> bool:
        return self._live("lock-account", user)

    def token_revoked(self, fingerprint: str | None) -> bool:
        return self._live("revoke-token", fingerprint)

    def risk(self, subject: str | None) -> float:
        return self._snapshot()["raise-risk"].get(subject or "", 0.0)

    def invalidate(self) -> None:
        self._at = 0.0
