"""``kill -9`` of a real ``ztgw serve`` under concurrent load of 核心 data: after a restart, every
request that was answered 200 has its audit event (by X-Request-ID), nothing is duplicated,
and the chain still verifies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from e2e.conftest import ZTGW, start_processes, stop_processes, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PERSONS = "/api/population/persons"  # 核心: the response waits for the durable event
WORKERS = 6


def _load(base: str, token: str, ok: list[str], stop: threading.Event) -> None:
    with httpx.Client(base_url=base, timeout=5,
                      headers={"Authorization": f"Bearer {token}"}) as client:
        while not stop.is_set():
            try:
                r = client.get(PERSONS, params={"size": 1})
            except httpx.HTTPError:
                continue  # the gateway is gone: whatever was in flight got no answer
            if r.status_code == 200:
                ok.append(r.headers["x-request-id"])


def test_kill_9_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    gw, procs = start_processes(tmp_path / "home")
    serve = procs[1]
    try:
        token = gw.token("demo-police")
        assert httpx.get(f"{gw.base}{PERSONS}", params={"size": 1},
                         headers={"Authorization": f"Bearer {token}"}).status_code == 200
        before = gw.cli_json("audit", "search", "--limit", "10000", "--json")["total"]
        ok: list[str] = []
        stop = threading.Event()
        threads = [threading.Thread(target=_load, args=(gw.base, token, ok, stop))
                   for _ in range(WORKERS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(ok) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(serve.pid, signal.SIGKILL)  # mid-load, no shutdown hook runs
        serve.wait(10)
        stop.set()
        for t in threads:
            t.join(10)
        acknowledged = list(ok)
        assert len(acknowledged) >= 300, "the load did not get going"

        port = gw.base.rsplit(":", 1)[1]
        procs[1] = subprocess.Popen([*ZTGW, "serve", "--port", port], env=gw.env)
        wait_http(f"{gw.base}/readyz", procs[1])
        # the restarted gateway ships the spool to the store; give it a moment to catch up
        found: dict[str, int] = {}
        for _ in range(100):
            out = gw.cli_json("audit", "search", "--limit", "10000", "--json")
            found = {}
            for e in out["events"]:
                if e["event"].get("dataset") != "ztgw.access":
                    continue  # token issuance and other events share the trail
                rid = e["http"]["request"]["id"]
                found[rid] = found.get(rid, 0) + 1
            if all(r in found for r in acknowledged):
                break
            time.sleep(0.2)
        missing = [r for r in acknowledged if r not in found]
        assert not missing, f"{len(missing)} acknowledged requests have no audit event"
        assert all(n == 1 for n in found.values()), "an event was stored twice"
        assert out["total"] >= before + len(acknowledged)
        verify = gw.cli("audit", "verify", "--json")
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert json.loads(verify.stdout)["ok"] is True
    finally:
        stop_processes(procs)
