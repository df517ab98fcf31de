"""Stateful detections: what one event cannot show, a window of them can.

Each detector keeps bounded per-key sliding windows (``deque`` of (time, event id, value)),
looks at one event at a time and returns :class:`Finding` objects.  Time is the event's own
``@timestamp`` (so replaying a stored trail gives the same answers as the live stream);
the engine passes it in as epoch seconds.

Keys are bounded (:data:`MAX_KEYS` per detector, oldest evicted first) so a flood of
spoofed addresses or names cannot exhaust memory.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

Event = dict[str, Any]
MAX_KEYS = 50_000  # per detector: the oldest key is dropped beyond this
MAX_EVIDENCE = 20  # event ids kept on a finding
LOGIN_FAILURES = frozenset({"login-failed", "token-request-failed"})
LOGIN_SUCCESS = frozenset({"login-succeeded", "token-issued"})
DENIED_STATUSES = frozenset({401, 403, 404})
CORE = "核心"
_DIGITS = re.compile(r"(\d{3,})[0-9Xx]?$")


@dataclass(frozen=True, slots=True)
class Finding:
    """What a detector saw: the alert is built from this by the engine."""

    rule_id: str
    rule_name: str
    severity: int  # 1 low … 4 critical
    risk_score: float
    group: str  # the de-duplication key (rule + this)
    message: str
    evidence: tuple[str, ...]
    source_ip: str | None = None
    user: str | None = None
    category: str = "detection"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Every threshold in one place, each with its reason (docs/detection.md)."""

    brute_force_failures: int = 5  # failed sign-ins against one account …
    brute_force_window: float = 120.0  # … within this many seconds
    spray_accounts: int = 4  # distinct known accounts failing from one address …
    spray_window: float = 600.0
    stuffing_attempts: int = 8  # failed sign-ins from one address, mostly unknown names …
    stuffing_unknown_ratio: float = 0.5
    stuffing_window: float = 600.0
    replay_addresses: int = 2  # one token seen from this many addresses (or agents)
    replay_principal_addresses: int = 3  # one principal without token id: more addresses
    replay_window: float = 600.0
    enum_denials: int = 20  # 401/403/404 answers to one address or principal …
    enum_window: float = 60.0
    enum_sequential: int = 10  # consecutive identifiers read one by one
    enum_sequential_window: float = 300.0
    exfil_min_records: int = 5_000  # never alert below this many records in a window
    exfil_factor: float = 10.0  # … nor below this multiple of the principal's baseline
    exfil_window: float = 300.0
    exfil_min_bytes: int = 50_000_000
    work_start: int = 8  # local working hours [start, end) on working days
    work_end: int = 20
    utc_offset_hours: int = 8  # China Standard Time
    workdays: tuple[int, ...] = (0, 1, 2, 3, 4)


def get(ev: Event, *path: str) -> Any:
    cur: Any = ev
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


class Windows:
    """Per-key sliding windows with a bound on the number of keys."""

    def __init__(self, span: float) -> None:
        self.span = span
        self._keys: OrderedDict[str, deque[tuple[float, str, Any]]] = OrderedDict()

    def add(self, key: str, ts: float, eid: str, value: Any = None) -> deque[tuple[float, str, Any]]:
        q = self._keys.get(key)
        if q is None:
            q = self._keys[key] = deque()
            if len(self._keys) > MAX_KEYS:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        q.append((ts, eid, value))
        limit = ts - self.span
        while q and q[0][0] < limit:
            q.popleft()
        if len(q) > 10_000:  # bounded even inside the window
            q.popleft()
        return q

    def clear(self, key: str) -> None:
        self._keys.pop(key, None)


def _ids(q: Any) -> tuple[str, ...]:
    return tuple(e for _, e, _ in list(q)[-MAX_EVIDENCE:])


class Detector:
    rule_id = ""
    rule_name = ""

    def observe(self, ev: Event, ts: float, eid: str) -> Iterator[Finding]:
        raise NotImplementedError


class BruteForce(Detector):
    rule_id, rule_name = "ztgw-brute-force", "Brute force against one account"

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self.w = Windows(t.brute_force_window)

    def observe(self, ev: Event, ts: float, eid: str) -> Iterator[Finding]:
        if get(ev, "event", "action") not in LOGIN_FAILURES:
            return
        user = get(ev, "user", "name")
        client = get(ev, "ztgw", "oidc", "client_id")
        ip = get(ev, "source", "ip")
        token_ep = get(ev, "event", "action") == "token-request-failed"
        # the token endpoint may not know which client failed (bad Basic credentials): then
        # the guessing address is the key
        account = user if user and user != "(unknown)" else (
            f"client:{client}" if token_ep and client else f"ip:{ip}" if token_ep and ip else None)
        if account is None:
            return
        q = self.w.add(account, ts, eid)
        if len(q) >= self.t.brute_force_failures:
            ips = sorted({str(get(ev, "source", "ip") or "")} - {""})
            yield Finding(self.rule_id, self.rule_name, 3, 73.0, account,
                          f"{len(q)} failed sign-ins for {account} within "
                          f"{int(self.t.brute_force_window)} s", _ids(q),
                          source_ip=ip, user=None if account.startswith("ip:") else account,
                          category="brute-force", extra={"failures": len(q), "addresses": ips})


