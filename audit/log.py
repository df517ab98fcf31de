"""The audit log: the gateway hands events here; one writer thread chains and spools them.

``emit`` never blocks the event loop.  It returns a future that completes once the event is
in the spool (and, with the default fsync policy ``always``, synced to disk), so a caller
serving 重要/核心 data holds the response until then ("no audit, no access"), while 一般 data
is released at once and its event follows within ``batch_delay``.  ``emit`` raises
:class:`AuditUnavailable` when the queue is full, the spool is over its quota, or the writer
has failed: the caller refuses the request rather than serve it unaudited.

From the spool, a shipper thread per sink (:mod:`.shipping`) delivers at least once to the
embedded store, a JSON-lines file and/or Elasticsearch.  The writer also signs checkpoints
(:mod:`.checkpoint`) every ``checkpoint_every`` events or ``checkpoint_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import asdict
from typing import Any

import orjson
import structlog

from .chain import GENESIS, canonical, chain_fields, link, merkle_root
from .checkpoint import CheckpointWriter, load_or_create_signing_key
from .config import AuditSettings
from .errors import AuditUnavailable, InvalidEvent
from .events import ECS_VERSION, iso_now, needs_sanitize, new_event_id, sanitize
from .handoff import STOP, HandOff
from .shipping import JsonLinesSink, Shipper, Sink, StoreSink, name_os_thread
from .spool import Cursor, Spool
from .store import AuditStore

MAX_QUEUE = 50_000  # events waiting for the writer; beyond this the trail is "unavailable"
MAX_BATCH = 4_000  # events written (and synced) together
URGENT = frozenset({"重要", "核心"})  # classifications whose responses wait for the event
GC_EVERY = 1.0  # seconds between spool clean-ups
MAX_EVENT_BYTES = 256 * 1024  # an event is a record of a decision, not a payload

Listener = Callable[[list[dict[str, Any]]], None]


# A caller's acknowledgement: a concurrent future (emit) or an asyncio future (emit_async).
# The writer settles asyncio futures on their own loop, waking each loop once per batch (one
# ``call_soon_threadsafe`` — one self-pipe write — for all of that loop's waiters) rather than
# once per event, as ``asyncio.wrap_future`` would.
Waiter = Future[None] | asyncio.Future[None]


def _settle_on_loop(items: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for fut, exc in items:
        if fut.done():  # cancelled by its caller (a timeout): nobody waits any more
            continue
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)


def _deliver(results: list[tuple[Waiter, BaseException | None]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop,
                  list[tuple[asyncio.Future[None], BaseException | None]]] = {}
    for waiter, exc in results:
        if isinstance(waiter, asyncio.Future):
            by_loop.setdefault(waiter.get_loop(), []).append((waiter, exc))
        else:
            try:  # cheaper than asking done() first (a lock round trip per future)
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)
            except InvalidStateError:  # the caller cancelled it: nobody waits any more
                continue
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(_settle_on_loop, items)


log = structlog.get_logger("ztgw.audit")


CHECKPOINT_ACTION = "audit-checkpoint"


def _announcement(doc: dict[str, Any]) -> bool:
    ev = doc.get("event")
    return (isinstance(ev, dict) and ev.get("action") == CHECKPOINT_ACTION
            and ev.get("dataset") == "ztgw.audit")


def _urgent(doc: dict[str, Any]) -> bool:
    ztgw = doc.get("ztgw")
    data = ztgw.get("data") if isinstance(ztgw, dict) else None
    label = data.get("classification") if isinstance(data, dict) else None
    return isinstance(label, str) and label in URGENT


def _any_urgent(batch: list[tuple[dict[str, Any], Waiter | None]], start: int = 0) -> bool:
    return any(_urgent(batch[i][0]) for i in range(start, len(batch)))


class AuditLog:
    def __init__(self, store: AuditStore, *, config: AuditSettings | None = None,
                 listeners: list[Listener] | None = None,
                 extra_sinks: list[Sink] | None = None) -> None:
        self.store = store
        self.config = config or AuditSettings(db_path=store.path)
        self._handoff: HandOff[tuple[dict[str, Any], Waiter | None]] = HandOff(MAX_QUEUE)
        self._listeners = list(listeners or [])
        self._extra_sinks = list(extra_sinks or [])
        self._thread: threading.Thread | None = None
        self._running = False  # the writer thread is in its loop (cheaper than is_alive())
        self._failed: BaseException | None = None
        self.spool: Spool | None = None
        self.shippers: list[Shipper] = []
        self.checkpoints: CheckpointWriter | None = None
        self.written = 0
        self.alerts = 0
        self._alerting = False
        self._seq = 0
        self._prev = GENESIS
        self._leaves: list[bytes] = []
        self._leaf_real: list[bool] = []  # False for checkpoint announcements (they never trigger one)
        self._pending_real = 0
        self._spool_bytes = 0

    @classmethod
    def from_settings(cls, conf: AuditSettings, *, extra_sinks: list[Sink] | None = None
                      ) -> AuditLog:
        return cls(AuditStore(conf.db_path, synchronous=conf.synchronous), config=conf,
                   extra_sinks=extra_sinks)

    # --- life cycle -----------------------------------------------------------------------
    def _sinks(self) -> list[Sink]:
        conf = self.config
        sinks: list[Sink] = []
        if "store" in conf.sinks:
            sinks.append(StoreSink(self.store))
        if "jsonl" in conf.sinks:
            sinks.append(JsonLinesSink(conf.effective_jsonl_path))
        if "elasticsearch" in conf.sinks:
            from .es.sink import ElasticsearchSink  # the client loads only when configured

            sinks.append(ElasticsearchSink.from_settings(conf))
        return sinks + self._extra_sinks

    def start(self) -> None:
        if self._thread is not None:
            return
        self.spool = Spool(self.config.effective_spool_dir, self.config.segment_bytes)
        try:
            self._start()
        except BaseException:
            for shipper in self.shippers:
                shipper.stop(1.0)
            self.shippers = []
            self.spool.close()  # releases the spool lock for the next attempt
            self.spool = None
            raise

    def _start(self) -> None:
        assert self.spool is not None
        conf = self.config
        self.checkpoints = CheckpointWriter(
            load_or_create_signing_key(conf.effective_keys_dir),
            conf.effective_checkpoint_path, conf.witness_dirs)
        # continue the chain from the newest copy we have: the spool, else the store
        last = self.spool.last_doc
        seq, value = (chain_fields(last)[0], chain_fields(last)[2]) if last else (None, None)
        head = self.store.chain_head()
        if head is not None and (seq is None or head[0] > seq):
            seq, value = head
        self._seq = seq or 0
        self._prev = bytes.fromhex(value) if value else GENESIS
        # chain values written after the last checkpoint, to be covered by the next one
        cp_seq = self.checkpoints.last_seq
        docs = [d for d in self.spool.records(cp_seq) if (chain_fields(d)[0] or 0) <= self._seq]
        self._leaves = [bytes.fromhex(chain_fields(d)[2] or "") for d in docs]
        self._leaf_real = [not _announcement(d) for d in docs]
        if len(self._leaves) != max(0, self._seq - cp_seq):  # the spool lost them: use the store
            self._leaves = self.store.chain_values(cp_seq + 1, self._seq)
            self._leaf_real = [True] * len(self._leaves)
        self._pending_real = sum(self._leaf_real)
        self._spool_bytes = self.spool.size
        self.shippers = [Shipper(s, self.spool, conf.effective_spool_dir / "cursors")
                         for s in self._sinks()]
        for shipper in self.shippers:
            if isinstance(shipper.sink, StoreSink) and head is not None:
                shipper.shipped_seq = head[0]  # what the store already holds
            shipper.start()
        self._thread = threading.Thread(target=self._run, name="ztgw-audit", daemon=True)
        self._running = True
        self._thread.start()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every batch of documents the writer has chained (in the
        writer thread; it must be quick and must not raise — exceptions are swallowed)."""
        self._listeners.append(listener)

    @property
    def healthy(self) -> bool:
        return (self._running and self._thread is not None and self._failed is None
                and self._spool_bytes < self.config.spool_quota_bytes)

    @property
    def depth(self) -> int:
        return len(self._handoff)

    def status(self) -> dict[str, Any]:
        """The live state of the trail (for readiness checks and metrics)."""
        return {
            "healthy": self.healthy,
            "queued": self.depth,
            "written": self.written,
            "seq": self._seq,
            "spool_bytes": self._spool_bytes,
            "spool_quota_bytes": self.config.spool_quota_bytes,
            "alerts": self.alerts,
            "checkpoint_seq": self.checkpoints.last_seq if self.checkpoints else 0,
            "witness_errors": self.checkpoints.witness_errors if self.checkpoints else 0,
            "sinks": {s.sink.name: {"shipped": s.shipped, "failures": s.failures,
                                    "last_error": s.last_error, "alive": s.alive}
                      for s in self.shippers},
        }

    # --- the contract with the data plane ---------------------------------------------------
    def emit(self, event: dict[str, Any]) -> Future[None]:
        self._check(event)
        fut: Future[None] = Future()
        self._enqueue(event, fut)
        return fut

    def emit_async(self, event: dict[str, Any], *, wait: bool = True) -> asyncio.Future[None] | None:
        """:meth:`emit` for a caller on an event loop: returns an asyncio future (or, with
        ``wait=False``, nothing — the event is queued and the caller does not wait)."""
        self._check(event)
        waiter: asyncio.Future[None] | None = (
            asyncio.get_running_loop().create_future() if wait else None)
        self._enqueue(event, waiter)
        return waiter

    def _check(self, event: dict[str, Any]) -> None:
        if not self.healthy:
            if self._spool_bytes >= self.config.spool_quota_bytes:
                raise AuditUnavailable("the audit spool is full")
            raise AuditUnavailable("the audit writer is not running")
        ev = event.get("event")
        if not isinstance(ev, dict) or not isinstance(event.get("@timestamp"), str):
            raise InvalidEvent("an audit event needs an `event` object and an `@timestamp` string")
        eid = ev.get("id")
        if eid is None:  # not setdefault: that would draw a fresh random id every time
            ev["id"] = new_event_id()
        elif not isinstance(eid, str):  # it is every sink's document id (and the store's key)
            raise InvalidEvent("an audit event's `event.id` must be a string")

    def _enqueue(self, event: dict[str, Any], waiter: Waiter | None) -> None:
        if not self._handoff.put((event, waiter)):
            raise AuditUnavailable("the audit queue is full")
        if not self._running:  # the writer stopped after our check: settle it, never leave it
            self._refuse_leftovers()

    # --- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        name_os_thread("ztgw-audit")
        try:
            self._loop()
        finally:  # stopped or broken: whatever is still queued is refused, never left hanging
            self._running = False
            self._refuse_leftovers()

    def _refuse_leftovers(self) -> None:
        left = self._handoff.drain()  # atomic pops: each item is settled by exactly one caller
        if left:
            gone = AuditUnavailable("the audit writer has stopped")
            _deliver([(w, gone) for _, w in left if w is not None])

    def _loop(self) -> None:
        conf = self.config
        handoff = self._handoff
        last_cp = last_sync = last_gc = time.monotonic()
        stop = False
        while not stop:
            handoff.wait(max(0.01, conf.checkpoint_seconds - (time.monotonic() - last_cp)))
            batch: list[tuple[dict[str, Any], Waiter | None]] = []
            stop = handoff.take(batch, MAX_BATCH)
            if batch and not stop and len(batch) < MAX_BATCH and not _any_urgent(batch):
                # only 一般 data waiting: gather more for up to batch_delay (fewer, larger
                # writes); a 重要/核心 event arriving meanwhile ends the wait at once
                deadline = time.monotonic() + conf.batch_delay
                while len(batch) < MAX_BATCH:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    handoff.wait(remaining)
                    seen = len(batch)
                    stop = handoff.take(batch, MAX_BATCH)
                    if stop or _any_urgent(batch, seen):
                        break
            if batch:
                if not self._write(batch):
                    return
                now = time.monotonic()
                if conf.fsync == "interval" and now - last_sync >= conf.fsync_interval:
                    self._sync()
                    last_sync = now
            now = time.monotonic()
            if not stop and self._pending_real and (len(self._leaves) >= conf.checkpoint_every
                                                    or now - last_cp >= conf.checkpoint_seconds):
                self._checkpoint(announce=conf.checkpoint_events)
                last_cp = now
            elif not self._pending_real:
                last_cp = now
            if stop or now - last_gc >= GC_EVERY:
                self._collect()
                last_gc = now

    def _write(self, batch: list[tuple[dict[str, Any], Waiter | None]]) -> bool:
        assert self.spool is not None
        seq, prev = self._seq, self._prev
        prev_hex = prev.hex()
        lines: list[bytes] = []
        leaves: list[bytes] = []
        docs: list[dict[str, Any]] = []
        results: list[tuple[Waiter, BaseException | None]] = []  # settled whatever happens
        ok: list[Waiter] = []  # settled by the outcome of the spool write
        real: list[bool] = []  # False for checkpoint announcements
        for doc, fut in batch:
            if doc is _NOOP:
                if fut is not None:
                    ok.append(fut)
                continue
            try:
                if "ztgw" not in doc:
                    doc["ztgw"] = {}
                body = canonical(doc)
                if needs_sanitize(body):  # the scan reuses the bytes the chain hashes anyway
                    # sanitised from its JSON: plain dicts, lists and strings whatever the
                    # caller passed (a dataclass's secret-named field is fingerprinted too)
                    doc = sanitize(orjson.loads(body))
                    doc.setdefault("ztgw", {})
                    body = canonical(doc)
                if len(body) > MAX_EVENT_BYTES:
                    raise TypeError(f"the event is larger than {MAX_EVENT_BYTES} bytes")
                value = link(prev, seq + 1, body)  # seal(), without re-encoding prev
                value_hex = value.hex()
                doc["event"]["hash"] = value_hex
                doc["ztgw"]["chain"] = {"seq": seq + 1, "prev_hash": prev_hex}
                line = orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)
            except (TypeError, KeyError, orjson.JSONEncodeError) as exc:
                if fut is not None:
                    results.append((fut, InvalidEvent(f"the event cannot be serialised: {exc}")))
                continue
            seq, prev, prev_hex = seq + 1, value, value_hex
            if fut is not None:
                ok.append(fut)
            lines.append(line)
            leaves.append(value)
            docs.append(doc)
            ev = doc["event"]
            real.append(ev.get("action") != CHECKPOINT_ACTION or ev.get("dataset") != "ztgw.audit")
        try:
            self.spool.append(b"".join(lines), seq)
            if self.config.fsync == "always":
                self.spool.sync()
        except BaseException as exc:  # the trail is broken: fail every waiter, stop accepting
            self._failed = exc
            log.error("audit spool write failed; refusing further events", error=str(exc))
            failed = AuditUnavailable(f"audit spool write failed: {exc}")
            _deliver(results + [(w, failed) for w in ok])
            return False
        self._seq, self._prev = seq, prev
        self._leaves.extend(leaves)
        self._leaf_real.extend(real)
        self._pending_real += sum(real)
        self.written += len(docs)
        self._spool_bytes = self.spool.size
        _deliver(results + [(w, None) for w in ok])
        for shipper in self.shippers:
            shipper.wake.set()
        for listener in self._listeners:
            try:
                listener(docs)
            except Exception:  # noqa: S112 - a listener must never break the trail
                continue
        self._watch_quota()
        return True

    def _sync(self) -> None:
        try:
            assert self.spool is not None
            self.spool.sync()
        except OSError as exc:
            self._failed = exc

    def _checkpoint(self, announce: bool = False) -> None:
        """Sign the positions written since the last checkpoint — with the embedded store as a
        sink, only those it already holds, so a verifier never sees a signed position the
        store has not received yet (that would read as a truncation)."""
        assert self.checkpoints is not None
        leaves = self._leaves
        first = self._seq - len(leaves) + 1
        upto = self._seq
        store = next((s for s in self.shippers if isinstance(s.sink, StoreSink)), None)
        if store is not None:
            upto = min(upto, store.shipped_seq)
        if upto < first:
            return
        covered = leaves[: upto - first + 1]
        try:
            cp = self.checkpoints.write(first, upto, covered[-1], merkle_root(covered), iso_now())
        except OSError as exc:  # keep the leaves; the next round tries again
            log.error("audit checkpoint could not be written", error=str(exc))
            return
        self._leaves = leaves[len(covered):]
        self._leaf_real = self._leaf_real[len(covered):]
        self._pending_real = sum(self._leaf_real)
        if announce:  # a copy for every sink: the SOC index becomes one more witness
            event = {
                "@timestamp": iso_now(), "ecs": {"version": ECS_VERSION},
                "message": f"audit checkpoint {cp.seq_from}..{cp.seq_to}",
                "event": {"id": f"checkpoint-{cp.seq_to}-{cp.head[:16]}", "kind": "state",
                          "category": ["configuration"], "type": ["info"],
                          "action": CHECKPOINT_ACTION, "dataset": "ztgw.audit", "module": "ztgw"},
                "data_stream": {"type": "logs", "dataset": "ztgw.audit", "namespace": "default"},
                "ztgw": {"checkpoint": asdict(cp)},
            }
            self._handoff.put((event, None))  # dropped if the queue is full: the next one says it

    def _collect(self) -> None:
        if self.spool is None or self.checkpoints is None:
            return
        keep = min(s.cursor for s in self.shippers) if self.shippers else Cursor(self.spool.current, 0)
        try:
            self.spool.collect(keep, self.checkpoints.last_seq)
        except OSError as exc:
            log.error("audit spool clean-up failed", error=str(exc))
        self._spool_bytes = self.spool.size
        self._watch_quota()

    def _watch_quota(self) -> None:
        quota = self.config.spool_quota_bytes
        high = self._spool_bytes >= quota * self.config.spool_alert_ratio
        if high and not self._alerting:
            self._alerting = True
            self.alerts += 1
            log.warning("audit spool is filling up: a sink is not keeping up",
                        spool_bytes=self._spool_bytes, quota=quota)
            alert = {
                "@timestamp": iso_now(), "ecs": {"version": ECS_VERSION},
                "message": "audit spool above its alert threshold",
                "event": {"id": new_event_id(), "kind": "alert", "category": ["host"],
                          "type": ["info"], "action": "audit-spool-high", "dataset": "ztgw.audit",
                          "module": "ztgw", "severity": 3},
                "data_stream": {"type": "logs", "dataset": "ztgw.audit", "namespace": "default"},
                "ztgw": {"spool": {"bytes": self._spool_bytes, "quota": quota}},
            }
            self._handoff.put((alert, None))
        elif self._alerting and self._spool_bytes < quota * self.config.spool_alert_ratio * 0.9:
            self._alerting = False

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every sink has shipped what is spooled now (tests, ``close``)."""
        deadline = time.monotonic() + timeout
        marker: Future[None] = Future()
        if self.healthy:
            try:
                # an empty round trip through the writer: everything before it is spooled
                self._handoff.put((_NOOP, marker), force=True)
                marker.result(timeout)
            except (TimeoutError, AuditUnavailable):
                return False
        for shipper in self.shippers:
            shipper.caught_up.clear()
            shipper.hurry.set()
            shipper.wake.set()
            if not shipper.caught_up.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Spool what is queued, sign a last checkpoint, let sinks catch up, then stop."""
        if self._thread is not None:
            self._handoff.put(STOP, force=True)
            self._thread.join(timeout)
            self._thread = None
        for shipper in self.shippers:
            shipper.stop(timeout)
        if self._leaves and self._failed is None:
            self._checkpoint()  # the writer is stopped: sign what the sinks now hold
        self.shippers = []
        if self.spool is not None:
            try:
                self.spool.close()
            except OSError as exc:  # already reported as a failed write
                log.error("audit spool close failed", error=str(exc))
        self.store.close()


_NOOP: dict[str, Any] = {}
