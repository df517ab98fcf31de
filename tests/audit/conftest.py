"""Helpers for the audit tests: events, settings on a temporary home, a sink that can fail."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ztgw.audit.config import AuditSettings
from ztgw.audit.errors import SinkError
from ztgw.audit.events import access_event


def make_event(rid: str, user: str = "alice", classification: str = "核心",
               path: str = "/api/population/persons") -> dict[str, Any]:
    return access_event(
        request_id=rid, method="GET", path=path, query_keys=["page"], status=200,
        outcome="success", source_ip="127.0.0.1", user_agent="ua", started_ns=1, ended_ns=2,
        subject={"id": f"user:{user}", "name": user, "roles": [], "client_id": "app"},
        decision={"effect": "allow", "reason": "r", "rule_id": "rule-1", "ruleset": "t"},
        data={"dataset": "population.persons", "classification": classification, "records": 1},
    )


@pytest.fixture
def conf(tmp_path: Path) -> AuditSettings:
    return AuditSettings(db_path=tmp_path / "audit" / "audit.db", keys_dir=tmp_path / "keys",
                         checkpoint_seconds=0.2, checkpoint_every=25)


def with_(conf: AuditSettings, **changes: Any) -> AuditSettings:
    return replace(conf, **changes)


class FlakySink:
    """Records what it takes; refuses while ``down`` is set (a sink outage)."""

    name = "flaky"

    def __init__(self) -> None:
        self.down = threading.Event()
        self.received: list[str] = []
        self.calls = 0
        self.refused = 0

    def send(self, docs: list[dict[str, Any]]) -> None:
        self.calls += 1
        if self.down.is_set():
            self.refused += 1
            raise SinkError("sink is down")
        self.received.extend(d["event"]["id"] for d in docs)

    def close(self) -> None:
        return None