class Spraying(Detector):
    rule_id, rule_name = "ztgw-password-spraying", "Password spraying from one address"

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self.w = Windows(t.spray_window)

    def observe(self, ev: Event, ts: float, eid: str) -> Iterator[Finding]:
        if get(ev, "event", "action") != "login-failed":
            return
        ip, user = get(ev, "source", "ip"), get(ev, "user", "name")
        if not ip or not user or user == "(unknown)":
            return
        q = self.w.add(ip, ts, eid, user)
        users = {u for _, _, u in q}
        if len(users) >= self.t.spray_accounts:
            yield Finding(self.rule_id, self.rule_name, 3, 73.0, ip,
                          f"{len(users)} accounts failed to sign in from {ip}", _ids(q),
                          source_ip=ip, category="password-spraying",
                          extra={"accounts": len(users)})


class Stuffing(Detector):
    rule_id, rule_name = "ztgw-credential-stuffing", "Credential stuffing from one address"

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self.w = Windows(t.stuffing_window)

    def observe(self, ev: Event, ts: float, eid: str) -> Iterator[Finding]:
        action = get(ev, "event", "action")
        if action not in ("login-failed", "login-succeeded"):
            return
        ip = get(ev, "source", "ip")
        if not ip:
            return
        user = get(ev, "user", "name") or "(unknown)"
        q = self.w.add(ip, ts, eid, (action, user))
        failed = [u for _, _, (a, u) in q if a == "login-failed"]
        if len(failed) < self.t.stuffing_attempts:
            return
        unknown = sum(1 for u in failed if u == "(unknown)")
        hits = {u for _, _, (a, u) in q if a == "login-succeeded"}
        if unknown / len(failed) >= self.t.stuffing_unknown_ratio or (hits and len(set(failed)) >= 3):
            yield Finding(self.rule_id, self.rule_name, 3 if not hits else 4, 80.0 if not hits else 95.0,
                          ip, f"{len(failed)} failed sign-ins ({unknown} unknown accounts, "
                          f"{len(hits)} successes) from {ip}", _ids(q), source_ip=ip,
                          category="credential-stuffing",
                          extra={"failures": len(failed), "unknown": unknown, "successes": len(hits)})


class TokenReplay(Detector):
    """One bearer token (``ztgw.token.fingerprint``, when the data plane records it) used
    from several addresses or user agents; without it, one principal from many addresses."""

    rule_id, rule_name = "ztgw-token-replay", "Token replayed from another client or address"

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self.w = Windows(t.replay_window)

    def observe(self, ev: Event, ts: float, eid: str) -> Iterator[Finding]:
        if get(ev, "event", "dataset") != "ztgw.access":
            return
        ip = get(ev, "source", "ip")
        if not ip:
            return
        fp = get(ev, "ztgw", "token", "fingerprint") or get(ev, "ztgw", "token", "id")
        if fp:
            key, need = f"token:{fp}", self.t.replay_addresses
        else:
            principal = get(ev, "user", "id") or get(ev, "user", "name")
            if not principal:
                return
            client = get(ev, "ztgw", "oidc", "client_id") or ""
            key, need = f"principal:{principal}/{client}", self.t.replay_principal_addresses
        agent = get(ev, "user_agent", "original") or ""
        q = self.w.add(key, ts, eid, (ip, agent))
        addresses = {a for _, _, (a, _) in q}
        agents = {g for _, _, (_, g) in q}
        if len(addresses) >= need or (fp and len(agents) >= need + 1):
            yield Finding(self.rule_id, self.rule_name, 4, 90.0, key,
                          f"{key.split(':', 1)[0]} used from {len(addresses)} addresses and "
                          f"{len(agents)} user agents", _ids(q), source_ip=ip,
                          user=get(ev, "user", "name"), category="token-replay",
                          extra={"addresses": sorted(addresses)[:20]})


