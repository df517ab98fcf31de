"""Audit trail speed (issue 9): durable events/s into the spool and into the embedded store,
and search latency over a large store.

Usage:
    .venv/bin/python bench/audit_bench.py [--events 100000] [--search-events 1000000]
                                          [--queries 30] [--skip-search] [--json]
                                          [--against GIT_REV [--rounds 5]]

* spool: ``AuditLog.emit`` → chained, spooled, acknowledged (future done), per fsync policy,
  no sinks; the peer is the same number of raw ``os.write`` of the same JSON lines with one
  ``fsync`` per batch (what any durable append costs on this disk), measured in the same run.
  ``spool_async`` is the data plane's way in: ``emit_async`` from an event loop, awaited.
* against: this audit package vs the one at a git revision (its audit/ extracted to a
  temporary package), spool fsync=always, alternating per round — a paired ratio that the
  load of a shared machine affects alike on both sides.
* store: ``AuditLog`` with the SQLite sink, until every event is searchable (``flush``).
* cpu: audit CPU seconds per event (process CPU minus the producer thread), the share of one
  gateway request the trail adds.
* search: a store filled with synthetic ECS events (realistic size, 200 users, 5 000 IPs,
  3 datasets, 10% denies), then the CLI's queries; p50/p95 in ms.
Speed lives here, not in tests (shared 2-core machine).
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import types
from pathlib import Path
from typing import Any

import orjson

from ztgw.audit.chain import merkle_root, seal
from ztgw.audit.config import AuditSettings
from ztgw.audit.events import access_event, new_event_id
from ztgw.audit.log import AuditLog
from ztgw.audit.query import AuditQuery, parse_time
from ztgw.audit.spool import Spool
from ztgw.audit.store import AuditStore

DATASETS = ["population.persons", "enterprise.companies", "social_security.contributions"]
LABELS = {"population.persons": "核心", "enterprise.companies": "重要",
          "social_security.contributions": "一般"}


def template(i: int, rng: random.Random) -> dict[str, Any]:
    ds = DATASETS[i % 3]
    deny = rng.random() < 0.1
    return access_event(
        request_id=f"{rng.getrandbits(96):024x}", method="GET", path=f"/api/{ds.replace('.', '/')}",
        query_keys=["page", "size"], status=403 if deny else 200,
        outcome="failure" if deny else "success", source_ip=f"10.{rng.randrange(20)}.{rng.randrange(250)}.1",
        user_agent="python-httpx/0.28.1", started_ns=time.time_ns(), ended_ns=time.time_ns() + 2_000_000,
        subject={"id": f"client:app{i % 200}", "name": f"user{i % 200}", "roles": ["population-analyst"],
                 "client_id": f"app{i % 40}", "domain": "市大数据中心", "organization": "市大数据中心"},
        decision={"effect": "deny" if deny else "allow", "reason": "matched rule population-analyst",
                  "rule_id": "population-analyst-read-masked", "ruleset": "demo", "ruleset_version": "3",
                  "matched_rules": ["population-analyst-read-masked"], "obligations": ["mask"]},
        data={"dataset": ds, "classification": LABELS[ds], "records": 5,
              "masked_fields": ["id_number", "mobile", "name"]},
        upstream="http://127.0.0.1:8081",
    )


def _events(n: int) -> list[dict[str, Any]]:
    rng = random.Random(1)
    base = template(0, rng)
    events = []
    for _ in range(n):  # built before the clock starts: building is the caller's cost
        ev = copy.deepcopy(base)
        ev["event"]["id"] = new_event_id()
        events.append(ev)
    return events


def _emit_all(log: Any, events: list[dict[str, Any]]) -> None:
    futures = []
    for ev in events:
        while True:
            try:
                futures.append(log.emit(ev))
                break
            except Exception:  # queue full: the producer outruns the writer, back off
                time.sleep(0.001)
    for f in futures:
        f.result()


def _emit_all_async(log: Any, events: list[dict[str, Any]]) -> None:
    import asyncio

    async def main() -> None:
        waiters = []
        for ev in events:
            while True:
                try:
                    waiters.append(log.emit_async(ev))
                    break
                except Exception:  # queue full: let the writer catch up
                    await asyncio.sleep(0.001)
        for w in waiters:  # each request awaits its own event (no gather machinery)
            if w is not None:
                await w

    asyncio.run(main())


def bench_spool(n: int, fsync: str, sinks: tuple[str, ...], work: Path, *, mode: str = "emit",
                package: Any = None) -> dict[str, Any]:
    """``package``: a module with ``AuditLog`` and ``AuditSettings`` (another revision's)."""
    settings_cls = package.AuditSettings if package is not None else AuditSettings
    log_cls = package.AuditLog if package is not None else AuditLog
    conf = settings_cls(db_path=work / f"{fsync}-{len(sinks)}-{mode}-{time.time_ns()}" / "audit" / "audit.db",
                        keys_dir=work / "keys", fsync=fsync, sinks=sinks)
    events = _events(n)
    log = log_cls.from_settings(conf)
    log.start()
    t_cpu0, p_cpu0 = time.thread_time(), time.process_time()
    t0 = time.perf_counter()
    (_emit_all_async if mode == "async" else _emit_all)(log, events)
    spooled = time.perf_counter() - t0
    flushed = spooled
    if sinks:
        assert log.flush(600)
        flushed = time.perf_counter() - t0
    audit_cpu = (time.process_time() - p_cpu0) - (time.thread_time() - t_cpu0)
    log.close()
    return {"events": n, "fsync": fsync, "sinks": list(sinks), "mode": mode,
            "spooled_per_s": round(n / spooled), "searchable_per_s": round(n / flushed),
            "audit_cpu_us_per_event": round(audit_cpu / n * 1e6, 1)}


def bench_raw_append(n: int, work: Path) -> dict[str, Any]:
    """The peer: the same bytes with plain os.write + one fsync per 4000-line batch."""
    rng = random.Random(1)
    line = orjson.dumps(template(0, rng)) + b"\n"
    fd = os.open(work / "raw.ndjson", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    t0 = time.perf_counter()
    for start in range(0, n, 4000):
        os.write(fd, line * min(4000, n - start))
        os.fsync(fd)
    elapsed = time.perf_counter() - t0
    os.close(fd)
    return {"events": n, "per_s": round(n / elapsed)}


def bench_writer(n: int, work: Path, package: Any = None) -> float:
    """The writer's own CPU per event (µs): ``AuditLog._write`` on batches of 4 000 pre-built
    events and futures, in this thread, no producer competing for the GIL or the core, fsync
    never; plus the Merkle root a checkpoint signs over them."""
    from concurrent.futures import Future

    ns = package or types.SimpleNamespace(AuditLog=AuditLog, AuditSettings=AuditSettings, Spool=Spool,
                                          merkle_root=merkle_root)
    conf = ns.AuditSettings(db_path=work / f"writer-{time.time_ns()}" / "audit" / "audit.db",
                            keys_dir=work / "keys", fsync="never", sinks=())
    log = ns.AuditLog.from_settings(conf)
    log.spool = ns.Spool(conf.effective_spool_dir, conf.segment_bytes)  # no writer thread
    events = _events(n)
    cpu = 0.0
    for i in range(0, n, 4000):
        batch = [(ev, Future()) for ev in events[i:i + 4000]]
        t = time.thread_time()
        log._write(batch)
        cpu += time.thread_time() - t
    t = time.thread_time()
    ns.merkle_root(log._leaves)
    cpu += time.thread_time() - t
    log.spool.close()
    log.store.close()
    return cpu / n * 1e6


def against(n: int, rev: str, rounds: int, work: Path, mode: str = "emit") -> dict[str, Any]:
    """This audit package vs the one at git revision ``rev``, spool fsync=always, alternating
    which goes first per round; medians and the median of the paired ratios."""
    import importlib
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    old_dir = work / "old-audit"
    old_dir.mkdir()
    tar = subprocess.run(["git", "-C", str(repo), "archive", rev, "audit"],
                         check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old_dir)], input=tar, check=True)
    (old_dir / "audit").rename(old_dir / "oldaudit")
    sys.path.insert(0, str(old_dir))
    try:
        old = types.SimpleNamespace(AuditLog=importlib.import_module("oldaudit.log").AuditLog,
                                    AuditSettings=importlib.import_module("oldaudit.config").AuditSettings,
                                    Spool=importlib.import_module("oldaudit.spool").Spool,
                                    merkle_root=importlib.import_module("oldaudit.chain").merkle_root)
        runs: dict[str, list[dict[str, Any]]] = {"this": [], "old": []}
        for r in range(rounds):
            order = [("this", None), ("old", old)] if r % 2 == 0 else [("old", old), ("this", None)]
            for name, pkg in order:
                runs[name].append(bench_spool(n, "always", (), work, package=pkg, mode=mode))
                runs[name][-1]["writer_cpu_us"] = bench_writer(n, work, pkg)
    finally:
        sys.path.remove(str(old_dir))
    rate = {k: [x["spooled_per_s"] for x in v] for k, v in runs.items()}
    cpu = {k: [x["audit_cpu_us_per_event"] for x in v] for k, v in runs.items()}
    return {"rev": rev, "rounds": rounds, "events": n, "mode": mode,
            "this_per_s": round(statistics.median(rate["this"])),
            "old_per_s": round(statistics.median(rate["old"])),
            "ratio_per_s": round(statistics.median(
                a / b for a, b in zip(rate["this"], rate["old"], strict=True)), 2),
            "this_cpu_us": round(statistics.median(cpu["this"]), 1),
            "old_cpu_us": round(statistics.median(cpu["old"]), 1),
            "this_writer_us": round(statistics.median(x["writer_cpu_us"] for x in runs["this"]), 1),
            "old_writer_us": round(statistics.median(x["writer_cpu_us"] for x in runs["old"]), 1),
            "all": {k: list(zip(rate[k], cpu[k], strict=True)) for k in rate}}


