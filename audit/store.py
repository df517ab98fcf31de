"""The embedded audit store: one SQLite file under ``$ZTGW_HOME/audit/``.

Documents are stored whole (ECS JSON) next to indexed columns for the fields investigations
filter on.  Event ids are unique, so a re-sent event never duplicates (at-least-once shipping
becomes exactly-once storage).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from .errors import QueryError
from .query import FIELDS, AuditQuery

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    ts           TEXT NOT NULL,
    dataset      TEXT,
    action       TEXT,
    outcome      TEXT,
    user_name    TEXT,
    client_id    TEXT,
    source_ip    TEXT,
    data_dataset TEXT,
    decision     TEXT,
    request_id   TEXT,
    doc          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS events_user ON events(user_name, ts);
CREATE INDEX IF NOT EXISTS events_client ON events(client_id, ts);
CREATE INDEX IF NOT EXISTS events_ip ON events(source_ip, ts);
CREATE INDEX IF NOT EXISTS events_data ON events(data_dataset, ts);
CREATE INDEX IF NOT EXISTS events_decision ON events(decision, ts);
CREATE INDEX IF NOT EXISTS events_client_decision ON events(client_id, decision, ts);
CREATE INDEX IF NOT EXISTS events_user_decision ON events(user_name, decision, ts);
CREATE INDEX IF NOT EXISTS events_request ON events(request_id);
CREATE INDEX IF NOT EXISTS events_outcome ON events(outcome, ts);
CREATE INDEX IF NOT EXISTS events_kind ON events(dataset, ts);
"""
# events_outcome / events_kind: `--outcome failure` and the event-kind filter (alerts are
# ztgw.alert: a few in a million) scanned the whole table for their total and walked the time
# index for a page; created on first open of an older store (seconds per million rows)


def _get(doc: dict[str, Any], dotted: str) -> Any:
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


_PATHS = tuple(tuple(f.split(".")) for f in FIELDS)  # split once, not per row
_SCALAR = (str, int, float)


