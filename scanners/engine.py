"""The detection engine: Sigma rules and stateful detectors over the audit stream.

:class:`DetectionEngine` is a plain object: ``process(events)`` returns the alerts raised
(ECS documents, ``event.kind: alert``) and hands them to ``emit`` — in the gateway that is
the audit log, so alerts are chained and shipped with everything else.  Alerts are grouped
by (rule, group key) and de-duplicated for ``dedup_window`` seconds: a repeat only bumps
the group's count, and the next alert after the window says how many it stood for.

:class:`DetectionService` follows the embedded audit store (``AuditStore.after(seq)``) in a
daemon thread, so detection never slows the audit writer, and takes the configured
automatic responses (:mod:`.response`) when ``responses_enabled`` is on (drills).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from ztgw.audit.events import ECS_VERSION, clean, iso_now, new_event_id
from ztgw.audit.store import AuditStore

from .response import ResponseBook
from .sigma import CompiledRule, RuleSet, get_field, load_rules
from .stateful import Detector, Finding, Thresholds, View, default_detectors, event_time

Event = dict[str, Any]
Emit = Callable[[Event], None]
log = structlog.get_logger("ztgw.scanners")
SKIP_DATASETS = frozenset({"ztgw.alert", "ztgw.response", "ztgw.audit"})
MAX_GROUPS = 20_000

# rule id (or category) → actions taken when responses are on; ttl in seconds
DEFAULT_RESPONSES: dict[str, list[dict[str, Any]]] = {
    "brute-force": [{"action": "lock-account", "ttl": 900}, {"action": "block-ip", "ttl": 900}],
    "password-spraying": [{"action": "block-ip", "ttl": 1800}],
    "credential-stuffing": [{"action": "block-ip", "ttl": 1800}],
    "token-replay": [{"action": "revoke-token", "ttl": 3600},
                     {"action": "raise-risk", "value": 60, "ttl": 3600}],
    "enumeration": [{"action": "block-ip", "ttl": 600}, {"action": "raise-risk", "value": 30,
                                                         "ttl": 1800}],
    "exfiltration": [{"action": "raise-risk", "value": 80, "ttl": 3600},
                     {"action": "lock-account", "ttl": 1800}],
    "off-hours": [{"action": "raise-risk", "value": 40, "ttl": 3600}],
    "injection": [{"action": "block-ip", "ttl": 900}],
    "traversal": [{"action": "block-ip", "ttl": 900}],
    "scanner": [{"action": "block-ip", "ttl": 900}],
}


@dataclass(slots=True)
class DetectionSettings:
    """Typed settings (the gateway builds them from ``ZTGW_DETECT_*``)."""

    enabled: bool = True
    state_path: Path = Path("var/detection/detection.db")
    rules_dir: Path | None = None
    poll_interval: float = 0.5
    dedup_window: float = 300.0
    responses_enabled: bool = False
    responses: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: dict(DEFAULT_RESPONSES))
    thresholds: Thresholds = field(default_factory=Thresholds)
    allowlist_ips: tuple[str, ...] = ()  # never blocked automatically (the drill's own host)


def _sigma_category(rule: CompiledRule) -> str:
    title = rule.title.lower()
    if "scanner" in title or "tool" in title:
        return "scanner"
    if "traversal" in title:
        return "traversal"
    if any(w in title for w in ("injection", "scripting", "forgery")):
        return "injection"
    return "sigma"


def build_alert(f: Finding, *, ts_iso: str | None = None, count: int = 1,
                node: str | None = None) -> Event:
    """An ECS alert: rule, severity, risk score, evidence event ids, group and count."""
    alert: Event = {
        "@timestamp": ts_iso or iso_now(), "ecs": {"version": ECS_VERSION},
        "message": clean(f.message, 512),
        "event": {"id": new_event_id(), "kind": "alert", "category": ["intrusion_detection"],
                  "type": ["indicator"], "action": "alert", "dataset": "ztgw.alert",
                  "module": "ztgw", "provider": "detection", "severity": f.severity,
                  "risk_score": f.risk_score, "outcome": "unknown", "created": iso_now()},
        "data_stream": {"type": "logs", "dataset": "ztgw.alert", "namespace": "default"},
        "rule": {"id": clean(f.rule_id, 128), "name": clean(f.rule_name, 256),
                 "category": f.category},
        "ztgw": {"alert": {"group": clean(f"{f.rule_id}|{f.group}", 300), "count": count,
                           "evidence": list(f.evidence), **f.extra}},
    }
    if f.source_ip:
        alert["source"] = {"ip": f.source_ip}
    if f.user:
        alert["user"] = {"name": clean(f.user, 128)}
    if node:
        alert["service"] = {"name": "ztgw", "node": {"name": node}}
    return alert


class DetectionEngine:
    def __init__(self, rules: list[CompiledRule] | None = None,
                 detectors: list[Detector] | None = None, *, emit: Emit | None = None,
                 settings: DetectionSettings | None = None,
                 responses: ResponseBook | None = None) -> None:
        self.settings = settings or DetectionSettings()
        self.rules = load_rules([self.settings.rules_dir] if self.settings.rules_dir else None
                                ) if rules is None else rules
        self.detectors = detectors if detectors is not None else default_detectors(
            self.settings.thresholds)
        self.emit = emit or (lambda _a: None)
        self.responses = responses
        self._groups: OrderedDict[str, tuple[float, int]] = OrderedDict()  # last alert, count
        self.seen = 0
        self.raised = 0
        self.suppressed = 0
        self.errors = 0
        # rules indexed by the dataset they read: an event meets only its own rules
        self._ruleset = RuleSet(self.rules)
        self._detectors_for: dict[Any, list[Detector]] = {}

    def _sigma(self, ev: Event, ts: float, eid: str) -> list[Finding]:
        return self._matched(ev, self._ruleset.candidates(ev), eid)

    def _matched(self, ev: Event, cands: list[CompiledRule], eid: str) -> list[Finding]:
        out: list[Finding] = []
        for rule in cands:
            if rule.matches(ev):
                who = get_field(ev, rule.group_by)
                group = str(who) if isinstance(who, str | int) else eid
                out.append(Finding(
                    rule.id, rule.title, rule.severity, rule.risk_score, group,
                    f"{rule.title}: {clean(str(get_field(ev, 'url.path')), 200)}"
                    if ev.get("url") else rule.title, (eid,),
                    source_ip=ev.get("source", {}).get("ip"), user=ev.get("user", {}).get("name"),
                    category=_sigma_category(rule)))
        return out

    def _dets(self, dataset: Any) -> list[Detector]:
        dets = self._detectors_for.get(dataset)
        if dets is None:
            dets = self._detectors_for[dataset] = [
                d for d in self.detectors if d.datasets is None or dataset in d.datasets]
        return dets

    def process(self, events: Iterable[Event]) -> list[Event]:
        """Every event through the Sigma rules (behind their prefilter) and the stateful
        detectors of its dataset; the alerts raised (also handed to ``emit``).  Events are
        only read, never changed (they may be the audit log's own documents)."""
        alerts: list[Event] = []
        skip = SKIP_DATASETS
        candidates = self._ruleset.candidates
        dets_for = self._detectors_for
        seen = 0
        try:
            for ev in events:
                meta = ev.get("event")
                if not isinstance(meta, dict):
                    continue
                ds = meta.get("dataset")
                if ds in skip or meta.get("kind") == "alert":
                    continue
                seen += 1
                ts = event_time(ev)
                eid = meta.get("id")
                if not isinstance(eid, str) or not eid:
                    eid = str(eid or ev.get("http", {}).get("request", {}).get("id") or "")
                try:
                    cands = candidates(ev)
                    findings = self._matched(ev, cands, eid) if cands else []
                    dets = dets_for.get(ds)
                    if dets is None:
                        dets = self._dets(ds)
                    if dets:
                        view = View(ev)
                        for det in dets:
                            found = det.observe(view, ts, eid)
                            if found:
                                findings.extend(found)
                except Exception as exc:  # one bad event must not stop detection
                    self.errors += 1
                    log.warning("detection failed on an event", error=str(exc))
                    continue
                for f in findings:
                    alert = self._raise(f, ts, ev.get("@timestamp"))
                    if alert is not None:
                        alerts.append(alert)
        finally:
            self.seen += seen
        return alerts

    def _raise(self, f: Finding, ts: float, ts_iso: Any) -> Event | None:
        key = f"{f.rule_id}|{f.group}"
        last = self._groups.get(key)
        if last is not None and ts - last[0] < self.settings.dedup_window:
            self._groups[key] = (last[0], last[1] + 1)
            self.suppressed += 1
            return None
        count = last[1] if last else 1  # this alert plus the repeats suppressed before it
        self._groups[key] = (ts, 1)
        self._groups.move_to_end(key)
        if len(self._groups) > MAX_GROUPS:
            self._groups.popitem(last=False)
        alert = build_alert(f, count=count)
        alert["ztgw"]["alert"]["first_event_time"] = ts_iso if isinstance(ts_iso, str) else None
        self.raised += 1
        if self.settings.responses_enabled and self.responses is not None:
            alert["ztgw"]["alert"]["responses"] = self._respond(f, alert["event"]["id"])
        self.emit(alert)
        return alert

    def _respond(self, f: Finding, alert_id: str) -> list[dict[str, Any]]:
        assert self.responses is not None
        plan = self.settings.responses.get(f.rule_id) or self.settings.responses.get(f.category, [])
        taken: list[dict[str, Any]] = []
        for step in plan:
            kind, ttl = step.get("action"), float(step.get("ttl", 900))
            target = {"block-ip": f.source_ip, "lock-account": f.user,
                      "raise-risk": f.user or f.source_ip,
                      "revoke-token": f.group[6:] if f.group.startswith("token:") else None,
                      }.get(str(kind))
            if not target or (kind == "block-ip" and target in self.settings.allowlist_ips):
                continue
            if kind == "lock-account" and target.startswith("client:"):
                continue
            try:
                a = self.responses.take(str(kind), target, ttl, value=float(step.get("value", 0)),
                                        reason=f.message, rule_id=f.rule_id, alert_id=alert_id)
            except Exception as exc:
                log.warning("response action failed", action=kind, error=str(exc))
                continue
            taken.append({"id": a.id, "action": a.kind, "target": a.target, "expires": a.expires})
        return taken


MAX_FED = 100_000  # events handed over by the audit writer and not yet processed
GAP_PATIENCE = 30.0  # seconds to wait for the store to receive what the feed missed


def _chain_seq(doc: Event) -> int | None:
    z = doc.get("ztgw")
    chain = z.get("chain") if isinstance(z, dict) else None
    seq = chain.get("seq") if isinstance(chain, dict) else None
    return seq if isinstance(seq, int) else None


class DetectionService:
    """Runs the engine over the audit trail, in one daemon thread.

    Two ways in: :meth:`feed` is an audit-log listener (the writer thread hands over the
    documents it has just chained, already parsed — no store read, no JSON decode); without
    it (or for anything the feed missed) the follower reads the embedded store
    (``AuditStore.after(seq)``).  Each document's chain sequence number keeps the two in step:
    a gap in the feed (the hand-over queue was full, or the service started late) is filled
    from the store before the feed is read on, so no event is skipped or seen twice."""

    def __init__(self, store_path: Path, engine: DetectionEngine, *,
                 poll_interval: float = 0.5, lock_path: Path | None = None) -> None:
        self.store_path = store_path
        # one follower per home: with `serve --workers N` the others stand by on this lock
        self.lock_path = lock_path
        self._lock_fd: int | None = None
        self.active = False
        self.engine = engine
        self.poll_interval = poll_interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.seq = 0
        self.lag = 0
        self.fed = False  # an audit log hands its documents over (:meth:`attach`)
        self._inbox: list[list[Event]] = []
        self._inbox_n = 0
        self._inbox_lock = threading.Lock()
        self.dropped = 0  # fed documents dropped (queue full): read back from the store
        self.from_store = 0  # documents read from the store
        self.skipped = 0  # sequence numbers never seen (the store did not receive them in time)
        self._gap_since: float | None = None

    # --- the live feed ----------------------------------------------------------------------
    def attach(self, audit: Any) -> None:
        """Listen to an :class:`ztgw.audit.log.AuditLog`: its writer thread calls
        :meth:`feed` with each batch it has chained."""
        add = getattr(audit, "add_listener", None)
        if callable(add):
            add(self.feed)
        else:  # the constructor's listeners list (AuditLog has no add_listener yet)
            audit._listeners.append(self.feed)
        self.fed = True

    def feed(self, docs: list[Event]) -> None:
        """Audit-log listener: O(1), never blocks the writer; drops when the queue is full
        (the follower then reads the missing sequence numbers from the store)."""
        if not self.active or not docs:
            return
        with self._inbox_lock:
            if self._inbox_n + len(docs) > MAX_FED:
                self.dropped += len(docs)
                return
            self._inbox.append(docs)
            self._inbox_n += len(docs)
        self._wake.set()

    def _take(self) -> list[Event]:
        with self._inbox_lock:
            batches, self._inbox, self._inbox_n = self._inbox, [], 0
        if len(batches) == 1:
            return batches[0]
        return [d for b in batches for d in b]

    # --- life cycle ---------------------------------------------------------------------------
    def start(self, from_start: bool = False) -> None:
        if self._thread is not None:
            return
        store = AuditStore(self.store_path)
        try:
            self.seq = 0 if from_start else store.last_seq()
        finally:
            store.close()
        self._thread = threading.Thread(target=self._run, name="ztgw-detection", daemon=True)
        self._thread.start()

    def _take_lock(self) -> bool:
        if self.lock_path is None:
            return True
        import fcntl
        import os

        if self._lock_fd is None:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _from_store(self, store: AuditStore, below: int | None) -> int:
        """Process stored documents after ``self.seq`` (those before ``below`` only); how many."""
        try:
            rows = store.after(self.seq, 2000)
        except Exception as exc:  # the store may be busy; try again next round
            log.warning("detection could not read the audit store", error=str(exc))
            return 0
        if below is not None:
            rows = [r for r in rows if r[0] < below]
        if rows:
            self.seq = rows[-1][0]
            self.from_store += len(rows)
            self.engine.process(doc for _, doc in rows)
        return len(rows)

    def _drain(self, store: AuditStore, pending: list[Event]) -> list[Event]:
        """Process fed documents in sequence order, filling gaps from the store; returns the
        documents still waiting (their predecessors are not in the store yet)."""
        run: list[Event] = []
        i, n = 0, len(pending)
        while i < n:
            doc = pending[i]
            s = _chain_seq(doc)
            if s is None or s == self.seq + 1:
                run.append(doc)
                if s is not None:
                    self.seq = s
                i += 1
            elif s <= self.seq:
                i += 1  # already read from the store
            else:  # a gap: what the feed missed comes from the store first
                if run:
                    self.engine.process(run)
                    run = []
                if self._from_store(store, s):
                    self._gap_since = None
                    continue
                now = time.monotonic()
                if self._gap_since is None:
                    self._gap_since = now
                if now - self._gap_since < GAP_PATIENCE and n - i < MAX_FED:
                    break  # the store has not received them yet: keep the rest for later
                # the store does not get them (no store sink, or far behind): go on without
                log.warning("detection skipped audit events it never received",
                            first=self.seq + 1, last=s - 1)
                self.skipped += s - 1 - self.seq
                self.seq = s - 1
                self._gap_since = None
        if run:
            self.engine.process(run)
        return pending[i:]

    def _run(self) -> None:
        waited = False
        while not self._take_lock():  # another process follows this home: stand by
            waited = True
            if self._stop.wait(5.0):
                return
        store = AuditStore(self.store_path)
        if waited:  # taking over from a stopped follower: from where the trail is now
            self.seq = store.last_seq()
        self.active = True
        book = self.engine.responses
        pending: list[Event] = []
        next_book = 0.0
        try:
            while not self._stop.is_set():
                self._wake.clear()
                busy = False
                if self.fed:
                    pending = pending + self._take() if pending else self._take()
                    before = len(pending)
                    pending = self._drain(store, pending)
                    busy = len(pending) < before
                    self.lag = len(pending)
                else:
                    busy = self._from_store(store, None) >= 2000
                now = time.monotonic()
                if book is not None and now >= next_book:
                    # undo/ack from the CLI: polled at the poll interval, not at every batch of
                    # the feed (two SQLite queries per audit batch under load otherwise)
                    next_book = now + self.poll_interval
                    try:
                        book.audit_undone()
                        book.audit_acks()
                    except Exception as exc:
                        log.warning("response book unavailable", error=str(exc))
                if not busy:
                    # fed: woken by the next batch; the poll interval bounds the wait for the
                    # store (gaps) and for the response book (undo/ack from the CLI)
                    (self._wake if self.fed else self._stop).wait(self.poll_interval)
        finally:
            self.active = False
            store.close()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._lock_fd is not None:
            import os

            os.close(self._lock_fd)  # releases the lock for a standing-by worker
            self._lock_fd = None
        self.active = False

    def status(self) -> dict[str, Any]:
        e = self.engine
        return {"seq": self.seq, "events": e.seen, "alerts": e.raised, "suppressed": e.suppressed,
                "errors": e.errors, "rules": len(e.rules), "detectors": len(e.detectors),
                "responses_enabled": e.settings.responses_enabled, "active": self.active,
                "fed": self.fed, "dropped": self.dropped, "from_store": self.from_store,
                "skipped": self.skipped,
                "alive": self._thread is not None and self._thread.is_alive(), "at": time.time()}


def settings_from(conf: Any) -> DetectionSettings:
    """:class:`DetectionSettings` from the gateway's settings object (``detect_*`` fields)."""
    import dataclasses

    from .errors import BadInput

    overrides = dict(getattr(conf, "detect_thresholds", {}) or {})
    known = {f.name: f.type for f in dataclasses.fields(Thresholds)}
    unknown = set(overrides) - set(known)
    if unknown:
        raise BadInput(f"unknown detection thresholds: {sorted(unknown)}")
    base = Thresholds()
    typed = {k: type(getattr(base, k))(v) for k, v in overrides.items()
             if not isinstance(getattr(base, k), tuple)}
    plan = dict(DEFAULT_RESPONSES)
    plan.update(getattr(conf, "detect_response_plan", {}) or {})
    return DetectionSettings(
        enabled=bool(getattr(conf, "detect_enabled", True)),
        state_path=Path(conf.home) / "detection" / "detection.db",
        rules_dir=getattr(conf, "detect_rules_dir", None),
        poll_interval=float(getattr(conf, "detect_poll_interval", 0.5)),
        dedup_window=float(getattr(conf, "detect_dedup_window", 300.0)),
        responses_enabled=bool(getattr(conf, "detect_responses", False)),
        responses=plan,
        thresholds=dataclasses.replace(base, **typed),
        allowlist_ips=tuple(getattr(conf, "detect_allowlist_ips", ()) or ()),
    )


def build_service(conf: Any, emit: Emit) -> tuple[DetectionService, ResponseBook]:
    """The gateway's detection: engine + response book + store follower, from settings."""
    ds = settings_from(conf)
    book = ResponseBook(ds.state_path, emit)
    engine = DetectionEngine(settings=ds, emit=emit, responses=book)
    return DetectionService(conf.audit_settings().db_path, engine, poll_interval=ds.poll_interval,
                            lock_path=ds.state_path.with_name("engine.lock")), book
