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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from itertools import islice
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


_EMPTY: dict[str, Any] = {}  # read-only stand-in for a missing object


class View:
    """The fields the detectors read, taken from an ECS event once (not once per detector)."""

    __slots__ = ("action", "agent", "classification", "client", "data_dataset", "dataset", "ip",
                 "nbytes", "outcome", "path", "records", "status", "token", "user", "user_id")

    def __init__(self, ev: Event) -> None:
        get = ev.get
        e = get("event") or _EMPTY
        self.dataset = e.get("dataset")
        self.action = e.get("action")
        self.outcome = e.get("outcome")
        u = get("user") or _EMPTY
        self.user = u.get("name")
        self.user_id = u.get("id")
        self.ip = (get("source") or _EMPTY).get("ip")
        z = get("ztgw") or _EMPTY
        self.client = (z.get("oidc") or _EMPTY).get("client_id")
        tok = z.get("credential") or z.get("token")
        if tok.__class__ is not dict:
            tok = _EMPTY
        self.token = tok.get("fingerprint") or tok.get("id")
        d = z.get("data") or _EMPTY
        self.records = d.get("records")
        self.classification = d.get("classification")
        self.data_dataset = d.get("dataset")
        resp = (get("http") or _EMPTY).get("response") or _EMPTY
        size = d.get("bytes")
        if size.__class__ is not int:
            size = (resp.get("body") or _EMPTY).get("bytes")
        self.nbytes = size
        self.agent = (get("user_agent") or _EMPTY).get("original")
        self.status = resp.get("status_code")
        self.path = (get("url") or _EMPTY).get("path")


class Window:
    """One key's events in the window, with a running tally of their values (so distinct
    counts cost O(1) per event instead of a pass over the window)."""

    __slots__ = ("q", "tally")

    def __init__(self) -> None:
        self.q: deque[tuple[float, str, Any]] = deque()
        self.tally: dict[Any, int] = {}

    def __len__(self) -> int:
        return len(self.q)

    def _drop(self) -> None:
        _, _, v = self.q.popleft()
        tally = self.tally
        n = tally[v] - 1
        if n:
            tally[v] = n
        else:
            del tally[v]

    def ids(self) -> tuple[str, ...]:
        q = self.q
        return tuple(q[i][1] for i in range(max(0, len(q) - MAX_EVIDENCE), len(q)))

    def values(self) -> list[Any]:
        return [v for _, _, v in self.q]


class SumWindow:
    """One key's events in the window with running sums of two counts (records, bytes)."""

    __slots__ = ("q", "sum_a", "sum_b")

    def __init__(self) -> None:
        self.q: deque[tuple[float, str, int, int]] = deque()
        self.sum_a = 0
        self.sum_b = 0

    def __len__(self) -> int:
        return len(self.q)

    def ids(self) -> tuple[str, ...]:
        q = self.q
        return tuple(q[i][1] for i in range(max(0, len(q) - MAX_EVIDENCE), len(q)))


class Distinct:
    """One key's distinct values (value → last time seen) and its newest event ids.  Expiry
    is lazy: an add is one dict store; :meth:`live` drops what left the window when a count
    matters (a count can only shrink by expiry, so a count under a threshold needs none)."""

    __slots__ = ("purge_at", "recent", "tally")

    def __init__(self) -> None:
        self.tally: dict[Any, float] = {}  # named like Window's for callers
        self.recent: deque[tuple[float, str]] = deque(maxlen=MAX_EVIDENCE)
        self.purge_at = 64

    def __len__(self) -> int:
        return len(self.tally)

    def live(self, limit: float) -> int:
        """Drop values last seen before ``limit``; how many remain."""
        seen = self.tally
        old = [v for v, t in seen.items() if t < limit]
        for v in old:
            del seen[v]
        return len(seen)

    def has(self, value: Any, limit: float) -> bool:
        t = self.tally.get(value)
        return t is not None and t >= limit

    def ids(self) -> tuple[str, ...]:
        return tuple(e for _, e in self.recent)


