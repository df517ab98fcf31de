"""Change notices between replicas over Redis pub/sub — an accelerator, never the truth.

Every replica polls the shared database for revocations (``identity.revocation``: ≤ 0.5 s);
this makes the other replicas look *now*.  Nothing depends on a notice arriving: a lost
message (Redis down, a replica reconnecting) costs at most one poll interval.

Publishing needs no change in the code that writes: :func:`watch_engine` hooks the engine and,
when a connection that wrote to a watched table goes back to the pool (after its commit),
publishes the table names.  Subscribers register a callback per table.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from .redis_client import StateSettings, sync_client

log = logging.getLogger("ztgw.state")

CHANNEL = "changes"
# tables whose writes other replicas act on: the revocation list (tokens, refresh families and
# ended sessions all land there) and the grants/consents index (issue 6).  Session rows need
# no notice: every replica reads them from the database on use.
WATCHED = frozenset({"oauth_revoked", "grants", "consents", "grants_changes"})
_WRITE = re.compile(r"^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)\"?", re.IGNORECASE)
_KEY = "ztgw.changed_tables"


class ChangeBus:
    def __init__(self, settings: StateSettings) -> None:
        self.channel = f"{settings.key_prefix}{CHANNEL}"
        self._redis = sync_client(settings, timeout=max(settings.timeout, 0.5))
        self._callbacks: dict[str, list[Callable[[str], None]]] = {}
        self._pubsub: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._outbox: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None
        self._sender_lock = threading.Lock()
        self.published = 0
        self.received = 0

    # --- publishing ----------------------------------------------------------------------
    def publish(self, tables: set[str]) -> None:
        """Queue a notice; a background thread sends it, so the writer never waits on Redis
        (a Redis that is down costs the writer nothing)."""
        self._outbox.put(",".join(sorted(tables)))
        if self._sender is None:
            with self._sender_lock:
                if self._sender is None:
                    self._sender = threading.Thread(target=self._send_loop, daemon=True,
                                                    name="ztgw-change-notices")
                    self._sender.start()

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._outbox.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._redis.publish(self.channel, message)
                self.published += 1
            except Exception as exc:  # an accelerator: the poll still finds the change
                log.warning("change notice not sent: %s", type(exc).__name__)

    def watch_engine(self, engine: sa.Engine, tables: frozenset[str] = WATCHED) -> None:
        """Publish the watched tables a connection wrote once it is back in the pool."""

        @sa.event.listens_for(engine, "after_cursor_execute")
        def _wrote(conn: sa.Connection, _cursor: Any, statement: str, *_: Any) -> None:
            m = _WRITE.match(statement)
            if m and m.group(1).lower() in tables:
                conn.info.setdefault(_KEY, set()).add(m.group(1).lower())

        @sa.event.listens_for(engine.pool, "checkin")
        def _returned(_dbapi_conn: Any, record: Any) -> None:
            changed = record.info.pop(_KEY, None) if record is not None else None
            if changed:
                self.publish(changed)

    # --- subscribing ---------------------------------------------------------------------
    def on_change(self, table: str, callback: Callable[[str], None]) -> None:
        self._callbacks.setdefault(table, []).append(callback)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ztgw-change-bus", daemon=True)
        self._thread.start()

    def _subscribe(self) -> Any:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.channel)
        return pubsub

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._pubsub is None:
                    self._pubsub = self._subscribe()
                msg = self._pubsub.get_message(timeout=0.5)
            except Exception as exc:  # connection lost: the DB poll carries on; retry
                log.warning("change bus: redis error %s", type(exc).__name__)
                with contextlib.suppress(Exception):
                    if self._pubsub is not None:
                        self._pubsub.close()
                self._pubsub = None
                self._stop.wait(1.0)
                continue
            if not msg:
                continue
            self.received += 1
            data = msg.get("data")
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
            for table in text.split(","):
                for cb in self._callbacks.get(table, ()):
                    try:
                        cb(table)
                    except Exception as exc:  # one subscriber failing must not stop the others
                        log.warning("change bus: callback for %s failed: %s", table,
                                    type(exc).__name__)

    def close(self) -> None:
        self._stop.set()
        for thread in (self._thread, self._sender):
            if thread is not None:
                thread.join(2)
        with contextlib.suppress(Exception):
            if self._pubsub is not None:
                self._pubsub.close()
            self._redis.close()
