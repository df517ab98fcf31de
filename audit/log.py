"""The audit log: the gateway hands events here; a writer thread stores them in batches.

``emit`` never blocks the event loop.  It returns a future that completes once the event is
committed, so a caller serving 重要/核心 data can hold the response until the event is on
disk ("no audit, no access"), while 一般 data is released at once and its event follows
within one batch delay.  The queue is bounded: when it is full, ``emit`` raises
:class:`AuditUnavailable` and the caller refuses the request rather than serve it unaudited.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .errors import AuditUnavailable
from .store import AuditStore

MAX_QUEUE = 50_000  # events waiting for the writer; beyond this the trail is "unavailable"
MAX_BATCH = 2_000  # events committed in one transaction
BATCH_DELAY = 0.05  # seconds the writer waits to fill a batch once it has one event

Listener = Callable[[list[dict[str, Any]]], None]


class AuditLog:
    def __init__(self, store: AuditStore, *, listeners: list[Listener] | None = None) -> None:
        self.store = store
        self._queue: queue.Queue[tuple[dict[str, Any], Future[None]] | None] = queue.Queue(
            MAX_QUEUE
        )
        self._listeners = list(listeners or [])
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None
        self.written = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ztgw-audit", daemon=True)
            self._thread.start()

    @property
    def healthy(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._failed is None

    def emit(self, event: dict[str, Any]) -> Future[None]:
        if not self.healthy:
            raise AuditUnavailable("the audit writer is not running")
        fut: Future[None] = Future()
        try:
            self._queue.put_nowait((event, fut))
        except queue.Full as exc:
            raise AuditUnavailable("the audit queue is full") from exc
        return fut

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            deadline = time.monotonic() + BATCH_DELAY
            while len(batch) < MAX_BATCH:
                remaining = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=max(0.0, remaining)) if remaining > 0 else (
                        self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._write(batch)

    def _write(self, batch: list[tuple[dict[str, Any], Future[None]]]) -> None:
        docs = [doc for doc, _ in batch]
        try:
            self.store.append(docs)
        except BaseException as exc:  # the trail is broken: fail every waiter, stop accepting
            self._failed = exc
            for _, fut in batch:
                fut.set_exception(AuditUnavailable(f"audit store write failed: {exc}"))
            return
        self.written += len(docs)
        for _, fut in batch:
            fut.set_result(None)
        for listener in self._listeners:
            try:
                listener(docs)
            except Exception:  # noqa: S112 - a listener must never break the trail
                continue

    def close(self, timeout: float = 10.0) -> None:
        """Flush what is queued, then stop the writer."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        self.store.close()
