"""``ztgw scan coverage``: what the gateway exposes without enough control.

Routes (datasets) no allow rule covers, datasets without an owner or classification, and
data interfaces without traffic for N days — candidates to shut down (least functionality,
GB/T 22239 8.1.4.4).  Traffic is counted from the embedded audit store.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ztgw.audit.query import AuditQuery
from ztgw.audit.store import AuditStore
from ztgw.policies.bundle import PolicyBundle


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    dataset: str
    route_prefix: str
    owner: str | None
    classification: str | None  # None when no field is classified
    enabled: bool = True


ENTITLEMENT_CONDITIONS = frozenset({"granted", "consented"})  # issue 6: allowed per grant/consent


def _covered(ds: str, bundle: PolicyBundle) -> tuple[list[str], list[str]]:
    """Allow rules that cover ``ds``: (standing ones, those that need a grant or consent)."""
    standing: list[str] = []
    entitled: list[str] = []
    for r in bundle.rules:
        if r.effect != "allow" or not any(fnmatch.fnmatchcase(ds, p) for p in r.datasets):
            continue
        (entitled if ENTITLEMENT_CONDITIONS & set(r.when or {}) else standing).append(r.id)
    return standing, entitled


def scan_coverage(datasets: Iterable[DatasetInfo], bundle: PolicyBundle | None,
                  audit_db: Path | None, *, idle_days: int = 30) -> dict[str, Any]:
    findings: list[dict[str, Any]] = []
    since = (datetime.now(UTC) - timedelta(days=idle_days)).isoformat().replace("+00:00", "Z")
    traffic: dict[str, int] = {}
    if audit_db is not None and audit_db.exists():
        store = AuditStore(audit_db)
        try:
            for value, n in store.top(AuditQuery(since=since, event_dataset="ztgw.access"),
                                      "ztgw.data.dataset", 1000):
                traffic[str(value)] = n
        finally:
            store.close()
    rows = []
    for d in datasets:
        row = {"dataset": d.dataset, "route": d.route_prefix, "owner": d.owner,
               "classification": d.classification, "enabled": d.enabled,
               "requests": traffic.get(d.dataset, 0)}
        rows.append(row)
        if bundle is not None:
            rules, entitled = _covered(d.dataset, bundle)
            row["allow_rules"] = rules
            row["grant_rules"] = entitled
            if not rules:
                findings.append({"dataset": d.dataset, "severity": "medium" if not entitled else "low",
                                 "finding": "route without an allow policy (default deny answers all)"
                                 if not entitled else "route without an allow policy (reachable only "
                                 "through a grant or consent)"})
        if not d.owner:
            findings.append({"dataset": d.dataset, "severity": "medium", "finding": "dataset without owner"})
        if not d.classification:
            findings.append({"dataset": d.dataset, "severity": "high",
                             "finding": "dataset without classification"})
        if d.enabled and audit_db is not None and traffic.get(d.dataset, 0) == 0:
            findings.append({"dataset": d.dataset, "severity": "low",
                             "finding": f"no traffic for {idle_days} days: candidate to shut down"})
    return {"datasets": rows, "findings": findings, "idle_days": idle_days,
            "policy": f"{bundle.name}@{bundle.version}" if bundle else None}