class Enumeration(Detector):
    rule_id, rule_name = "ztgw-enumeration", "Enumeration: burst of refusals or sequential identifiers"

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self.denials = Windows(t.enum_window)
        self.ids = Windows(t.enum_sequential_window)

    def observe(self, ev: Event, ts: float, eid: str) -> Iterator[Finding]:
        if get(ev, "event", "dataset") != "ztgw.access":
            return
        ip = get(ev, "source", "ip")
        who = get(ev, "user", "name") or ip
        status = get(ev, "http", "response", "status_code")
        if status in DENIED_STATUSES and ip:
            q = self.denials.add(ip, ts, eid)
            if len(q) >= self.t.enum_denials:
                yield Finding(self.rule_id, self.rule_name, 2, 55.0, f"denials:{ip}",
                              f"{len(q)} 401/403/404 answers to {ip} within "
                              f"{int(self.t.enum_window)} s", _ids(q), source_ip=ip,
                              user=get(ev, "user", "name"), category="enumeration")
        path = get(ev, "url", "path")
        if not who or not isinstance(path, str):
            return
        prefix, _, last = path.rstrip("/").rpartition("/")
        m = _DIGITS.search(last)
        if not m or not prefix:
            return
        q = self.ids.add(f"{who}|{prefix}", ts, eid, int(m.group(1)[-15:]))
        if len(q) < self.t.enum_sequential:
            return
        values = sorted({v for _, _, v in q})
        run = best = 1
        for a, b in pairwise(values):
            run = run + 1 if 0 < b - a <= 2 else 1
            best = max(best, run)
        if best >= self.t.enum_sequential:
            yield Finding(self.rule_id, self.rule_name, 3, 70.0, f"sequential:{who}|{prefix}",
                          f"{best} consecutive identifiers under {prefix} read by {who}",
                          _ids(q), source_ip=ip, user=get(ev, "user", "name"),
                          category="enumeration", extra={"run": best})


class Exfiltration(Detector):
    """Records (or bytes) per principal in a window far above that principal's baseline."""

    rule_id, rule_name = "ztgw-bulk-exfiltration", "Bulk data exfiltration by one principal"

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self.w = Windows(t.exfil_window)
        self.baseline: dict[str, float] = {}

    def observe(self, ev: Event, ts: float, eid: str) -> Iterator[Finding]:
        if get(ev, "event", "dataset") != "ztgw.access":
            return
        records = get(ev, "ztgw", "data", "records")
        size = get(ev, "ztgw", "data", "bytes")
        if not isinstance(size, int):
            size = get(ev, "http", "response", "body", "bytes")
        if not isinstance(records, int) and not isinstance(size, int):
            return
        who = get(ev, "user", "name") or get(ev, "ztgw", "oidc", "client_id")
        if not who:
            return
        q = self.w.add(who, ts, eid, (records or 0, size or 0))
        total = sum(r for _, _, (r, _) in q)
        nbytes = sum(b for _, _, (_, b) in q)
        base = self.baseline.get(who, 0.0)
        # exponentially weighted per-window baseline, learnt from quiet windows only
        limit = max(self.t.exfil_min_records, self.t.exfil_factor * base)
        if total >= limit or nbytes >= self.t.exfil_min_bytes:
            yield Finding(self.rule_id, self.rule_name, 4, 92.0, who,
                          f"{who} read {total} records ({nbytes} bytes) within "
                          f"{int(self.t.exfil_window)} s (baseline {base:.0f})", _ids(q),
                          source_ip=get(ev, "source", "ip"), user=who, category="exfiltration",
                          extra={"records": total, "bytes": nbytes, "baseline": round(base, 1)})
        elif len(self.baseline) < MAX_KEYS or who in self.baseline:
            self.baseline[who] = 0.98 * base + 0.02 * total if base else float(total)


class OffHoursCore(Detector):
    rule_id, rule_name = "ztgw-off-hours-core", "Off-hours access to 核心 data"

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self.tz = timezone(timedelta(hours=t.utc_offset_hours))

    def observe(self, ev: Event, ts: float, eid: str) -> Iterator[Finding]:
        if get(ev, "ztgw", "data", "classification") != CORE or get(ev, "event", "outcome") != "success":
            return
        local = datetime.fromtimestamp(ts, self.tz)
        if local.weekday() in self.t.workdays and self.t.work_start <= local.hour < self.t.work_end:
            return
        who = get(ev, "user", "name") or get(ev, "ztgw", "oidc", "client_id") or "?"
        yield Finding(self.rule_id, self.rule_name, 3, 68.0, str(who),
                      f"{who} read 核心 data ({get(ev, 'ztgw', 'data', 'dataset')}) at "
                      f"{local:%a %H:%M} local time", (eid,), source_ip=get(ev, "source", "ip"),
                      user=get(ev, "user", "name"), category="off-hours")


def default_detectors(t: Thresholds | None = None) -> list[Detector]:
    t = t or Thresholds()
    return [BruteForce(t), Spraying(t), Stuffing(t), TokenReplay(t), Enumeration(t),
            Exfiltration(t), OffHoursCore(t)]


def event_time(ev: Event) -> float:
    """``@timestamp`` as epoch seconds (now when missing or unreadable)."""
    ts = ev.get("@timestamp")
    if isinstance(ts, str):
        try:
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return datetime.now(UTC).timestamp()
