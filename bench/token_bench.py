"""Client-credentials token issuance per second: ztgw (SM2 and ES256 access tokens) against
the npm ``oidc-provider`` issuing ES256 JWT access tokens, on this machine, in one run.

Each server runs as one process (ztgw: ``ztgw serve --workers 1``; oidc-provider: one Node.js
process) on loopback; ``wrk`` posts ``grant_type=client_credentials`` with HTTP Basic client
authentication over keep-alive connections.  Every response is checked first (a 200 with an
access token of the expected ``alg``), and wrk's non-2xx count must be zero for a figure to be
reported.

Usage: .venv/bin/python bench/token_bench.py [--seconds 10] [--connections 16] [--rounds 2]
       [--markdown] [--with-two-workers]   (needs wrk, node >= 20, scripts/ensure_node_deps.sh)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
INTEROP = ROOT / "tests" / "interop"
ZTGW = [sys.executable, "-m", "ztgw.gateway"]
PEER_SECRET = "bench-secret-" + "x" * 24


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_token(url: str, auth: tuple[str, str], proc: subprocess.Popen[bytes], timeout: float = 60
               ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode})")
        try:
            r = httpx.post(url, data={"grant_type": "client_credentials", "scope": "data.read"},
                           auth=auth, timeout=5)
            if r.status_code == 200:
                return dict(r.json())
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def jws_alg(token: str) -> str:
    head = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["alg"])


def wrk(url: str, auth: tuple[str, str], seconds: int, connections: int, workdir: Path) -> dict[str, Any]:
    basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.body = "grant_type=client_credentials&scope=data.read"\n'
        'wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"\n'
        f'wrk.headers["Authorization"] = "Basic {basic}"\n', encoding="ascii")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
                          str(script), url], capture_output=True, text=True, timeout=seconds + 60)
    text = out.stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if found is None:
        logs = "".join(p.read_text(errors="replace")[-1500:] for p in workdir.glob("*/serve.log"))
        raise RuntimeError(f"wrk against {url} failed: {out.stdout[-500:]} {out.stderr[-500:]}\n{logs}")
    rps = float(found.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    p50 = re.search(r"50%\s+([\d.]+\w+)", text)
    p99 = re.search(r"99%\s+([\d.]+\w+)", text)
    return {"rps": rps, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(0) if errors else "",
            "p50": p50.group(1) if p50 else "?", "p99": p99.group(1) if p99 else "?"}


def start_ztgw(home: Path, alg: str, workers: int = 1
               ) -> tuple[subprocess.Popen[bytes], str, tuple[str, str]]:
    env = {**os.environ, "ZTGW_HOME": str(home), "ZTGW_ACCESS_TOKEN_ALG": alg}
    env.pop("ZTGW_CONFIG", None)
    subprocess.run([*ZTGW, "init"], env=env, check=True, capture_output=True, timeout=120)
    port = free_port()
    client = json.loads(subprocess.run(
        [*ZTGW, "clients", "add", "--name", "bench", "--scope", "data.read", "--json"],
        env=env, check=True, capture_output=True, text=True, timeout=120).stdout)
    log = open(home / "serve.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen([*ZTGW, "serve", "--port", str(port), "--workers", str(workers)], env=env,
                            stdout=log, stderr=log)
    return proc, f"http://127.0.0.1:{port}/oauth2/token", (client["client_id"], client["client_secret"])


def start_peer() -> tuple[subprocess.Popen[bytes], str, tuple[str, str]]:
    port = free_port()
    cfg = {"port": port, "bench": True, "clients": [{
        "client_id": "bench", "client_secret": PEER_SECRET, "grant_types": ["client_credentials"],
        "redirect_uris": [], "response_types": [], "scope": "data.read",
        "token_endpoint_auth_method": "client_secret_basic"}]}
    proc = subprocess.Popen(["node", str(INTEROP / "op_server.mjs"), json.dumps(cfg)], cwd=INTEROP,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}/token", ("bench", PEER_SECRET)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; best of each is kept")
    ap.add_argument("--markdown", action="store_true", help="print a docs/benchmarks.md table")
    ap.add_argument("--with-two-workers", action="store_true",
                    help="also measure ztgw (ES256 and SM2) with two worker processes "
                         "(a deployment's shape; the peer stays one Node.js process)")
    args = ap.parse_args()
    if shutil.which("wrk") is None or shutil.which("node") is None:
        print("needs wrk and node (apt-get install -y wrk; node >= 20)", file=sys.stderr)
        return 2
    subprocess.run([str(ROOT / "scripts" / "ensure_node_deps.sh")], check=True)
    work = Path(tempfile.mkdtemp(prefix="ztgw-token-bench-"))
    targets: dict[str, tuple[subprocess.Popen[bytes], str, tuple[str, str], str]] = {}
    try:
        p, u, a = start_ztgw(work / "sm2", "SM2SM3")
        targets["ztgw SM2 (SM2SM3)"] = (p, u, a, "SM2SM3")
        p, u, a = start_ztgw(work / "es256", "ES256")
        targets["ztgw ES256"] = (p, u, a, "ES256")
        p, u, a = start_peer()
        targets["oidc-provider ES256 (peer)"] = (p, u, a, "ES256")
        if args.with_two_workers:
            p, u, a = start_ztgw(work / "es256-w2", "ES256", workers=2)
            targets["ztgw ES256, --workers 2"] = (p, u, a, "ES256")
            p, u, a = start_ztgw(work / "sm2-w2", "SM2SM3", workers=2)
            targets["ztgw SM2 (SM2SM3), --workers 2"] = (p, u, a, "SM2SM3")
        for name, (proc, url, auth, alg) in targets.items():
            tok = wait_token(url, auth, proc)
            got = jws_alg(tok["access_token"])
            if got != alg:
                raise RuntimeError(f"{name}: expected alg {alg}, got {got}")
        results: dict[str, dict[str, Any]] = {}
        for _ in range(args.rounds):
            for name, (_proc, url, auth, _alg) in targets.items():
                r = wrk(url, auth, args.seconds, args.connections, work)
                if r["non2xx"]:
                    raise RuntimeError(f"{name}: {r['non2xx']} non-2xx responses")
                if name not in results or r["rps"] > results[name]["rps"]:
                    results[name] = r
    finally:
        for proc, *_ in targets.values():
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    peer = results["oidc-provider ES256 (peer)"]["rps"]
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# token_bench: {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, node {node}; wrk -t2 -c{args.connections} "
          f"-d{args.seconds}s, best of {args.rounds} interleaved rounds; one process each unless named")
    if args.markdown:
        print("| server | alg | tokens/s | p50 | p99 | vs oidc-provider |")
        print("|---|---|---:|---:|---:|---:|")
    for name, r in results.items():
        alg = targets[name][3]
        ratio = r["rps"] / peer if peer else float("nan")
        if args.markdown:
            print(f"| {name} | {alg} | {r['rps']:.0f} | {r['p50']} | {r['p99']} | {ratio:.2f}× |")
        else:
            print(f"{name:<30} {r['rps']:>9.0f} tokens/s  p50 {r['p50']:>8}  p99 {r['p99']:>8}"
                  f"  {ratio:.2f}x peer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
