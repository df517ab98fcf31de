"""Audit of the identity provider: "no audit, no access" for sign-ins and tokens, and an
outbox that carries administrators' CLI actions into the trail.

Sign-ins and token issuance are recorded *before* the cookie or token leaves the gateway; when
the trail refuses the event (:class:`~ztgw.audit.errors.AuditUnavailable`: spool over quota,
writer failed, queue full) the grant is refused instead (``AuditRefused``).  Failure events
(wrong password, bad client) are best effort: refusing them would change nothing for the caller.

``ztgw users disable``, ``ztgw sessions end`` and the other admin commands run in their own
process while ``ztgw serve`` owns the audit spool (one writer per home).  They write their event
into the table ``identity_audit_outbox`` of the directory database — in the same command, before
reporting success — and the running gateway's :class:`OutboxRelay` moves each row into the trail
(at least once) within a second.  Events hold who did what to whom, never a secret.
"""

from __future__ import annotations

import fcntl
import getpass
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
import structlog

from ztgw.audit.errors import AuditUnavailable, InvalidEvent
from ztgw.audit.events import iam_event

from .store import create_tables, identity_audit_outbox, now

# Actions that grant access: the event must be in the trail's queue before the grant leaves.
# (A federated or certificate sign-in ends in "login-succeeded" too.)
REQUIRED_ACTIONS = frozenset({"login-succeeded", "token-issued", "authorization-code-issued"})
ADMIN_DATASET = "ztgw.admin"
RELAY_INTERVAL = 0.5  # seconds between outbox polls (admin events reach the trail within 1 s)
RELAY_BATCH = 200
RELAY_WAIT = 5.0  # seconds to wait for the spool to acknowledge a batch

log = structlog.get_logger("ztgw.identity")


class AuditRefused(Exception):
    """The audit trail refused an event that must be recorded before access is granted."""


def cli_actor() -> str:
    """Who ran an admin command: the operating-system account (the CLI has no other login)."""
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        return "os:unknown"


def admin_event(action: str, *, actor: str, target: str | None = None,
                reason: str | None = None, details: dict[str, Any] | None = None,
                outcome: str = "success") -> dict[str, Any]:
    """An identity-administration event (``event.dataset: ztgw.admin``, like the admin API's):
    ``user-disabled``, ``session-ended``, ``client-added``, ``totp-enrolled``, ``key-rotated`` …
    ``details`` must hold only public facts (ids, algorithms, counts) — never a secret."""
    event = iam_event(action=action, outcome=outcome, actor=actor, target=target, reason=reason)
    event["event"]["dataset"] = ADMIN_DATASET
    event["event"]["provider"] = "ztgw-cli"
    event["data_stream"]["dataset"] = ADMIN_DATASET
    if details:
        event["ztgw"]["identity"] = details
    return event


class AdminAudit:
    """The CLI side: put an event into the outbox (raises on a database error, so the command
    fails rather than act unrecorded)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        create_tables(engine)

    def record(self, action: str, *, target: str | None = None, reason: str | None = None,
               details: dict[str, Any] | None = None) -> None:
        doc = admin_event(action, actor=cli_actor(), target=target, reason=reason, details=details)
        with self.engine.begin() as conn:
            conn.execute(sa.insert(identity_audit_outbox).values(
                created_at=now(), doc=orjson.dumps(doc).decode()))


class OutboxRelay:
    """The gateway side: a thread that moves outbox rows into the audit trail.  A row is deleted
    only after the spool acknowledged it, so a crash in between repeats it (at least once;
    each copy carries the same ``event.id``)."""

    def __init__(self, engine: sa.Engine, emit: Callable[[dict[str, Any]], Future[None]],
                 lock_path: Path | None = None) -> None:
        """``lock_path``: with several worker processes on one home, only the process holding
        this file lock relays (fewer duplicates; replicas on other hosts may still repeat a
        row — at least once, same ``event.id``)."""
        self.engine, self._emit = engine, emit
        create_tables(engine)
        self._lock_path = lock_path
        self._lock_fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.relayed = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ztgw-identity-outbox", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock for another worker
            self._lock_fd = None

    def _leader(self) -> bool:
        if self._lock_path is None or self._lock_fd is not None:
            return True
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _run(self) -> None:
        while not self._stop.wait(RELAY_INTERVAL):
            try:
                if self._leader():
                    self.relay_once()
            except Exception as exc:  # the database or the trail is away: try again later
                log.warning("identity audit outbox relay failed", error=type(exc).__name__)

    def relay_once(self) -> int:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(identity_audit_outbox.c.seq, identity_audit_outbox.c.doc)
                                .order_by(identity_audit_outbox.c.seq).limit(RELAY_BATCH)).all()
        done: list[int] = []
        try:
            for seq, doc in rows:
                try:
                    self._emit(orjson.loads(doc)).result(RELAY_WAIT)
                except (InvalidEvent, orjson.JSONDecodeError, TypeError):
                    log.error("unreadable identity audit outbox row dropped", seq=seq)
                except AuditUnavailable:
                    break
                done.append(seq)
        finally:
            if done:
                with self.engine.begin() as conn:
                    conn.execute(sa.delete(identity_audit_outbox)
                                 .where(identity_audit_outbox.c.seq.in_(done)))
        self.relayed += len(done)
        return len(done)
