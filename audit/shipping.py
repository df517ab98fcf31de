"""At-least-once shipping from the spool to every sink, each from its own persisted cursor.

A sink receives whole batches and either takes all of them (returns) or raises; a batch that
fails is sent again after a backoff (0.1 s doubling to 30 s), so a sink outage of any length
loses nothing while the spool has room.  Re-sent events carry the same ``event.id``, which
every sink uses as its document id, so a re-send never duplicates.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import orjson
import structlog

from .chain import chain_fields
from .errors import SinkError
from .spool import Cursor, Spool
from .store import AuditStore

BACKOFF_FIRST = 0.1
BACKOFF_MAX = 30.0
IDLE_WAIT = 0.5  # seconds a caught-up shipper sleeps unless woken by the writer
LINGER = 0.05  # after a small batch, wait this long for more (fewer, larger transactions)
LINGER_BELOW = 1000  # lines: a batch smaller than this lingers
CURSOR_SAVE_EVERY = 1.0  # seconds; a cursor saved late only means a re-send (ids dedupe)

log = structlog.get_logger("ztgw.audit")


def name_os_thread(name: str) -> None:
    """Give the calling thread its name in the OS too (``/proc/PID/task/TID/comm``, top -H), so
    the audit's CPU can be told apart from the gateway's; best effort, Linux only."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        return


def _decode(lines: list[bytes]) -> tuple[list[dict[str, Any]], int]:
    docs = []
    bad = 0
    for line in lines:
        try:
            docs.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            bad += 1
    return docs, bad


class Sink(Protocol):
    name: str

    def send(self, docs: list[dict[str, Any]]) -> None:
        """Store every document or raise :class:`SinkError` (the whole batch is re-sent)."""

    def close(self) -> None: ...


class StoreSink:
    """The embedded SQLite store (the default sink)."""

    name = "store"

    def __init__(self, store: AuditStore) -> None:
        self.store = store

    def send(self, docs: list[dict[str, Any]]) -> None:
        self.send_lines(docs, None)

    def send_lines(self, docs: list[dict[str, Any]], lines: list[bytes] | None) -> None:
        try:
            self.store.append(docs, lines)
        except Exception as exc:
            raise SinkError(f"audit store: {exc}") from exc

    def send_raw(self, lines: list[bytes]) -> tuple[int, int]:
        """Spool lines as they are: (last chain position stored, lines that were not a document)."""
        try:
            _, last, bad = self.store.append_lines(lines)
        except Exception as exc:
            raise SinkError(f"audit store: {exc}") from exc
        return last, bad

    def close(self) -> None:
        self.store.close()


class JsonLinesSink:
    """One ECS document a line in a file (for log shippers such as Filebeat)."""

    name = "jsonl"

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._last = self._last_seq()

    def _last_seq(self) -> int:
        # a re-sent batch overlaps what is already there: skip by chain position
        if not self.path.exists() or self.path.stat().st_size == 0:
            return 0
        with open(self.path, "rb") as f:
            f.seek(max(0, self.path.stat().st_size - 65536))
            lines = f.read().splitlines()
        for line in reversed(lines):
            try:
                seq = chain_fields(orjson.loads(line))[0]
            except orjson.JSONDecodeError:
                continue
            if seq:
                return seq
        return 0

    def send(self, docs: list[dict[str, Any]]) -> None:
        fresh = [d for d in docs if (chain_fields(d)[0] or 0) > self._last]
        if not fresh:
            return
        data = b"".join(orjson.dumps(d) + b"\n" for d in fresh)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SinkError(f"jsonl sink: {exc}") from exc
        self._last = chain_fields(fresh[-1])[0] or self._last

    def close(self) -> None:
        return None


class Shipper:
    """One thread per sink: read the spool from the cursor, send, advance, persist the cursor."""

    def __init__(self, sink: Sink, spool: Spool, cursor_dir: Path) -> None:
        self.sink = sink
        self.spool = spool
        cursor_dir.mkdir(parents=True, exist_ok=True)
        self.cursor_path = cursor_dir / f"{sink.name}.json"
        self.cursor = Cursor.load(self.cursor_path) or spool.first()
        self.wake = threading.Event()
        self.hurry = threading.Event()  # flush/stop: no lingering
        self._stop = threading.Event()
        self._saved = self.cursor
        self._saved_at = 0.0
        self._drain = False
        self.shipped = 0
        self.failures = 0
        self.corrupt = 0
        self.shipped_seq = 0  # highest chain position this sink has taken
        self.last_error: str | None = None
        self.caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"ztgw-audit-{sink.name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _save_cursor(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.cursor != self._saved and (force or now - self._saved_at >= CURSOR_SAVE_EVERY):
            self.cursor.save(self.cursor_path)
            self._saved, self._saved_at = self.cursor, now

    def _run(self) -> None:
        name_os_thread(f"ztgw-audit-{self.sink.name}"[:15])
        backoff = BACKOFF_FIRST
        while not self._stop.is_set():
            self.wake.clear()
            lines, nxt = self.spool.read(self.cursor)
            if not lines:
                if nxt != self.cursor:
                    self.cursor = nxt
                    continue
                self._save_cursor(force=True)
                self.hurry.clear()
                self.caught_up.set()
                if self._drain:
                    return
                self.wake.wait(IDLE_WAIT)
                continue
            self.caught_up.clear()
            last_seq = 0
            try:
                if isinstance(self.sink, StoreSink):  # the spool's JSON is stored as is
                    last_seq, bad = self.sink.send_raw(lines)
                    shipped = len(lines) - bad
                else:
                    docs, bad = _decode(lines)
                    self.sink.send(docs)
                    shipped = len(docs)
                    if docs:
                        last_seq = chain_fields(docs[-1])[0] or 0
            except Exception as exc:  # a sink outage: keep the cursor, back off, re-send
                self.failures += 1
                self.last_error = str(exc)[:300]
                log.warning("audit sink failed", sink=self.sink.name, error=self.last_error,
                            retry_in=round(backoff, 2))
                if self._drain or self._stop.wait(backoff * (0.5 + random.random() / 2)):  # noqa: S311
                    return
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            if bad:  # damaged on disk: verify will name the gap
                self.corrupt += bad
                log.error("unreadable audit spool lines skipped", sink=self.sink.name,
                          segment=self.cursor.segment, lines=bad)
            backoff = BACKOFF_FIRST
            self.last_error = None
            self.shipped += shipped
            self.shipped_seq = max(self.shipped_seq, last_seq)
            self.cursor = nxt
            self._save_cursor()
            if len(lines) < LINGER_BELOW and not self._drain:
                self.hurry.wait(LINGER)  # let a few more events arrive: one transaction for all

    def stop(self, timeout: float) -> None:
        """Ship what is spooled (if the sink takes it within ``timeout``), then stop."""
        self._drain = True
        self.hurry.set()
        self.wake.set()
        self._thread.join(timeout)
        self._stop.set()
        self.wake.set()
        self._thread.join(1.0)
        if not self._thread.is_alive():
            self._save_cursor(force=True)
        self.sink.close()
