"""Grants (issue 6): what the entitlement hook costs on the data plane's hot path, and how fast a
revocation reaches another replica.

1. hot path — ``EntitlementIndex.apply`` per request (caller without a grant: the common case;
   caller with a grant: the attribute is built) against the named peer, the policy decision
   (``PolicyEngine.decide``) for the same caller, measured in the same run;
2. propagation — a second index on its own SQLAlchemy engine (another "replica" sharing the
   SQLite database) polls the change counter in its thread; time from the revoking commit until
   that replica's ``apply`` no longer carries the grant.  Target: every replica within 1 s.

    .venv/bin/python bench/grants_bench.py [--rounds 20] [--iterations 200000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from grants.conftest import MARKET, app, approver, make_world  # noqa: E402

from ztgw.gateway.grants.index import EntitlementIndex  # noqa: E402
from ztgw.gateway.grants.store import GrantStore  # noqa: E402
from ztgw.gateway.identity.directory import open_engine  # noqa: E402
from ztgw.policies.conditions import GRANT_ATTRIBUTE  # noqa: E402
from ztgw.policies.domain import Environment, Resource  # noqa: E402


def per_call_ns(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter_ns()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter_ns() - t) / n)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--iterations", type=int, default=200_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        w = make_world(Path(tmp))
        owner = approver("zhouqiang", MARKET)
        ds = w.dataset("enterprise.companies")
        res = Resource(dataset=ds.dataset, classification=ds.classification,
                       owner_department=ds.owner_department, fields=ds.fields)
        env = Environment(time=datetime.now(UTC))
        plain = app("demo-analytics")
        granted = app("demo-research")
        r = w.service.create_request(granted, dataset=ds.dataset, fields=["uscc", "name"],
                                     purpose="bench", days=30)
        w.service.approve(owner, r.id, "bench")
        idx = w.grants.index
        enriched = idx.apply(granted, ds)
        assert GRANT_ATTRIBUTE in enriched.attributes
        n = args.iterations
        apply_plain = per_call_ns(lambda: idx.apply(plain, ds), n)
        apply_grant = per_call_ns(lambda: idx.apply(granted, ds), n // 4)
        decide_plain = per_call_ns(lambda: w.engine.decide(plain, res, "read", env), n // 4)
        decide_grant = per_call_ns(lambda: w.engine.decide(enriched, res, "read", env), n // 4)
        print("== hot path (ns per call, best of 3)")
        print(f"apply, caller without grant   {apply_plain:9.0f}   "
              f"= {apply_plain / decide_plain:.1%} of its decision ({decide_plain:.0f} ns)")
        print(f"apply, caller with a grant    {apply_grant:9.0f}   "
              f"= {apply_grant / decide_grant:.1%} of its decision ({decide_grant:.0f} ns)")

        replica = EntitlementIndex(GrantStore(open_engine(Path(tmp) / "ztgw.db")))
        replica.start()
        delays = []
        for i in range(args.rounds):
            r = w.service.create_request(granted, dataset=ds.dataset, fields=["uscc"],
                                         purpose=f"bench {i}", days=1)
            gid = w.service.approve(owner, r.id, "bench").grant_id
            deadline = time.monotonic() + 5
            while GRANT_ATTRIBUTE not in replica.apply(granted, ds).attributes \
                    or replica.apply(granted, ds).attributes[GRANT_ATTRIBUTE].grant_id != gid:
                if time.monotonic() > deadline:
                    raise SystemExit("replica never saw the grant")
                time.sleep(0.001)
            # revoke the newest and every older grant so the replica falls back to none
            for g in w.service.store.list_grants(grantee=granted.id, status="active"):
                if g.id != gid:
                    w.service.revoke(owner, g.id, "bench cleanup")
            time.sleep(0.3)
            t0 = time.monotonic()
            w.service.revoke(owner, gid, "bench")
            while GRANT_ATTRIBUTE in replica.apply(granted, ds).attributes:
                time.sleep(0.0005)
            delays.append(time.monotonic() - t0)
        replica.stop()
        delays.sort()
        print(f"== revocation → second replica refuses ({args.rounds} rounds, poll "
              f"{replica.poll_seconds:.2f} s)")
        print(f"median {statistics.median(delays) * 1000:.0f} ms   "
              f"p90 {delays[int(len(delays) * 0.9) - 1] * 1000:.0f} ms   max {delays[-1] * 1000:.0f} ms"
              f"   target ≤ 1000 ms: {'met' if delays[-1] <= 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
