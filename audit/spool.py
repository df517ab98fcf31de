"""The durable spool: append-only segment files of chained events, one JSON document a line.

Only the audit writer thread appends; every sink reads it from its own cursor
(:mod:`.shipping`).  A segment is deleted once every active sink has shipped past it and a
signed checkpoint covers all of its events.  On start-up a torn last line (the process died in
the middle of a write, so that event was never acknowledged) is cut off.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .chain import chain_fields
from .errors import AuditUnavailable

_SEGMENT = re.compile(r"^seg-(\d{10})\.ndjson$")
READ_CHUNK = 4 * 1024 * 1024  # bytes a sink reads at once


class SpoolLocked(AuditUnavailable):
    """Another live process owns this spool (e.g. ``ztgw serve --workers N`` on one home)."""


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A position in the spool: segment number and byte offset inside it."""

    segment: int
    offset: int

    def to_json(self) -> bytes:
        return orjson.dumps({"segment": self.segment, "offset": self.offset})

    @classmethod
    def load(cls, path: Path) -> Cursor | None:
        try:
            data = orjson.loads(path.read_bytes())
            return cls(int(data["segment"]), int(data["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(self.to_json())
        os.replace(tmp, path)


class Spool:
    def __init__(self, directory: Path, segment_bytes: int = 64 * 1024 * 1024) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        # one writer per spool: the chain has a single head (released by the kernel on kill -9)
        self._lock_fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise SpoolLocked(f"another process writes the audit spool {self.dir}") from exc
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()  # guards segment list / sizes against GC vs readers
        self._sizes: dict[int, int] = {}
        self._last_seq: dict[int, int] = {}  # segment -> last chain position in it
        for name in os.listdir(self.dir):
            m = _SEGMENT.match(name)
            if m:
                self._sizes[int(m.group(1))] = (self.dir / name).stat().st_size
        self._fd: int | None = None
        self._current = max(self._sizes) if self._sizes else 1
        self.last_doc: dict[str, Any] | None = self._recover()

    # --- recovery ------------------------------------------------------------------------
    def path(self, segment: int) -> Path:
        return self.dir / f"seg-{segment:010d}.ndjson"

    def _recover(self) -> dict[str, Any] | None:
        """Cut a torn tail off the newest segment; return the last whole event (or None)."""
        for segment in sorted(self._sizes, reverse=True):
            path = self.path(segment)
            data = path.read_bytes()
            end = len(data)
            while end > 0:
                cut = data.rfind(b"\n", 0, end - 1) + 1  # start of the last line before `end`
                line = data[cut:end]
                doc = _parse(line) if line.endswith(b"\n") else None
                if doc is not None:
                    if end != len(data):
                        with open(path, "r+b") as f:
                            f.truncate(end)
                            os.fsync(f.fileno())
                        self._sizes[segment] = end
                    return doc
                end = cut
            if segment == self._current and end == 0:
                path.unlink()  # nothing whole in it: it held only an unacknowledged torn write
                del self._sizes[segment]
                self._current = max(self._sizes) if self._sizes else 1
        return None

    def records(self, after_seq: int) -> Iterator[dict[str, Any]]:
        """Every spooled event with a chain position above ``after_seq`` (start-up only)."""
        for segment in sorted(self._sizes):
            with open(self.path(segment), "rb") as f:
                for line in f:
                    doc = _parse(line)
                    if doc is None:
                        continue
                    seq = chain_fields(doc)[0] or 0
                    self._last_seq[segment] = seq
                    if seq > after_seq:
                        yield doc

    # --- writing (the writer thread only) -------------------------------------------------
    def append(self, data: bytes, last_seq: int) -> None:
        """Append whole lines; rotate first if the current segment is full."""
        size = self._sizes.get(self._current, 0)
        if self._fd is not None and size > 0 and size + len(data) > self.segment_bytes:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
            with self._lock:
                self._current += 1
        if self._fd is None:
            self._fd = os.open(self.path(self._current),
                               os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with self._lock:
                self._sizes.setdefault(self._current, os.fstat(self._fd).st_size)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        with self._lock:
            self._sizes[self._current] = self._sizes.get(self._current, 0) + len(data)
            self._last_seq[self._current] = last_seq

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self) -> None:
        try:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = None
        finally:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    @property
    def size(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    @property
    def current(self) -> int:
        return self._current

    def first(self) -> Cursor:
        with self._lock:
            return Cursor(min(self._sizes) if self._sizes else self._current, 0)

    def collect(self, keep_from: Cursor, checkpointed_seq: int) -> int:
        """Delete segments every sink has passed and a checkpoint covers; bytes freed."""
        freed = 0
        with self._lock:
            for segment in sorted(self._sizes):
                if segment >= min(keep_from.segment, self._current):
                    break
                last = self._last_seq.get(segment)
                if last is None or last > checkpointed_seq:
                    break
                self.path(segment).unlink(missing_ok=True)
                freed += self._sizes.pop(segment)
                self._last_seq.pop(segment, None)
        return freed

    # --- reading (the sinks' shipping threads) ---------------------------------------------
    def read(self, cursor: Cursor, max_bytes: int = READ_CHUNK) -> tuple[list[bytes], Cursor]:
        """Whole lines from ``cursor`` on (at most about ``max_bytes``) and the cursor after them."""
        with self._lock:
            known = sorted(self._sizes)
            current = self._current
        if not known:
            return [], cursor
        if cursor.segment not in self._sizes:
            later = [s for s in known if s > cursor.segment]
            if not later:
                return [], cursor
            cursor = Cursor(later[0], 0)
        try:
            with open(self.path(cursor.segment), "rb") as f:
                f.seek(cursor.offset)
                data = f.read(max_bytes)
        except FileNotFoundError:
            return [], cursor
        end = data.rfind(b"\n") + 1
        if end == 0:
            # nothing whole here; a finished segment hands over to the next one
            if cursor.segment < current and len(data) == 0:
                nxt = [s for s in known if s > cursor.segment]
                if nxt:
                    return [], Cursor(nxt[0], 0)
            return [], cursor
        return data[:end].splitlines(), Cursor(cursor.segment, cursor.offset + end)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) and chain_fields(doc)[0] is not None else None