class DistinctWindows:
    """Per-key distinct values within a sliding window (keys and values bounded)."""

    def __init__(self, span: float, max_values: int = 10_000) -> None:
        self.span = span
        self.max_values = max_values
        self._keys: OrderedDict[str, Distinct] = OrderedDict()

    def add(self, key: str, ts: float, eid: str, value: Any) -> Distinct:
        keys = self._keys
        w = keys.get(key)
        if w is None:
            w = keys[key] = Distinct()
            if len(keys) > MAX_KEYS:
                keys.popitem(last=False)
        else:
            keys.move_to_end(key)
        seen = w.tally
        last = seen.get(value)
        if last is None or ts > last:
            seen[value] = ts
        w.recent.append((ts, eid))
        if len(seen) > w.purge_at:  # amortised: the next purge waits for twice what is live
            n = w.live(ts - self.span)
            if n > self.max_values:  # still too many inside the window: the longest unseen go
                for v, _ in sorted(seen.items(), key=lambda kv: kv[1])[:n - self.max_values]:
                    del seen[v]
            w.purge_at = max(64, 2 * len(seen))
        return w


class Windows:
    """Per-key sliding windows with a bound on the number of keys."""

    def __init__(self, span: float) -> None:
        self.span = span
        self._keys: OrderedDict[str, Window] = OrderedDict()

    def add(self, key: str, ts: float, eid: str, value: Any = None) -> Window:
        keys = self._keys
        w = keys.get(key)
        if w is None:
            w = keys[key] = Window()
            if len(keys) > MAX_KEYS:
                keys.popitem(last=False)
        else:
            keys.move_to_end(key)
        q = w.q
        q.append((ts, eid, value))
        tally = w.tally
        tally[value] = tally.get(value, 0) + 1
        limit = ts - self.span
        while q[0][0] < limit:  # never empties: the event just added is inside the window
            w._drop()
        if len(q) > 10_000:  # bounded even inside the window
            w._drop()
        return w

    def clear(self, key: str) -> None:
        self._keys.pop(key, None)


class SumWindows:
    """Per-key sliding sums (records and bytes) with a bound on the number of keys."""

    def __init__(self, span: float) -> None:
        self.span = span
        self._keys: OrderedDict[str, SumWindow] = OrderedDict()

    def add(self, key: str, ts: float, eid: str, a: int, b: int) -> SumWindow:
        keys = self._keys
        w = keys.get(key)
        if w is None:
            w = keys[key] = SumWindow()
            if len(keys) > MAX_KEYS:
                keys.popitem(last=False)
        else:
            keys.move_to_end(key)
        q = w.q
        q.append((ts, eid, a, b))
        w.sum_a += a
        w.sum_b += b
        limit = ts - self.span
        while q[0][0] < limit or len(q) > 10_000:
            _, _, da, db = q.popleft()
            w.sum_a -= da
            w.sum_b -= db
        return w


def _ids(w: Window | SumWindow | Distinct) -> tuple[str, ...]:
    return w.ids()


class Detector:
    rule_id = ""
    rule_name = ""
    datasets: frozenset[str] | None = None  # the event.dataset values it reads (None: all)

    def observe(self, v: View, ts: float, eid: str) -> list[Finding] | None:
        raise NotImplementedError


class BruteForce(Detector):
    rule_id, rule_name = "ztgw-brute-force", "Brute force against one account"
    datasets = frozenset({"ztgw.auth"})

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self.w = Windows(t.brute_force_window)

    def observe(self, v: View, ts: float, eid: str) -> list[Finding] | None:
        if v.action not in LOGIN_FAILURES:
            return None
        user = v.user
        client = v.client
        ip = v.ip
        token_ep = v.action == "token-request-failed"
        # the token endpoint may not know which client failed (bad Basic credentials): then
        # the guessing address is the key
        account = user if user and user != "(unknown)" else (
            f"client:{client}" if token_ep and client else f"ip:{ip}" if token_ep and ip else None)
        if account is None:
            return None
        q = self.w.add(account, ts, eid)
        if len(q) >= self.t.brute_force_failures:
            ips = sorted({str(v.ip or "")} - {""})
            return [Finding(self.rule_id, self.rule_name, 3, 73.0, account,
                          f"{len(q)} failed sign-ins for {account} within "
                          f"{int(self.t.brute_force_window)} s", _ids(q),
                          source_ip=ip, user=None if account.startswith("ip:") else account,
                          category="brute-force", extra={"failures": len(q), "addresses": ips})]


