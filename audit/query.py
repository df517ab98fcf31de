"""One query model for audit investigation, translated to each store's language.

The same :class:`AuditQuery` drives the embedded SQLite store (:mod:`.store`) and, for
scale, Elasticsearch DSL (:func:`to_es_dsl`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import QueryError

# ECS field -> indexed column of the embedded store
FIELDS: dict[str, str] = {
    "event.dataset": "dataset",
    "event.action": "action",
    "event.outcome": "outcome",
    "user.name": "user_name",
    "ztgw.oidc.client_id": "client_id",
    "source.ip": "source_ip",
    "ztgw.data.dataset": "data_dataset",
    "ztgw.decision.effect": "decision",
    "http.request.id": "request_id",
}
MAX_LIMIT = 10_000
_RELATIVE = re.compile(r"^(\d{1,6})([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(value: str, now: datetime | None = None) -> str:
    """ISO-8601 (naive = UTC) or a relative age like ``15m``, ``24h``, ``7d`` → ISO UTC text."""
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(value.strip())
    if m:
        when = now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    else:
        try:
            when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise QueryError(f"bad time {value!r}: use ISO-8601 or an age like 15m/24h/7d") from exc
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class AuditQuery:
    since: str | None = None
    until: str | None = None
    user: str | None = None
    client: str | None = None
    source_ip: str | None = None
    dataset: str | None = None
    decision: str | None = None
    outcome: str | None = None
    event_dataset: str | None = None
    request_id: str | None = None
    text: str | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise QueryError(f"limit must be between 1 and {MAX_LIMIT}")
        if self.decision not in (None, "allow", "deny"):
            raise QueryError("decision must be 'allow' or 'deny'")

    def equals(self) -> dict[str, str]:
        """ECS field → value for the exact-match filters that are set."""
        pairs = {
            "user.name": self.user,
            "ztgw.oidc.client_id": self.client,
            "source.ip": self.source_ip,
            "ztgw.data.dataset": self.dataset,
            "ztgw.decision.effect": self.decision,
            "event.outcome": self.outcome,
            "event.dataset": self.event_dataset,
            "http.request.id": self.request_id,
        }
        return {k: v for k, v in pairs.items() if v is not None}


def to_es_dsl(query: AuditQuery) -> dict[str, Any]:
    """The same query as an Elasticsearch ``_search`` body."""
    filters: list[dict[str, Any]] = [{"term": {k: v}} for k, v in query.equals().items()]
    if query.since or query.until:
        rng: dict[str, str] = {}
        if query.since:
            rng["gte"] = query.since
        if query.until:
            rng["lt"] = query.until
        filters.append({"range": {"@timestamp": rng}})
    must: list[dict[str, Any]] = []
    if query.text:
        must.append({"simple_query_string": {"query": query.text, "default_operator": "and"}})
    return {
        "size": query.limit,
        "sort": [{"@timestamp": "desc"}],
        "query": {"bool": {"filter": filters, "must": must}},
    }
