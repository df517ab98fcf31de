"""``ztgw scan coverage``: what the gateway exposes without enough control.

Routes (datasets) no allow rule covers, datasets without an owner or classification, data
interfaces without traffic for N days — candidates to shut down (least functionality,
GB/T 22239 8.1.4.4) —, grants and consents that have expired or expire soon, and fields whose
sampled content is personal data while the catalogue flags or classifies them lower.
Traffic is counted from the embedded audit store; grants, consents and sampled findings
come from providers the gateway installs (this package does not read gateway tables).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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
    fields: Mapping[str, str] = field(default_factory=dict)  # field -> classification label
    pi: Mapping[str, str] = field(default_factory=dict)  # field -> "personal" | "sensitive"


@dataclass(frozen=True, slots=True)
class GrantInfo:
    """A data-use grant (or a citizen's consent) as coverage needs it: no personal data."""

    id: str
    kind: str  # "grant" | "consent"
    dataset: str
    holder: str  # the grantee subject, or the consenting app's client id
    status: str  # active / revoked
    expires_at: float  # epoch seconds


# detector types that are sensitive personal information (PIPL art. 28: identity documents,
# financial accounts); the others are personal information
SENSITIVE_TYPES = frozenset({"cn_id_number", "bank_card", "cn_passport"})
LOWEST_CLASSIFICATION = "一般"


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


def _grant_findings(grants: Iterable[GrantInfo], now: float, expiring_days: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    soon = now + expiring_days * 86400
    for g in grants:
        if g.status != "active":
            continue
        what = {"dataset": g.dataset, g.kind: g.id, "holder": g.holder,
                "expires": datetime.fromtimestamp(g.expires_at, UTC).isoformat().replace("+00:00", "Z")}
        if g.expires_at <= now:
            days = int((now - g.expires_at) // 86400)
            out.append({**what, "severity": "low", "finding":
                        f"expired {g.kind} still on record as active ({days} days ago): access "
                        "stopped at expiry; revoke or archive it"})
        elif g.expires_at <= soon:
            hours = int((g.expires_at - now) // 3600)
            out.append({**what, "severity": "info", "finding":
                        f"{g.kind} expires within {expiring_days} days (in {hours} h): renew or let lapse"})
    return out


def _pi_findings(d: DatasetInfo, sampled: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Fields whose sampled content is personal data while the catalogue says less."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for f in sampled.get("fields", ()):
        path, kind = str(f.get("field", "")), str(f.get("type", ""))
        top = path.split(".", 1)[0].removesuffix("[]")
        if (top, kind) in seen:
            continue
        seen.add((top, kind))
        sensitive = kind in SENSITIVE_TYPES
        flag = d.pi.get(top)
        label = d.fields.get(top)
        base = {"dataset": d.dataset, "field": top, "type": kind, "sampled_rows": f.get("rows")}
        if top not in d.fields:
            out.append({**base, "severity": "high", "finding":
                        f"field not in the catalogue carries personal data ({kind}) in sampled answers"})
        elif flag not in ("personal", "sensitive"):
            out.append({**base, "severity": "high", "finding":
                        f"field not flagged personal information but sampled content is {kind}"})
        elif sensitive and flag != "sensitive":
            out.append({**base, "severity": "medium", "finding":
                        f"field flagged personal, sampled content is sensitive ({kind})"})
        if sensitive and label == LOWEST_CLASSIFICATION and top in d.fields:
            out.append({**base, "severity": "medium", "finding":
                        f"field classified {label} but sampled content is sensitive personal data ({kind})"})
    return out


def scan_coverage(datasets: Iterable[DatasetInfo], bundle: PolicyBundle | None,
                  audit_db: Path | None, *, idle_days: int = 30,
                  grants: Iterable[GrantInfo] | None = None, expiring_days: int = 7,
                  sampled: Iterable[Mapping[str, Any]] | None = None,
                  now: float | None = None) -> dict[str, Any]:
    findings: list[dict[str, Any]] = []
    now = datetime.now(UTC).timestamp() if now is None else now
    by_ds = {str(x.get("dataset")): x for x in sampled or ()}
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
        if d.dataset in by_ds:
            pi = _pi_findings(d, by_ds[d.dataset])
            row["sampled_pi_fields"] = sorted({f["field"] for f in pi})
            findings += pi
    grant_list = list(grants) if grants is not None else None
    if grant_list is not None:
        findings += _grant_findings(grant_list, now, expiring_days)
    return {"datasets": rows, "findings": findings, "idle_days": idle_days,
            "expiring_days": expiring_days,
            "grants_checked": None if grant_list is None else len(grant_list),
            "sampled_datasets": len(by_ds),
            "policy": f"{bundle.name}@{bundle.version}" if bundle else None}