def _column(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any = doc
    for part in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    # a column holds a scalar; anything else would fail the whole batch's INSERT (and the
    # shipper would retry it for ever) — the document itself keeps the value
    return cur if isinstance(cur, _SCALAR) else None


def _row(doc: dict[str, Any], raw: bytes | None = None) -> tuple[Any, ...]:
    chain = doc.get("ztgw")
    chain = chain.get("chain") if isinstance(chain, dict) else None
    seq = chain.get("seq") if isinstance(chain, dict) else None
    return (
        seq if isinstance(seq, int) else None,  # the chain position; unchained rows get the next
        doc["event"]["id"],
        doc["@timestamp"],
        *[_column(doc, p) for p in _PATHS],
        (raw if raw is not None else orjson.dumps(doc)).decode(),
    )


class AuditStore:
    """SQLite-backed, searchable audit store.  Thread-safe; one connection per thread."""

    def __init__(self, path: Path, *, synchronous: str = "NORMAL") -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be OFF, NORMAL, FULL or EXTRA")
        self.path = path
        self._sync = synchronous
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._sync}")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: random-keyed indexes (ids) stay cached
        return conn

    @property
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def append(self, docs: Sequence[dict[str, Any]], raw: Sequence[bytes] | None = None) -> int:
        """Store a batch in one transaction; returns how many were new.

        ``raw``: the documents' JSON as already serialised (the spool lines), stored as is.
        """
        rows = ([_row(d) for d in docs] if raw is None
                else [_row(d, r) for d, r in zip(docs, raw, strict=True)])
        return self._insert(rows)

    def append_lines(self, lines: Sequence[bytes]) -> tuple[int, int, int]:
        """Store spool lines (ECS JSON, one document each) in one transaction, each decoded
        only for its indexed columns and dropped at once: holding a whole batch of decoded
        documents made the cyclic garbage collector walk them again and again (decoding a
        1.5 KB event took ~3x longer kept than dropped).

        Returns (new rows, the last chain position seen, lines that were not a document).
        """
        rows = []
        bad = 0
        for line in lines:
            try:
                doc = orjson.loads(line)
                rows.append(_row(doc, line))
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
                bad += 1  # damaged on disk: skipped here, and verify names the gap
        last = max((r[0] for r in rows if r[0] is not None), default=0)
        return self._insert(rows), last, bad

    def _insert(self, rows: list[tuple[Any, ...]]) -> int:
        conn = self._conn
        cols = ", ".join(["seq", "id", "ts", *FIELDS.values(), "doc"])
        marks = ", ".join("?" * (len(FIELDS) + 4))
        before = conn.total_changes
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                f"INSERT INTO events ({cols}) VALUES ({marks}) ON CONFLICT(id) DO NOTHING",  # noqa: S608
                rows,
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return conn.total_changes - before

    def _where(self, query: AuditQuery) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        args: list[Any] = []
        for field, value in query.equals().items():
            clauses.append(f"{FIELDS[field]} = ?")
            args.append(value)
        if query.since:
            clauses.append("ts >= ?")
            args.append(query.since)
        if query.until:
            clauses.append("ts < ?")
            args.append(query.until)
        if query.text:
            for word in query.text.split():
                clauses.append("doc LIKE ? ESCAPE '\\'")
                esc = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                args.append(f"%{esc}%")
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def search(self, query: AuditQuery) -> list[dict[str, Any]]:
        """Newest first."""
        where, args = self._where(query)
        # newest first by @timestamp (as the Elasticsearch DSL sorts): every filter index is
        # (column, ts), so a filtered search is one backwards range scan
        sql = f"SELECT doc FROM events{where} ORDER BY ts DESC, seq DESC LIMIT ?"  # noqa: S608
        rows = self._conn.execute(sql, [*args, query.limit]).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def count(self, query: AuditQuery | None = None, *, cap: int | None = None) -> int:
        """Matching events; with ``cap``, counting stops there (like ES ``track_total_hits``)."""
        where, args = self._where(query or AuditQuery())
        if cap is None:
            sql = f"SELECT count(*) FROM events{where}"  # noqa: S608
        else:
            sql = f"SELECT count(*) FROM (SELECT 1 FROM events{where} LIMIT ?)"  # noqa: S608
            args = [*args, cap]
        return int(self._conn.execute(sql, args).fetchone()[0])

    def top(self, query: AuditQuery, field: str, n: int = 10) -> list[tuple[Any, int]]:
        """``--top FIELD``: the most frequent values of an indexed field among matches."""
        column = FIELDS.get(field)
        if column is None:
            raise QueryError(f"--top supports {sorted(FIELDS)}")
        where, args = self._where(query)
        sql = (
            f"SELECT {column}, count(*) AS n FROM events{where} "  # noqa: S608
            f"GROUP BY {column} ORDER BY n DESC LIMIT ?"
        )
        return [(r[0], int(r[1])) for r in self._conn.execute(sql, [*args, n]).fetchall()]

    def after(self, seq: int, limit: int = 500) -> list[tuple[int, dict[str, Any]]]:
        """Events stored after position ``seq`` (for ``audit tail -f``)."""
        rows = self._conn.execute(
            "SELECT seq, doc FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        return [(int(s), orjson.loads(d)) for s, d in rows]

    def last_seq(self) -> int:
        row = self._conn.execute("SELECT max(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def chain_head(self) -> tuple[int, str] | None:
        """(position, chain value) of the newest chained event, if any."""
        row = self._conn.execute("SELECT seq, doc FROM events ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return None
        value = _get(orjson.loads(row[1]), "event.hash")
        return (int(row[0]), value) if isinstance(value, str) else None

    def chain_values(self, first: int, last: int) -> list[bytes]:
        """``event.hash`` of positions ``first..last`` in order (missing ones are skipped)."""
        rows = self._conn.execute(
            "SELECT doc FROM events WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last)
        ).fetchall()
        out = []
        for (doc,) in rows:
            value = _get(orjson.loads(doc), "event.hash")
            if isinstance(value, str):
                out.append(bytes.fromhex(value))
        return out

    def iter_rows(self, batch: int = 5000) -> Iterator[tuple[int, bytes]]:
        """(position, stored JSON) in position order, read in batches (for verification)."""
        last = -1
        while True:
            rows = self._conn.execute(
                "SELECT seq, doc FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (last, batch)
            ).fetchall()
            if not rows:
                return
            for seq, doc in rows:
                yield int(seq), doc.encode() if isinstance(doc, str) else doc
            last = int(rows[-1][0])

    def iter_all(self) -> Iterator[dict[str, Any]]:
        for (doc,) in self._conn.execute("SELECT doc FROM events ORDER BY seq"):
            yield orjson.loads(doc)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