def fill(store: AuditStore, n: int) -> None:
    """Bulk-load ``n`` realistic documents fast: one real event as a JSON template, the
    indexed fields varied per row (the chain is not needed to measure search)."""
    rng = random.Random(7)
    base = template(0, rng)
    prev = seal(base, 1, bytes(32))
    doc = orjson.dumps(base).decode().replace("%", "%%")
    marks = {"ts": base["@timestamp"], "id": base["event"]["id"], "user": base["user"]["name"],
             "client": base["ztgw"]["oidc"]["client_id"], "ip": base["source"]["ip"],
             "rid": base["http"]["request"]["id"], "ds": base["ztgw"]["data"]["dataset"]}
    for k, v in marks.items():
        doc = doc.replace(f'"{v}"', f'"%({k})s"')
    doc = doc.replace('"effect":"allow"', '"effect":"%(effect)s"')
    del prev
    start = time.time() - 30 * 86400
    conn = store._conn
    cols = "seq, id, ts, dataset, action, outcome, user_name, client_id, source_ip, data_dataset, " \
           "decision, request_id, doc"
    batch: list[tuple[Any, ...]] = []
    for i in range(1, n + 1):
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start + i * 30 * 86400 / n))
        ts += f".{i % 1000000:06d}Z"
        eid = f"{i:016x}-{rng.getrandbits(80):020x}"
        user, client = f"user{i % 200}", f"app{i % 40}"
        ip = f"10.{rng.randrange(20)}.{rng.randrange(250)}.1"
        rid = f"{rng.getrandbits(96):024x}"
        ds = DATASETS[i % 3]
        effect = "deny" if rng.random() < 0.1 else "allow"
        body = doc % {"ts": ts, "id": eid, "user": user, "client": client, "ip": ip, "rid": rid,
                      "ds": ds, "effect": effect}
        batch.append((i, eid, ts, "ztgw.access", "data-api-read",
                      "failure" if effect == "deny" else "success", user, client, ip, ds, effect,
                      rid, body))
        if len(batch) == 50_000 or i == n:
            conn.execute("BEGIN")
            conn.executemany(f"INSERT INTO events ({cols}) VALUES ({','.join('?' * 13)})", batch)
            conn.execute("COMMIT")
            batch = []


