"""Personal data in live upstream answers, by sampling: ``ztgw scan pii --sampled``.

The data plane calls :meth:`PiiSampler.offer` once per successful upstream answer (before
masking).  ``offer`` is cheap and never blocks: a content-type check, one random draw, one
per-dataset rate check (at most one answer per ``interval`` seconds per dataset), then a
bounded hand-over queue (dropped when full).  A worker thread scans the first ``max_bytes``
of the answer with the protection library's detectors (:func:`..protection.scan.scan_records`
— the same judgement as ``ztgw scan pii FILE``) and keeps **only findings**: per dataset,
field → detector type → matches, rows, first and last seen.  No body, no value, and no
field name that itself looks like personal data (a record keyed by identity numbers) is
ever stored: such path segments are written as ``*``.

Findings live in ``HOME/detection/pii-sampled.db`` (SQLite, shared by the gateway and the
CLI); ``ztgw scan coverage`` compares them with the catalogue's field classification and
personal-information flags.
"""

from __future__ import annotations

import contextlib
import csv
import io
import queue
import random
import re
import sqlite3
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
import structlog
import typer

from .protection.detectors import classify
from .protection.masking import RECORD_CONTAINERS, records_path
from .protection.scan import scan_records

__all__ = ["PiiSampler", "SampledStore", "SamplerSettings", "sampled_findings", "scan_pii_command"]

