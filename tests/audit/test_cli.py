"""``ztgw audit search|tail|status`` on a real home, as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ztgw.audit.config import AuditSettings
from ztgw.audit.log import AuditLog

from .conftest import make_event


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ztgw.gateway", *args],
                          env={"PATH": "/usr/bin:/bin", "ZTGW_HOME": str(home)},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_search_top_tail_status(tmp_path: Path) -> None:
    home = tmp_path / "home"
    conf = AuditSettings(db_path=home / "audit" / "audit.db", keys_dir=home / "keys")
    log = AuditLog.from_settings(conf)
    log.start()
    for i in range(30):
        ev = make_event(f"req-{i}", user="bob" if i % 3 == 0 else "alice")
        if i == 5:
            ev["user_agent"] = {"original": "[bold red]x[/] \x1b[2J"}  # markup and escapes
        log.emit(ev).result(timeout=10)
    assert log.flush(10)
    log.close()

    out = json.loads(cli(home, "audit", "search", "--user", "bob", "--json").stdout)
    assert out["total"] == 10 and out["total_relation"] == "eq"
    assert {e["user"]["name"] for e in out["events"]} == {"bob"}
    assert out["events"][0]["http"]["request"]["id"] == "req-27"  # newest first

    top = json.loads(cli(home, "audit", "search", "--top", "user.name", "--json").stdout)
    assert top["buckets"] == [{"value": "alice", "count": 20}, {"value": "bob", "count": 10}]

    bad = cli(home, "audit", "search", "--top", "doc", "--json")
    assert bad.returncode == 2
    assert cli(home, "audit", "search", "--since", "yesterday").returncode == 2

    table = cli(home, "audit", "search", "--limit", "30")
    assert table.returncode == 0 and "\x1b[2J" not in table.stdout and "req-5" in table.stdout

    tail = cli(home, "audit", "tail", "-n", "3", "--json")
    lines = [json.loads(x) for x in tail.stdout.splitlines()]
    assert [e["http"]["request"]["id"] for e in lines] == ["req-27", "req-28", "req-29"]

    status = json.loads(cli(home, "audit", "status", "--json").stdout)
    assert status["sinks"]["store"]["backlog_bytes"] == 0
    assert status["last_checkpoint"]["seq_to"] == 30