def bench_search(n: int, queries: int, work: Path, reuse: Path | None = None,
                 without: tuple[str, ...] = ()) -> dict[str, Any]:
    path = reuse or work / "search" / "audit.db"
    store = AuditStore(path, synchronous="OFF")
    t0 = time.perf_counter()
    if reuse is None:
        fill(store, n)
    else:
        n = store.count()
    fill_s = time.perf_counter() - t0
    for name in without:  # what a query costs without this index (the store as it was)
        if not name.isidentifier():
            raise SystemExit(f"bad index name {name!r}")
        store._conn.execute(f"DROP INDEX IF EXISTS {name}")
    rng = random.Random(3)
    sample = store.search(AuditQuery(limit=1))[0]
    # "now" = the newest event, so relative ranges hit data however the store was filled
    from datetime import datetime

    latest = datetime.fromisoformat(sample["@timestamp"].replace("Z", "+00:00"))
    cases: dict[str, Any] = {
        "user": lambda: AuditQuery(user=f"user{rng.randrange(200)}", limit=50),
        "client+decision": lambda: AuditQuery(client=f"app{rng.randrange(40)}", decision="deny", limit=50),
        "source_ip": lambda: AuditQuery(source_ip=f"10.{rng.randrange(20)}.{rng.randrange(250)}.1", limit=50),
        "dataset+24h": lambda: AuditQuery(dataset=DATASETS[rng.randrange(3)],
                                          since=parse_time("24h", now=latest), limit=50),
        "request_id": lambda: AuditQuery(request_id=sample["http"]["request"]["id"], limit=50),
        "outcome failure": lambda: AuditQuery(outcome="failure", limit=50),
        "alerts (none stored)": lambda: AuditQuery(event_dataset="ztgw.alert", limit=50),
        "time range 1h": lambda: AuditQuery(since=parse_time("2h", now=latest),
                                            until=parse_time("1h", now=latest), limit=50),
    }
    out: dict[str, Any] = {"events": n, "fill_s": round(fill_s, 1),
                           "db_mb": round(path.stat().st_size / 1e6)}
    for name, make in cases.items():
        lat = []
        for _ in range(queries):
            q = make()
            t = time.perf_counter()
            store.search(q)
            store.count(q, cap=10_000)
            lat.append((time.perf_counter() - t) * 1000)
        lat.sort()
        out[name] = {"p50_ms": round(statistics.median(lat), 2),
                     "p95_ms": round(lat[int(len(lat) * 0.95) - 1], 2)}
    lat = []
    for _ in range(max(3, queries // 5)):
        t = time.perf_counter()
        store.top(AuditQuery(since=parse_time("24h", now=latest)), "user.name", n=10)
        lat.append((time.perf_counter() - t) * 1000)
    out["top user.name 24h"] = {"p50_ms": round(statistics.median(lat), 2)}
    lat = []
    for _ in range(max(3, queries // 5)):
        t = time.perf_counter()
        store.count(AuditQuery(), cap=10_000)
        lat.append((time.perf_counter() - t) * 1000)
    out["count all (cap 10k)"] = {"p50_ms": round(statistics.median(lat), 2)}
    store.close()
    return out


def _task_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per OS thread name of a process (utime + stime from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[comm] = out.get(comm, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def bench_gateway(seconds: int, work: Path) -> dict[str, Any]:
    """A real `ztgw serve` under wrk (2 threads, 32 connections, 核心 data): the share of the
    gateway process's CPU spent in the audit threads (writer + store shipper)."""
    import shutil
    import socket
    import subprocess
    import urllib.request

    if not shutil.which("wrk"):
        return {"error": "wrk missing (apt-get install -y wrk)"}

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    up, gw = free_port(), free_port()
    env = {**os.environ, "ZTGW_HOME": str(work / "gw-home")}
    env.pop("ZTGW_CONFIG", None)
    ztgw = [sys.executable, "-m", "ztgw.gateway"]
    subprocess.run([*ztgw, "init"], env=env, check=True, capture_output=True)
    seeded = subprocess.run([*ztgw, "demo", "seed", "--json", "--upstream-url", f"http://127.0.0.1:{up}"],
                            env=env, check=True, capture_output=True, text=True)
    procs = [subprocess.Popen([*ztgw, "demo", "upstream", "--port", str(up)], env=env),
             subprocess.Popen([*ztgw, "serve", "--port", str(gw)], env=env)]
    try:
        for url in (f"http://127.0.0.1:{up}/healthz", f"http://127.0.0.1:{gw}/readyz"):
            for _ in range(300):
                try:
                    urllib.request.urlopen(url, timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
        secret = next(c["client_secret"] for c in orjson.loads(seeded.stdout)["clients"]
                      if c["client_id"] == "demo-police")
        import base64

        req = urllib.request.Request(
            f"http://127.0.0.1:{gw}/oauth2/token", data=b"grant_type=client_credentials",
            headers={"Authorization": "Basic " + base64.b64encode(f"demo-police:{secret}".encode()).decode(),
                     "Content-Type": "application/x-www-form-urlencoded"})
        token = orjson.loads(urllib.request.urlopen(req, timeout=10).read())["access_token"]
        url = f"http://127.0.0.1:{gw}/api/population/persons?page=1&size=5"
        before = _task_cpu(procs[1].pid)
        out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "-H", f"Authorization: Bearer {token}",
                              url], capture_output=True, text=True, check=True).stdout
        after = _task_cpu(procs[1].pid)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(15)
    requests = int(next(line.split()[0] for line in out.splitlines() if "requests in" in line))
    rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    total = sum(delta.values())
    audit = sum(v for k, v in delta.items() if k.startswith("ztgw-audit"))
    return {"seconds": seconds, "requests": requests, "requests_per_s": rps,
            "gateway_cpu_s": round(total, 2), "audit_threads_cpu_s": round(audit, 2),
            "audit_share_of_gateway_cpu": round(audit / total, 4) if total else None,
            "gateway_cpu_us_per_request": round(total / requests * 1e6, 1),
            "audit_cpu_us_per_request": round(audit / requests * 1e6, 1),
            "threads": {k: round(v, 2) for k, v in delta.items() if v > 0}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--search-events", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=30)
    ap.add_argument("--skip-search", action="store_true")
    ap.add_argument("--skip-ingest", action="store_true", help="search only")
    ap.add_argument("--search-db", type=Path, default=None,
                    help="query a store filled by an earlier run instead of filling one (big N)")
    ap.add_argument("--gateway", type=int, default=0, metavar="SECONDS",
                    help="also load a real gateway with wrk and measure the audit threads' CPU share")
    ap.add_argument("--without-index", default="", metavar="NAME[,NAME]",
                    help="drop these store indexes after the fill, before the queries")
    ap.add_argument("--against", metavar="GIT_REV", default=None,
                    help="only: this audit package vs the one at GIT_REV, paired rounds")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mode", choices=("emit", "async"), default="emit",
                    help="with --against: emit (a concurrent future each) or emit_async")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results: dict[str, Any] = {"threads": threading.active_count(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="ztgw-audit-bench-") as tmp:
        work = Path(tmp)
        if args.against:
            a = against(args.events, args.against, args.rounds, work, args.mode)
            load = os.getloadavg()[0]
            if args.json:
                sys.stdout.write(orjson.dumps(a, option=orjson.OPT_INDENT_2).decode() + "\n")
                return
            print(f"spool fsync=always, {a['mode']}, {a['events']:,} events, {a['rounds']} paired rounds, "
                  f"load {load:.1f}:")
            print(f"  this      median {a['this_per_s']:>8,} events/s, "
                  f"audit CPU {a['this_cpu_us']} us/event")
            print(f"  {a['rev'][:9]:<9} median {a['old_per_s']:>8,} events/s, "
                  f"audit CPU {a['old_cpu_us']} us/event")
            print(f"  this / {a['rev'][:9]}: {a['ratio_per_s']}x events/s (median of paired rounds)")
            print(f"  writer thread alone (no producer, fsync never): this {a['this_writer_us']} us/event, "
                  f"{a['rev'][:9]} {a['old_writer_us']} us/event")
            return
        if not args.skip_ingest:
            results["raw_append_fsync_per_batch"] = bench_raw_append(args.events, work)
            results["spool"] = [bench_spool(args.events, f, (), work)
                                for f in ("always", "interval", "never")]
            results["spool_async"] = bench_spool(args.events, "always", (), work, mode="async")
            results["store"] = bench_spool(args.events, "always", ("store",), work)
        if not args.skip_search:
            results["search"] = bench_search(args.search_events, args.queries, work, args.search_db,
                                             tuple(filter(None, args.without_index.split(","))))
        if args.gateway:
            results["gateway"] = bench_gateway(args.gateway, work)
    if args.json:
        sys.stdout.write(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if "spool" in results:
        raw = results["raw_append_fsync_per_batch"]["per_s"]
        print(f"raw os.write+fsync/batch (peer): {raw:>9,} lines/s")
        for r in results["spool"]:
            print(f"spool fsync={r['fsync']:<8}        {r['spooled_per_s']:>9,} events/s "
                  f"({r['spooled_per_s'] / raw:.3f}x peer), audit CPU {r['audit_cpu_us_per_event']} us/event")
        a = results["spool_async"]
        print(f"spool fsync=always, emit_async {a['spooled_per_s']:>9,} events/s "
              f"({a['spooled_per_s'] / raw:.3f}x peer), audit CPU {a['audit_cpu_us_per_event']} us/event")
        s = results["store"]
        print(f"spool+store (searchable)       {s['searchable_per_s']:>9,} events/s, "
              f"audit CPU {s['audit_cpu_us_per_event']} us/event")
    if "gateway" in results:
        g = results["gateway"]
        if "error" in g:
            print(f"gateway: {g['error']}")
        else:
            print(f"gateway under wrk ({g['seconds']} s, 核心 data): {g['requests_per_s']} req/s, "
                  f"{g['gateway_cpu_us_per_request']} us CPU/request, of which audit threads "
                  f"{g['audit_cpu_us_per_request']} us = {100 * g['audit_share_of_gateway_cpu']:.1f}%")
    if "search" in results:
        sr = results["search"]
        print(f"search over {sr['events']:,} events (fill {sr['fill_s']} s, {sr['db_mb']} MB):")
        for k, v in sr.items():
            if isinstance(v, dict):
                p95 = f"  p95 {v['p95_ms']} ms" if "p95_ms" in v else ""
                print(f"  {k:<20} p50 {v['p50_ms']:>8} ms{p95}")


if __name__ == "__main__":
    main()
