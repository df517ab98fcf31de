"""Alerts as stored: read from the audit trail (``event.dataset: ztgw.alert``), grouped by
``ztgw.alert.group``, acknowledged in the detection book (who, when, note)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ztgw.audit.query import AuditQuery, parse_time
from ztgw.audit.store import AuditStore

from .errors import BadInput
from .response import open_db

MAX_LIST = 10_000


class AlertBook:
    def __init__(self, audit_db: Path, state_db: Path) -> None:
        self.audit_db = audit_db
        self.state_db = state_db

    def _acks(self) -> dict[str, dict[str, Any]]:
        conn = open_db(self.state_db)
        try:
            return {r[0]: {"acked_at": r[1], "acked_by": r[2], "note": r[3]} for r in conn.execute(
                "SELECT alert_id, acked_at, acked_by, note FROM alert_ack").fetchall()}
        finally:
            conn.close()

    def _search(self, since: str | None, limit: int) -> list[dict[str, Any]]:
        if not self.audit_db.exists():
            return []
        store = AuditStore(self.audit_db)
        try:
            return store.search(AuditQuery(since=parse_time(since) if since else None,
                                           event_dataset="ztgw.alert", limit=limit))
        finally:
            store.close()

    def list(self, *, since: str | None = None, rule: str | None = None, unacked: bool = False,
             min_severity: int = 0, limit: int = 200, grouped: bool = False) -> list[dict[str, Any]]:
        if not 1 <= limit <= MAX_LIST:
            raise BadInput(f"limit must be between 1 and {MAX_LIST}")
        acks = self._acks()
        out = []
        for a in self._search(since, MAX_LIST):
            eid = a.get("event", {}).get("id", "")
            r = a.get("rule", {})
            if rule and rule not in (r.get("id"), r.get("name"), r.get("category")):
                continue
            if int(a.get("event", {}).get("severity", 0)) < min_severity:
                continue
            ack = acks.get(eid)
            if unacked and ack:
                continue
            out.append({**a, "ack": ack})
        if grouped:
            groups: dict[str, dict[str, Any]] = {}
            for a in out:
                g = a.get("ztgw", {}).get("alert", {}).get("group", a["event"]["id"])
                cur = groups.get(g)
                n = int(a.get("ztgw", {}).get("alert", {}).get("count", 1))
                if cur is None:
                    groups[g] = {"group": g, "latest": a, "alerts": 1, "events": n,
                                 "first": a["@timestamp"], "last": a["@timestamp"]}
                else:
                    cur["alerts"] += 1
                    cur["events"] += n
                    cur["first"] = min(cur["first"], a["@timestamp"])
            return list(groups.values())[:limit]
        return out[:limit]

    def show(self, alert_id: str) -> dict[str, Any]:
        for a in self.list(limit=MAX_LIST):
            if a["event"]["id"] == alert_id:
                evidence = a.get("ztgw", {}).get("alert", {}).get("evidence", [])
                a["evidence_events"] = self._evidence(evidence)
                return a
        raise BadInput(f"no alert {alert_id}")

    def _evidence(self, ids: list[str]) -> list[dict[str, Any]]:
        """The evidence events, looked up by event id in the newest part of the trail."""
        if not ids or not self.audit_db.exists():
            return []
        want = set(ids)
        store = AuditStore(self.audit_db)
        found: list[dict[str, Any]] = []
        try:
            seq = max(0, store.last_seq() - 200_000)
            while want:
                batch = store.after(seq, 5000)
                if not batch:
                    break
                seq = batch[-1][0]
                for _, doc in batch:
                    eid = doc.get("event", {}).get("id")
                    if eid in want:
                        found.append(doc)
                        want.discard(eid)
        finally:
            store.close()
        return found

    def ack(self, alert_id: str, actor: str, note: str | None = None) -> dict[str, Any]:
        self.show(alert_id)  # only known alerts are acknowledged
        conn = open_db(self.state_db)
        try:
            conn.execute("INSERT OR REPLACE INTO alert_ack (alert_id, acked_at, acked_by, note, audited)"
                         " VALUES (?,?,?,?,0)", (alert_id, time.time(), actor[:128], (note or "")[:512]))
        finally:
            conn.close()
        return {"alert_id": alert_id, "acked_by": actor, "note": note}
