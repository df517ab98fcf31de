"""N ``ztgw serve`` replicas sharing one PostgreSQL directory and one redis-server.

The deployment choices these tests pin (docs/operations.md, "Running several replicas"):

* state: one database (``ZTGW_DIRECTORY_URL``) and one Redis (``ZTGW_REDIS_URL``);
* keys: every replica has the same ``HOME/keys`` (token signing, client-secret pepper, identity
  header and protection keys) — here copied from the first home, in production a Secret;
* policy bundle: one shared folder (``ZTGW_POLICY_BUNDLE``) — here the first home's, in
  production a read-only volume — and ``ztgw policy install`` notifies every replica on Redis;
* issuer: one public URL (``ZTGW_ISSUER``, the load balancer's); here the first replica's;
* audit: each replica keeps its own spool and hash chain under its own home (one writer each).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from e2e.conftest import ZTGW, RunningGateway, free_port, stop_processes, wait_http

from scale.services import Postgres, Redis


def shared_env(pg_url: str, redis: Redis, bundle: Path, issuer: str, prefix: str,
               extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"ZTGW_DIRECTORY_URL": pg_url, "ZTGW_REDIS_URL": redis.url,
            "ZTGW_REDIS_KEY_PREFIX": prefix, "ZTGW_POLICY_BUNDLE": str(bundle),
            "ZTGW_ISSUER": issuer, **(extra or {})}


def start_replicas(root: Path, pg: Postgres, redis: Redis, n: int = 2,
                   extra_env: dict[str, str] | None = None,
                   ) -> tuple[list[RunningGateway], list[subprocess.Popen[bytes]]]:
    import os

    homes = [root / f"replica-{i}" for i in range(n)]
    ports = [free_port() for _ in range(n)]
    up_port = free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    bundle = homes[0] / "policies" / "active"
    common = shared_env(pg.new_database(), redis, bundle, f"http://127.0.0.1:{ports[0]}",
                        f"ztgw-{root.name}:", extra_env)
    envs = []
    for home in homes:
        env = {**os.environ, "ZTGW_HOME": str(home), **common}
        env.pop("ZTGW_CONFIG", None)
        envs.append(env)

    def run(env: dict[str, str], *args: str) -> str:
        out = subprocess.run([*ZTGW, *args], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    run(envs[0], "init")
    accounts = json.loads(run(envs[0], "demo", "seed", "--json", "--upstream-url", upstream))
    for home, env in zip(homes[1:], envs[1:], strict=True):
        home.mkdir(parents=True)
        home.chmod(0o700)
        shutil.copytree(homes[0] / "keys", home / "keys")  # the same keys everywhere
        run(env, "init")  # keeps the copied keys; the schema is already at head
    procs = [subprocess.Popen([*ZTGW, "demo", "upstream", "--port", str(up_port)], env=envs[0])]
    try:
        wait_http(f"{upstream}/api/population/persons?size=1", procs[0])
        for env, port in zip(envs, ports, strict=True):
            procs.append(subprocess.Popen([*ZTGW, "serve", "--port", str(port)], env=env))
        for port, proc in zip(ports, procs[1:], strict=True):
            wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=60)
    except Exception:
        stop_processes(procs)
        raise
    gws = [RunningGateway(base=f"http://127.0.0.1:{port}", upstream=upstream, home=home,
                          accounts=accounts, env=env)
           for port, home, env in zip(ports, homes, envs, strict=True)]
    return gws, procs