class Spraying(Detector):
    rule_id, rule_name = "ztgw-password-spraying", "Password spraying from one address"
    datasets = frozenset({"ztgw.auth"})

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self.w = DistinctWindows(t.spray_window)

    def observe(self, v: View, ts: float, eid: str) -> list[Finding] | None:
        if v.action != "login-failed":
            return None
        ip, user = v.ip, v.user
        if not ip or not user or user == "(unknown)":
            return None
        q = self.w.add(ip, ts, eid, user)
        users = len(q.tally)
        if users >= self.t.spray_accounts:
            users = q.live(ts - self.t.spray_window)
        if users >= self.t.spray_accounts:
            return [Finding(self.rule_id, self.rule_name, 3, 73.0, ip,
                          f"{users} accounts failed to sign in from {ip}", _ids(q),
                          source_ip=ip, category="password-spraying",
                          extra={"accounts": users})]


class Stuffing(Detector):
    rule_id, rule_name = "ztgw-credential-stuffing", "Credential stuffing from one address"
    datasets = frozenset({"ztgw.auth"})

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self.w = Windows(t.stuffing_window)

    def observe(self, v: View, ts: float, eid: str) -> list[Finding] | None:
        action = v.action
        if action not in ("login-failed", "login-succeeded"):
            return None
        ip = v.ip
        if not ip:
            return None
        user = v.user or "(unknown)"
        q = self.w.add(ip, ts, eid, (action, user))
        if action != "login-failed":
            return None
        failed = sum(n for (a, _), n in q.tally.items() if a == "login-failed")
        if failed < self.t.stuffing_attempts:
            return None
        unknown = q.tally.get(("login-failed", "(unknown)"), 0)
        hits = {u for (a, u) in q.tally if a == "login-succeeded"}
        distinct_failed = sum(1 for (a, _) in q.tally if a == "login-failed")
        if unknown / failed >= self.t.stuffing_unknown_ratio or (hits and distinct_failed >= 3):
            return [Finding(self.rule_id, self.rule_name, 3 if not hits else 4, 80.0 if not hits else 95.0,
                          ip, f"{failed} failed sign-ins ({unknown} unknown accounts, "
                          f"{len(hits)} successes) from {ip}", _ids(q), source_ip=ip,
                          category="credential-stuffing",
                          extra={"failures": failed, "unknown": unknown, "successes": len(hits)})]


class TokenReplay(Detector):
    """One bearer token (``ztgw.credential.fingerprint``, recorded by the data plane) used
    from several addresses or user agents; without it, one principal from many addresses."""

    rule_id, rule_name = "ztgw-token-replay", "Token replayed from another client or address"
    datasets = frozenset({"ztgw.access"})

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self.w = DistinctWindows(t.replay_window)  # addresses per token/principal
        self.agents = DistinctWindows(t.replay_window)  # user agents per token

    def observe(self, v: View, ts: float, eid: str) -> list[Finding] | None:
        if v.dataset != "ztgw.access":
            return None
        ip = v.ip
        if not ip:
            return None
        fp = v.token
        if fp:
            key, need = f"token:{fp}", self.t.replay_addresses
        else:
            principal = v.user_id or v.user
            if not principal:
                return None
            client = v.client or ""
            key, need = f"principal:{principal}/{client}", self.t.replay_principal_addresses
        q = self.w.add(key, ts, eid, ip)
        limit = ts - self.t.replay_window
        n_ips = len(q.tally)
        if n_ips >= need:
            n_ips = q.live(limit)
        n_agents = 0
        if fp:
            a = self.agents.add(key, ts, eid, v.agent or "")
            n_agents = len(a.tally)
            if n_agents >= need + 1:
                n_agents = a.live(limit)
        if n_ips >= need or n_agents >= need + 1:
            return [Finding(self.rule_id, self.rule_name, 4, 90.0, key,
                          f"{key.split(':', 1)[0]} used from {len(q.tally)} addresses"
                          + (f" and {n_agents} user agents" if fp else ""), _ids(q), source_ip=ip,
                          user=v.user, category="token-replay",
                          extra={"addresses": list(islice(q.tally, 20))})]


