"""An address blocked by an automatic response (issue 10) gets nothing anywhere: not the data
APIs, not sign-in, tokens, the console or the admin API — only the health endpoints; lifting
the block restores it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from ztgw.scanners.response import ResponseBook

from .conftest import RunningGateway, start_processes, stop_processes


@pytest.fixture
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    g, procs = start_processes(tmp_path_factory.mktemp("ztgw-blocked"))
    try:
        yield g
    finally:
        stop_processes(procs)


def _status(gw: RunningGateway, method: str, path: str, **kw: object) -> int:
    return httpx.request(method, gw.base + path, timeout=10, **kw).status_code  # type: ignore[arg-type]


def test_a_blocked_address_gets_nothing_but_health(gw: RunningGateway) -> None:
    secret = gw.secret("demo-police")
    assert _status(gw, "GET", "/login") == 200
    book = ResponseBook(gw.home / "detection" / "detection.db", lambda e: None)
    action = book.take("block-ip", "127.0.0.1", 60, reason="test", rule_id="t", alert_id="a")
    time.sleep(1.5)  # the gateway's snapshot refreshes once a second
    for method, path, kw in (("GET", "/login", {}), ("GET", "/console/", {}),
                             ("POST", "/oauth2/token", {"data": {"grant_type": "client_credentials"},
                                                         "auth": ("demo-police", secret)}),
                             ("GET", "/admin/v1/openapi.json", {}),
                             ("GET", "/api/population/persons", {})):
        r = httpx.request(method, gw.base + path, timeout=10, **kw)  # type: ignore[arg-type]
        assert r.status_code == 403, (path, r.status_code)
        assert r.json()["error"] == "address_blocked"
    assert _status(gw, "GET", "/healthz") == 200
    book.undo(action.id, "tester")
    time.sleep(1.5)
    assert _status(gw, "GET", "/login") == 200
    assert _status(gw, "POST", "/oauth2/token", data={"grant_type": "client_credentials"},
                   auth=("demo-police", secret)) == 200
