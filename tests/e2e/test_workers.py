"""`ztgw serve --workers N`: several worker processes, one audit trail.  The workers hand
their events to the home's audit daemon (one SM3 chain, one writer); every answered request
has its event, the chain verifies, and a dead daemon means refusals until it is back — never
an unaudited answer."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .conftest import ZTGW, RunningGateway, start_processes, stop_processes

PERSONS = "/api/population/persons?page=1&size=2"  # 核心: each answer waits for its event


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    gw, procs = start_processes(tmp_path_factory.mktemp("ztgw-workers"), serve_args=["--workers", "2"])
    try:
        yield gw
    finally:
        stop_processes(procs)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _serve_pid(gw: RunningGateway) -> int:
    out = subprocess.run(["pgrep", "-f", f"serve --port {gw.base.rsplit(':', 1)[1]}"],
                         capture_output=True, text=True)
    return int(out.stdout.split()[0])


def _daemon_pid(gw: RunningGateway) -> int:
    found = [p for p in _children(_serve_pid(gw)) if "audit-daemon" in _cmdline(p)]
    assert len(found) == 1, found
    return found[0]


def _worker_pids(gw: RunningGateway) -> list[int]:
    return [p for p in _children(_serve_pid(gw)) if "spawn_main" in _cmdline(p)]


def test_every_answer_of_every_worker_is_in_one_intact_chain(workers: RunningGateway) -> None:
    gw = workers
    token = gw.token("demo-police")
    worker_pids = _worker_pids(gw)
    assert len(worker_pids) == 2, worker_pids
    before = {p: _cpu_ticks(p) for p in worker_pids}

    def call(_: int) -> tuple[int, str]:
        r = httpx.get(gw.base + PERSONS, headers={"Authorization": f"Bearer {token}"}, timeout=20)
        return r.status_code, r.headers["x-request-id"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(200)))
    assert all(status == 200 for status, _ in results)
    # both worker processes did work (the kernel spreads connections over them)
    assert all(_cpu_ticks(p) > before[p] for p in worker_pids)
    ids = {rid for _, rid in results}
    found: set[str] = set()
    for _ in range(100):
        events = gw.cli_json("audit", "search", "--since", "1h", "--limit", "5000", "--json")["events"]
        found = {e["http"]["request"]["id"] for e in events if e.get("http")} & ids
        if found == ids:
            break
        time.sleep(0.2)
    assert found == ids, f"{len(ids - found)} answered requests have no audit event"
    verify = subprocess.run([*ZTGW, "audit", "verify"], env=gw.env, capture_output=True,
                            text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_dead_daemon_means_refusals_then_it_is_restarted(workers: RunningGateway) -> None:
    gw = workers
    token = gw.token("demo-police")
    os.kill(_daemon_pid(gw), signal.SIGKILL)
    statuses = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = httpx.get(gw.base + PERSONS, headers={"Authorization": f"Bearer {token}"}, timeout=20)
        statuses.append(r.status_code)
        if r.status_code == 503:
            assert r.json()["error"] == "audit_unavailable"
            assert "items" not in r.text
        if r.status_code == 200 and 503 in statuses:
            break
        time.sleep(0.05)
    # refused while the writer was gone (never an unaudited answer), served again once back
    assert 503 in statuses and statuses[-1] == 200, statuses[-20:]
    assert set(statuses) <= {200, 503}
    verify = subprocess.run([*ZTGW, "audit", "verify"], env=gw.env, capture_output=True,
                            text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
