"""npm ``openid-client`` keeps working across a signing-key rotation of a running ``ztgw serve``
(no restart): it validated ID tokens of the old key, then meets an ID token with a ``kid`` its
cached JWKS lacks, fetches the JWKS again and accepts it."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import RunningGateway, start_processes, stop_processes

from .conftest import node_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
HERE = Path(__file__).parent
# oauth4webapi (under openid-client) refetches a JWKS for an unknown kid once its copy is 60 s
# old; a real deployment's publish delay (300 s) covers that, the test waits it out instead
RP_REFETCH_AGE = 61


@pytest.fixture(scope="module")
def rotating(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    why = node_ready()
    if why:
        pytest.skip(why)
    gw, procs = start_processes(tmp_path_factory.mktemp("ztgw-interop-rotation"),
                                {"ZTGW_KEY_PUBLISH_DELAY": "2"})
    try:
        yield gw
    finally:
        stop_processes(procs)


def read_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read() if proc.stderr else "no output"
    return dict(json.loads(line))


def test_openid_client_follows_key_rotation(rotating: RunningGateway) -> None:
    gw = rotating
    cb = "http://127.0.0.1:9/rot/cb"
    app = gw.cli_json("clients", "add", "--name", "轮换应用", "--redirect-uri", cb,
                      "--grant-type", "authorization_code", "--scope", "openid profile",
                      "--id-token-alg", "ES256", "--json")
    user = next(u for u in gw.accounts["users"] if u["username"] == "zhangwei")
    cfg = {"issuer": gw.base, "username": user["username"], "password": user["password"],
           "scope": "openid profile",
           "clients": [{"client_id": app["client_id"], "secret": app["client_secret"], "redirect_uri": cb}]}
    proc = subprocess.Popen(["node", str(HERE / "rp_rotation.mjs"), json.dumps(cfg)], cwd=HERE,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        first = read_line(proc)
        t_first = time.time()
        assert first["ok"], first
        done = gw.cli_json("keys", "rotate", "--alg", "ES256", "--json")
        assert first["kid"] in done["superseded"] and done["kid"] != first["kid"]
        time.sleep(max(0.0, max(done["sign_after"] + 1.5, t_first + RP_REFETCH_AGE) - time.time()))
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
        second = read_line(proc)
        assert second["ok"], second
        assert second["kid"] == done["kid"] and second["asked_password"] is False  # SSO still on
        assert second["sub"] == second["userinfo_sub"] == "zhangwei"
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()