log = structlog.get_logger("ztgw.pii_sampler")
MAX_DATASETS = 1_000
MAX_FIELDS = 500  # per dataset
MAX_NAME = 200
_DIGITS = re.compile(r"\d{6,}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS pii_sampled_dataset (
    dataset TEXT PRIMARY KEY, responses INTEGER NOT NULL, rows INTEGER NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pii_sampled_field (
    dataset TEXT NOT NULL, field TEXT NOT NULL, type TEXT NOT NULL,
    matches INTEGER NOT NULL, rows INTEGER NOT NULL, samples INTEGER NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL,
    PRIMARY KEY (dataset, field, type));
"""


def _format(content_type: str) -> str | None:
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct in ("application/x-ndjson", "application/ndjson", "application/jsonl",
              "application/jsonlines", "application/x-jsonlines"):
        return "ndjson"
    if ct == "application/json" or (ct.startswith("application/") and ct.endswith("+json")):
        return "json"
    if ct in ("text/csv", "application/csv"):
        return "csv"
    return None


def safe_field(path: str) -> str:
    """A field path fit to store: segments that look like personal data (or long digit
    runs: identifiers used as keys) become ``*``; clipped to :data:`MAX_NAME`."""
    parts = []
    for seg in path.split("."):
        bare = seg.removesuffix("[]")
        if bare and (_DIGITS.search(bare) or classify(bare) is not None):
            seg = "*" + seg[len(bare):]
        parts.append(seg)
    return ".".join(parts)[:MAX_NAME]


class SampleError(ValueError):
    """The sampled answer cannot be read (bad encoding, not the declared format)."""


def _decode(body: bytes, encoding: str, limit: int) -> tuple[bytes, bool]:
    """The decoded body, at most ``limit`` bytes, and whether it was cut there (decompression
    bombs stop at the limit)."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("identity", ""):
        return body[:limit], len(body) > limit
    if enc in ("gzip", "x-gzip", "deflate"):
        d = zlib.decompressobj(47 if enc != "deflate" else 15)
        try:
            out = d.decompress(body, limit)
        except zlib.error:
            if enc != "deflate":
                raise SampleError("bad gzip body") from None
            try:  # raw deflate, as some servers send it
                d = zlib.decompressobj(-15)
                out = d.decompress(body, limit)
            except zlib.error:
                raise SampleError("bad deflate body") from None
        return out, bool(d.unconsumed_tail) or len(out) >= limit
    if enc == "br":
        import brotli

        br = brotli.Decompressor()
        buf = bytearray()
        try:
            for i in range(0, len(body), 256):
                buf += br.process(body[i:i + 256])
                if len(buf) >= limit:
                    return bytes(buf[:limit]), True
        except brotli.error:
            raise SampleError("bad brotli body") from None
        return bytes(buf), False
    raise SampleError(f"unsupported content coding {enc!r}")


# a cut-off page: the first records array under a documented container key
_CUT_CONTAINER = re.compile(
    r'"(?:' + "|".join(re.escape(k) for k in RECORD_CONTAINERS) + r')"\s*:\s*\[')


def _json_records(text: bytes, cut: bool, limit: int) -> list[dict[str, Any]]:
    if not cut:
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:  # ends badly: the whole records before the damage count
            got = _json_records(text, True, limit)
            if not got:
                raise SampleError("not JSON") from None
            return got
        # the records wherever the data plane finds them (items, data.list, result.records …)
        path, is_list = records_path(doc)
        node: Any = doc
        for key in path:
            node = node[key]
        recs = node if is_list else [node]
        return [r for r in recs[:limit] if isinstance(r, dict)] if isinstance(recs, list) else []
    # cut off: the whole elements of the records array (a page's "items", or a bare array)
    import json

    start = text.decode("utf-8", "ignore")  # a character cut at the limit is dropped
    if start.lstrip().startswith("["):
        pos = start.index("[") + 1
    else:
        m = _CUT_CONTAINER.search(start)
        if m is None:
            return []
        pos = m.end()
    dec = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    n = len(start)
    while pos < n and len(out) < limit:
        while pos < n and start[pos] in " \t\r\n,":
            pos += 1
        if pos >= n or start[pos] == "]":
            break
        try:
            rec, pos = dec.raw_decode(start, pos)
        except ValueError:
            break  # the element cut at the byte limit
        if isinstance(rec, dict):
            out.append(rec)
    return out


def records_from(body: bytes, fmt: str, encoding: str = "identity", *, max_bytes: int,
                 max_records: int = 500) -> list[dict[str, Any]]:
    """The whole records within the first ``max_bytes`` of the (decoded) ``body``; a record
    cut at the limit is left out.  Raises :class:`SampleError` on a body it cannot read."""
    text, cut = _decode(body, encoding, max_bytes)
    if fmt == "json":
        return _json_records(text, cut, max_records)
    lines = text.splitlines()
    if cut and lines:
        lines = lines[:-1]  # the last line may be cut
    if fmt == "ndjson":
        out: list[dict[str, Any]] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise SampleError("not NDJSON") from None
            if isinstance(rec, dict):
                out.append(rec)
            if len(out) >= max_records:
                break
        return out
    if fmt == "csv":
        rows = csv.reader(io.StringIO("\n".join(line.decode("utf-8", "replace") for line in lines)))
        header = next(rows, None)
        if not header:
            return []
        return [dict(zip(header, row, strict=False))
                for row, _ in zip(rows, range(max_records), strict=False)]
    raise SampleError(f"unsupported format {fmt!r}")


@dataclass(frozen=True, slots=True)
class SamplerSettings:
    rate: float = 0.05  # share of eligible answers sampled (0 switches sampling off)
    interval: float = 1.0  # at most one answer per dataset per this many seconds
    max_bytes: int = 64 * 1024  # bytes of each answer scanned
    queue_size: int = 8  # answers waiting for the worker; more are dropped


class SampledStore:
    """The findings table (SQLite), written by the worker, read by the CLI and coverage."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
        self._db.executescript("PRAGMA journal_mode=WAL;" + SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def add(self, dataset: str, rows: int, fields: list[tuple[str, str, int, int]],
            at: float | None = None) -> None:
        now = time.time() if at is None else at
        dataset = dataset[:MAX_NAME]
        with self._lock, self._db:
            db = self._db
            known = db.execute("SELECT 1 FROM pii_sampled_dataset WHERE dataset = ?", (dataset,)).fetchone()
            if known is None and db.execute(
                    "SELECT count(*) FROM pii_sampled_dataset").fetchone()[0] >= MAX_DATASETS:
                return
            db.execute(
                "INSERT INTO pii_sampled_dataset VALUES (?, 1, ?, ?, ?) ON CONFLICT(dataset) DO UPDATE "
                "SET responses = responses + 1, rows = rows + excluded.rows, last_seen = excluded.last_seen",
                (dataset, rows, now, now))
            have = db.execute("SELECT count(*) FROM pii_sampled_field WHERE dataset = ?",
                              (dataset,)).fetchone()[0]
            for fname, kind, matches, frows in fields:
                exists = db.execute("SELECT 1 FROM pii_sampled_field WHERE dataset = ? AND field = ? "
                                    "AND type = ?", (dataset, fname, kind)).fetchone()
                if exists is None:
                    if have >= MAX_FIELDS:
                        continue
                    have += 1
                db.execute(
                    "INSERT INTO pii_sampled_field VALUES (?, ?, ?, ?, ?, 1, ?, ?) "
                    "ON CONFLICT(dataset, field, type) DO UPDATE SET matches = matches + excluded.matches, "
                    "rows = rows + excluded.rows, samples = samples + 1, last_seen = excluded.last_seen",
                    (dataset, fname, kind, matches, frows, now, now))

    def datasets(self, dataset: str | None = None) -> list[dict[str, Any]]:
        """Per dataset: ``{"dataset", "responses", "rows", "first_seen", "last_seen",
        "fields": [{"field", "type", "matches", "rows", "samples", "first_seen", "last_seen"}]}``."""
        with self._lock:
            q = "SELECT dataset, responses, rows, first_seen, last_seen FROM pii_sampled_dataset"
            args: tuple[Any, ...] = ()
            if dataset is not None:
                q += " WHERE dataset = ?"
                args = (dataset,)
            out = []
            for ds, responses, rows, first, last in self._db.execute(q + " ORDER BY dataset", args):
                fields = [{"field": f, "type": t, "matches": m, "rows": r, "samples": s,
                           "first_seen": _iso(a), "last_seen": _iso(b)}
                          for f, t, m, r, s, a, b in self._db.execute(
                              "SELECT field, type, matches, rows, samples, first_seen, last_seen "
                              "FROM pii_sampled_field WHERE dataset = ? ORDER BY field, type", (ds,))]
                out.append({"dataset": ds, "responses": responses, "rows": rows,
                            "first_seen": _iso(first), "last_seen": _iso(last), "fields": fields})
            return out


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def sampled_findings(path: Path, dataset: str | None = None) -> list[dict[str, Any]]:
    """What the sampler found so far (``[]`` when it never ran here)."""
    if not path.exists():
        return []
    store = SampledStore(path)
    try:
        return store.datasets(dataset)
    finally:
        store.close()


class PiiSampler:
    """Samples upstream answers for personal data off the event loop (see module doc)."""

    def __init__(self, path: Path, settings: SamplerSettings | None = None, *,
                 rng: random.Random | None = None) -> None:
        self.path = path
        self.settings = settings or SamplerSettings()
        self._rng = rng or random.Random()  # noqa: S311 - sampling, not security
        self._last: dict[str, float] = {}
        self._queue: queue.Queue[tuple[str, str, str, bytes] | None] = queue.Queue(self.settings.queue_size)
        self._thread: threading.Thread | None = None
        self._store: SampledStore | None = None
        self.offered = 0
        self.sampled = 0
        self.dropped = 0
        self.scanned = 0
        self.failed = 0

    @property
    def enabled(self) -> bool:
        return self.settings.rate > 0

    def offer(self, dataset: str, content_type: str, body: bytes, encoding: str = "identity") -> None:
        """Maybe sample this answer (never blocks, never raises on bad input)."""
        if self._thread is None or not body or not dataset:
            return
        self.offered += 1
        s = self.settings
        if s.rate < 1.0 and self._rng.random() >= s.rate:
            return
        fmt = _format(content_type or "")
        if fmt is None:
            return
        now = time.monotonic()
        last = self._last.get(dataset)
        if last is not None and now - last < s.interval:
            return
        if last is None and len(self._last) >= MAX_DATASETS:
            return
        self._last[dataset] = now
        try:
            # bytes(...) of a slice: the worker holds at most max_bytes of each answer
            self._queue.put_nowait((dataset, fmt, encoding or "identity", bytes(body[:s.max_bytes + 1])))
            self.sampled += 1
        except queue.Full:
            self.dropped += 1

    def start(self) -> None:
        if self._thread is not None or not self.enabled:
            return
        self._store = SampledStore(self.path)
        self._thread = threading.Thread(target=self._run, name="ztgw-pii-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        thread.join(timeout)
        if self._store is not None:
            self._store.close()
            self._store = None

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every sampled answer has been scanned (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _items(self) -> Iterator[tuple[str, str, str, bytes]]:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            yield item

    def _run(self) -> None:
        for dataset, fmt, encoding, body in self._items():
            try:
                self.scan(dataset, fmt, encoding, body)
            except Exception as exc:  # a bad answer must not stop sampling; no body in the log
                self.failed += 1
                log.warning("pii sample not scanned", dataset=dataset, error=type(exc).__name__)
            finally:
                self._queue.task_done()

    def scan(self, dataset: str, fmt: str, encoding: str, body: bytes) -> None:
        recs = records_from(body, fmt, encoding, max_bytes=self.settings.max_bytes)
        if not recs:
            return
        report = scan_records(recs)
        fields = [(safe_field(f.field), f.type, f.matches, f.rows) for f in report.fields]
        assert self._store is not None
        self._store.add(dataset, report.rows, fields)
        self.scanned += 1

    def status(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "running": self._thread is not None, "offered": self.offered,
                "sampled": self.sampled, "dropped": self.dropped, "scanned": self.scanned,
                "failed": self.failed}


def from_settings(conf: Any) -> PiiSampler:
    """The gateway's sampler from its settings (``pii_sample_*``)."""
    return PiiSampler(Path(conf.home) / "detection" / "pii-sampled.db", SamplerSettings(
        rate=float(getattr(conf, "pii_sample_rate", 0.05)),
        interval=float(getattr(conf, "pii_sample_interval", 1.0)),
        max_bytes=int(getattr(conf, "pii_sample_max_kb", 64)) * 1024,
    ))


# --- ztgw scan pii [FILE | --sampled] ------------------------------------------------------------
def scan_pii_command(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(
        help="CSV, JSON or NDJSON file (format judged by content); omit with --sampled")] = None,
    sampled: Annotated[bool, typer.Option(
        "--sampled", help="what the gateway found in sampled upstream answers (ZTGW_PII_SAMPLE_*)")] = False,
    dataset: Annotated[str | None, typer.Option(help="only this dataset (with --sampled)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Which fields hold which kinds of personal data: in a file, or in sampled live answers."""
    from rich.console import Console
    from rich.table import Table

    from .protection import cli as protection_cli

    err = Console(stderr=True)
    if sampled == (file is not None):
        err.print("give a FILE or --sampled (not both)")
        raise typer.Exit(2)
    if file is not None:
        if dataset is not None:
            err.print("--dataset goes with --sampled")
            raise typer.Exit(2)
        protection_cli.scan_pii(file, as_json)
        return
    home = getattr(ctx.find_root().obj, "home", None)
    path = (Path(home) if home is not None else Path("./var")) / "detection" / "pii-sampled.db"
    found = sampled_findings(path, dataset)
    doc = {"sampled": True, "datasets": found}
    if as_json:
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    out = Console()
    if not found:
        out.print("no sampled answers yet" + (f" for {dataset}" if dataset else "")
                  + " (sampling: ZTGW_PII_SAMPLE_RATE, on a running gateway)")
        return
    for ds in found:
        table = Table("field", "type", "matches", "rows", "first seen", "last seen",
                      title=f"{ds['dataset']} ({ds['responses']} answers, {ds['rows']} rows sampled)")
        for f in ds["fields"]:
            table.add_row(f["field"], f["type"], str(f["matches"]), str(f["rows"]), f["first_seen"],
                          f["last_seen"])
        out.print(table)