class Enumeration(Detector):
    rule_id, rule_name = "ztgw-enumeration", "Enumeration: burst of refusals or sequential identifiers"
    datasets = frozenset({"ztgw.access"})

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self.denials = Windows(t.enum_window)
        self.ids = DistinctWindows(t.enum_sequential_window)

    def observe(self, v: View, ts: float, eid: str) -> list[Finding] | None:
        if v.dataset != "ztgw.access":
            return None
        found: list[Finding] = []
        ip = v.ip
        who = v.user or ip
        status = v.status
        if status in DENIED_STATUSES and ip:
            q = self.denials.add(ip, ts, eid)
            if len(q) >= self.t.enum_denials:
                found.append(Finding(self.rule_id, self.rule_name, 2, 55.0, f"denials:{ip}",
                              f"{len(q)} 401/403/404 answers to {ip} within "
                              f"{int(self.t.enum_window)} s", _ids(q), source_ip=ip,
                              user=v.user, category="enumeration"))
        path = v.path
        if not who or not isinstance(path, str):
            return found
        if not path[-1:].isdigit() and path[-1:] not in ("X", "x"):
            return found
        prefix, _, last = path.rpartition("/")
        if not prefix:
            return found
        if len(last) >= 3 and last.isdigit() and last.isascii():
            ident = int(last[-15:])
        else:
            m = _DIGITS.search(last)
            if not m:
                return found
            ident = int(m.group(1)[-15:])
        q = self.ids.add(f"{who}|{prefix}", ts, eid, ident)
        if len(q.tally) < self.t.enum_sequential:  # an upper bound of those in the window
            return found
        # the run of identifiers (gaps of at most 2) that the new one belongs to: O(run)
        get = q.tally.get
        limit = ts - self.t.enum_sequential_window
        best = 1
        for step in (-1, 1):
            cur = ident
            while best <= 10_000:
                t = get(cur + step)
                if t is not None and t >= limit:
                    cur += step
                else:
                    t = get(cur + 2 * step)
                    if t is None or t < limit:
                        break
                    cur += 2 * step
                best += 1
        if best >= self.t.enum_sequential:
            found.append(Finding(self.rule_id, self.rule_name, 3, 70.0, f"sequential:{who}|{prefix}",
                          f"{best} consecutive identifiers under {prefix} read by {who}",
                          _ids(q), source_ip=ip, user=v.user,
                          category="enumeration", extra={"run": best}))
        return found


class Exfiltration(Detector):
    """Records (or bytes) per principal in a window far above that principal's baseline."""

    rule_id, rule_name = "ztgw-bulk-exfiltration", "Bulk data exfiltration by one principal"
    datasets = frozenset({"ztgw.access"})

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self.w = SumWindows(t.exfil_window)
        self.baseline: dict[str, float] = {}

    def observe(self, v: View, ts: float, eid: str) -> list[Finding] | None:
        if v.dataset != "ztgw.access":
            return None
        records = v.records
        size = v.nbytes
        if not isinstance(records, int) and not isinstance(size, int):
            return None
        who = v.user or v.client
        if not who:
            return None
        q = self.w.add(who, ts, eid, records if isinstance(records, int) else 0,
                       size if isinstance(size, int) else 0)
        total, nbytes = q.sum_a, q.sum_b
        base = self.baseline.get(who, 0.0)
        # exponentially weighted per-window baseline, learnt from quiet windows only
        limit = max(self.t.exfil_min_records, self.t.exfil_factor * base)
        if total >= limit or nbytes >= self.t.exfil_min_bytes:
            return [Finding(self.rule_id, self.rule_name, 4, 92.0, who,
                          f"{who} read {total} records ({nbytes} bytes) within "
                          f"{int(self.t.exfil_window)} s (baseline {base:.0f})", _ids(q),
                          source_ip=v.ip, user=who, category="exfiltration",
                          extra={"records": total, "bytes": nbytes, "baseline": round(base, 1)})]
        elif len(self.baseline) < MAX_KEYS or who in self.baseline:
            self.baseline[who] = 0.98 * base + 0.02 * total if base else float(total)


class OffHoursCore(Detector):
    rule_id, rule_name = "ztgw-off-hours-core", "Off-hours access to 核心 data"

    def __init__(self, t: Thresholds) -> None:
        self.t = t
        self.tz = timezone(timedelta(hours=t.utc_offset_hours))

    def observe(self, v: View, ts: float, eid: str) -> list[Finding] | None:
        if v.classification != CORE or v.outcome != "success":
            return None
        local = datetime.fromtimestamp(ts, self.tz)
        if local.weekday() in self.t.workdays and self.t.work_start <= local.hour < self.t.work_end:
            return None
        who = v.user or v.client or "?"
        return [Finding(self.rule_id, self.rule_name, 3, 68.0, str(who),
                      f"{who} read 核心 data ({v.data_dataset}) at "
                      f"{local:%a %H:%M} local time", (eid,), source_ip=v.ip,
                      user=v.user, category="off-hours")]


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
