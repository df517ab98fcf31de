"""A real ztgw: `ztgw init`, `ztgw demo seed`, the demo upstream and `ztgw serve` as
subprocesses on free loopback ports.  Tests talk to them over HTTP only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from scale.services import backend_env  # ZTGW_TEST_BACKEND=postgres: PostgreSQL + Redis

ZTGW = [sys.executable, "-m", "ztgw.gateway"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


@dataclass
class RunningGateway:
    base: str
    upstream: str
    home: Path
    accounts: dict[str, Any]
    env: dict[str, str]

    def secret(self, client_id: str) -> str:
        return next(c["client_secret"] for c in self.accounts["clients"]
                    if c["client_id"] == client_id)

    def token(self, client_id: str) -> str:
        r = httpx.post(f"{self.base}/oauth2/token", data={"grant_type": "client_credentials"},
                       auth=(client_id, self.secret(client_id)), timeout=10)
        assert r.status_code == 200, r.text
        return str(r.json()["access_token"])

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ZTGW, *args], env=self.env, capture_output=True, text=True,
                              timeout=60)

    def cli_json(self, *args: str) -> Any:
        out = self.cli(*args)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def audit_event(self, request_id: str, timeout: float = 15.0) -> dict[str, Any]:
        """The access event of one request, from the embedded store (`ztgw audit search`),
        waiting for the store sink to catch up."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self.cli_json("audit", "search", "--request-id", request_id, "--json")["events"]
            if ev:
                return dict(ev[0])
            if time.monotonic() > deadline:
                raise AssertionError(f"no audit event for request {request_id}")
            time.sleep(0.1)


def start_processes(home: Path, extra_env: dict[str, str] | None = None,
                    upstream: str | None = None, serve_args: list[str] | None = None
                    ) -> tuple[RunningGateway, list[subprocess.Popen[bytes]]]:
    """Start a gateway (and, unless ``upstream`` names another one, the demo upstream)."""
    gw_port, up_port = free_port(), free_port()
    extra_env = extra_env or {}
    backend = {} if "ZTGW_DIRECTORY_URL" in extra_env else backend_env()
    env = {**os.environ, "ZTGW_HOME": str(home), **backend, **extra_env}
    env.pop("ZTGW_CONFIG", None)
    own_upstream = upstream is None
    upstream = upstream or f"http://127.0.0.1:{up_port}"
    subprocess.run([*ZTGW, "init"], env=env, check=True, capture_output=True, timeout=60)
    seeded = subprocess.run([*ZTGW, "demo", "seed", "--json", "--upstream-url", upstream],
                            env=env, check=True, capture_output=True, text=True, timeout=60)
    procs = []
    if own_upstream:
        procs.append(subprocess.Popen([*ZTGW, "demo", "upstream", "--port", str(up_port)], env=env))
    procs.append(subprocess.Popen([*ZTGW, "serve", "--port", str(gw_port), *(serve_args or [])],
                                  env=env))
    base = f"http://127.0.0.1:{gw_port}"
    try:
        # generous bounds: a shared 2-core machine under load starts these in 15-30 s
        if own_upstream:
            wait_http(f"{upstream}/api/population/persons?size=1", procs[0], timeout=90)
        wait_http(f"{base}/readyz", procs[-1], timeout=90)
    except Exception:
        stop_processes(procs)
        raise
    gw = RunningGateway(base=base, upstream=upstream, home=home,
                        accounts=json.loads(seeded.stdout), env=env)
    return gw, procs


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    gw, procs = start_processes(tmp_path_factory.mktemp("ztgw-home"))
    try:
        yield gw
    finally:
        stop_processes(procs)
