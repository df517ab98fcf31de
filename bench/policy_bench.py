"""One shared ABAC workload through ztgw's engine and its peers, in the same process run.

    .venv/bin/python bench/policy_bench.py [--sizes 100,1000,10000] [--requests 20000] [--json]

The workload (seeded, deterministic): ``rules`` rules over ``rules/10`` datasets and
``max(20, rules/20)`` roles with a small role hierarchy; 90 % allow rules (one role, one
dataset, one action, a minimum clearance, half of them only from the ``gov`` network zone, a
mask obligation) and 10 % deny rules (a role or a department, some only from the ``internet``
zone).  2,000 subjects hold 1–3 roles, a department and a clearance; half of the requests are
aimed at a rule the subject's roles match, the rest are random.

Engines (each answers the same requests; decisions are compared on the effect, and ztgw vs
the bare matcher also on the deciding rule):

* ``ztgw``                  CompiledPolicy.decide — full decision with obligations and rule id
* ``bare-matcher``          dict (dataset, action) → precompiled predicates, effect + rule id,
                            subject keys precomputed, no obligations: the Python ceiling
* ``casbin-FastEnforcer``   plain matcher, ``g`` roles, p rows filtered by (dataset, action)
* ``casbin-Enforcer-eval``  ABAC with ``eval(p.sub_rule)`` — the pattern most users copy
* ``cedarpy``               ``is_authorized`` with the policy text (re-parsed per call)
* ``cedarpy-PolicySet``     ``is_authorized`` with a pre-parsed PolicySet and Entities handle

decisions/s: for ztgw and the bare matcher, the best of ``--rounds`` interleaved passes over
all requests without a per-call timer; for the others, calls / summed call time.  p50/p99:
per-call timer over one pass (or the sample).

Slow engines run on a sample (``--slow-budget`` seconds per engine and size).  Speed is
measured here, never asserted in tests (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import casbin
from casbin.model import FastModel, Model

from ztgw.policies.bundle import parse_bundle
from ztgw.policies.domain import Classification, Environment, Resource, Subject
from ztgw.policies.engine import CompiledPolicy

N_SUBJECTS = 2000
N_DEPTS = 20
ZONES = ("gov", "internet", "office")
NOW = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


@dataclass
class Workload:
    size: int
    doc: dict[str, Any]
    rules: list[dict[str, Any]]
    links: list[tuple[str, str]]
    subjects: list[dict[str, Any]]
    requests: list[tuple[int, str, str, str]]  # subject index, dataset, action, zone


def build(size: int, n_requests: int, seed: int = 5) -> Workload:
    rnd = random.Random(seed * 100_003 + size)
    n_ds = max(10, size // 10)
    n_roles = max(20, size // 20)
    datasets = [f"d{k % N_DEPTS}.set{k}" for k in range(n_ds)]
    roles = [f"r{i}" for i in range(n_roles)]
    links = [(roles[i], roles[i + n_roles // 2]) for i in range(0, n_roles // 2, 7)]
    rules = []
    for i in range(size):
        ds, act = rnd.choice(datasets), rnd.choice(("read", "read", "write"))
        if rnd.random() < 0.9:
            rules.append({"id": f"a{i}", "effect": "allow", "subjects": [f"role:{rnd.choice(roles)}"],
                          "datasets": [ds], "actions": [act],
                          "when": {"clearance_at_least": rnd.randint(1, 3),
                                   **({"zones": ["gov"]} if rnd.random() < 0.5 else {})},
                          "obligations": [{"type": "mask", "fields": {
                              f"f{rnd.randint(0, 4)}": {"strategy": "keep", "first": rnd.randint(0, 4)}}}]})
        else:
            who = f"role:{rnd.choice(roles)}" if rnd.random() < 0.6 else f"dept:dep{rnd.randrange(N_DEPTS)}"
            when = {"when": {"zones": ["internet"]}} if rnd.random() < 0.5 else {}
            rules.append({"id": f"x{i}", "effect": "deny", "subjects": [who], "datasets": [ds],
                          "actions": [act], **when})
    subjects = [{"id": f"client:s{j}", "roles": rnd.sample(roles, rnd.randint(1, 3)),
                 "dept": f"dep{rnd.randrange(N_DEPTS)}", "clearance": rnd.randint(1, 3)}
                for j in range(N_SUBJECTS)]
    by_role: dict[str, list[int]] = {}
    for j, s in enumerate(subjects):
        for r in s["roles"]:
            by_role.setdefault(r, []).append(j)
    allows = [r for r in rules if r["effect"] == "allow"]
    requests = []
    for _ in range(n_requests):
        if rnd.random() < 0.5:
            rule = rnd.choice(allows)
            holders = by_role.get(rule["subjects"][0][5:]) or [rnd.randrange(N_SUBJECTS)]
            requests.append((rnd.choice(holders), rule["datasets"][0], rule["actions"][0], rnd.choice(ZONES)))
        else:
            requests.append((rnd.randrange(N_SUBJECTS), rnd.choice(datasets),
                             rnd.choice(("read", "write")), rnd.choice(ZONES)))
    doc = {"bundle": f"bench-{size}", "version": "1", "rules": rules,
           "roles": [[f"role:{a}", f"role:{b}"] for a, b in links]}
    return Workload(size, doc, rules, links, subjects, requests)


def closure(w: Workload, s: dict[str, Any]) -> frozenset[str]:
    keys = {s["id"], f"dept:{s['dept']}", *(f"role:{r}" for r in s["roles"])}
    changed = True
    while changed:
        changed = False
        for a, b in w.links:
            if f"role:{a}" in keys and f"role:{b}" not in keys:
                keys.add(f"role:{b}")
                changed = True
    return frozenset(keys)


# --- engines: each returns (prepare, decide) where decide(i) answers request i ------------------
Engine = Callable[[int], tuple[str, str | None]]


def ztgw_engine(w: Workload) -> Engine:
    policy = CompiledPolicy(parse_bundle(w.doc))
    subjects = [Subject(id=s["id"], kind="client", name=s["id"], client_id=s["id"][7:],
                        roles=frozenset(s["roles"]), department=s["dept"],
                        clearance=Classification(s["clearance"])) for s in w.subjects]
    envs = {z: Environment(time=NOW, zone=z) for z in ZONES}
    resources: dict[str, Resource] = {}
    reqs = []
    for si, ds, act, zone in w.requests:
        res = resources.setdefault(ds, Resource(dataset=ds, classification=Classification.GENERAL))
        reqs.append((subjects[si], res, act, envs[zone]))
    decide = policy.decide

    def run(i: int) -> tuple[str, str | None]:
        s, r, a, e = reqs[i]
        d = decide(s, r, a, e)
        return d.effect, d.rule_id

    run.bulk = lambda: [decide(s, r, a, e) for s, r, a, e in reqs]  # type: ignore[attr-defined]
    return run


def bare_engine(w: Workload) -> Engine:
    index: dict[tuple[str, str], list[tuple[frozenset[str], bool, Any, str]]] = {}
    for rule in w.rules:
        when = rule.get("when", {})
        level, zones = when.get("clearance_at_least", 0), frozenset(when.get("zones", ()))
        def pred(c: int, z: str, level: int = level, zones: frozenset[str] = zones) -> bool:
            return c >= level and (not zones or z in zones)

        index.setdefault((rule["datasets"][0], rule["actions"][0]), []).append(
            (frozenset(rule["subjects"]), rule["effect"] == "deny", pred, rule["id"]))
    for key, entries in index.items():  # denies first, each in bundle order
        index[key] = [e for e in entries if e[1]] + [e for e in entries if not e[1]]
    keys = [closure(w, s) for s in w.subjects]
    clearance = [s["clearance"] for s in w.subjects]
    reqs = [(keys[si], clearance[si], (ds, act), zone) for si, ds, act, zone in w.requests]

    def decide(k: frozenset[str], c: int, key: tuple[str, str], z: str) -> tuple[str, str | None]:
        first = None
        for subs, deny, pred, rid in index.get(key, ()):
            if subs.isdisjoint(k) or not pred(c, z):
                continue
            if deny:
                return "deny", rid
            if first is None:
                first = rid
        return ("allow", first) if first else ("deny", None)

    def run(i: int) -> tuple[str, str | None]:
        return decide(*reqs[i])

    run.bulk = lambda: [decide(k, c, key, z) for k, c, key, z in reqs]  # type: ignore[attr-defined]
    return run


FAST_MODEL = """
[request_definition]
r = sub, obj, act, clr, zone
[policy_definition]
p = sub, obj, act, clr, zone, eft, rid
[role_definition]
g = _, _
[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))
[matchers]
m = g(r.sub, p.sub) && r.obj == p.obj && r.act == p.act && r.clr >= p.clr \
&& (p.zone == "*" || r.zone == p.zone)
"""


def casbin_fast_engine(w: Workload) -> Engine:
    enforcer = casbin.FastEnforcer(_model(FAST_MODEL, fast=True), cache_key_order=[1, 2])
    rows = []
    for rule in w.rules:
        when = rule.get("when", {})
        zone = (when.get("zones") or ["*"])[0]
        rows.append([rule["subjects"][0], rule["datasets"][0], rule["actions"][0],
                     str(when.get("clearance_at_least", 0)), zone, rule["effect"], rule["id"]])
    enforcer.add_policies(rows)
    groups = [[f"role:{a}", f"role:{b}"] for a, b in w.links]
    for s in w.subjects:
        groups += [[s["id"], f"role:{r}"] for r in s["roles"]] + [[s["id"], f"dept:{s['dept']}"]]
    enforcer.add_grouping_policies(groups)
    reqs = [(w.subjects[si]["id"], ds, act, str(w.subjects[si]["clearance"]), zone)
            for si, ds, act, zone in w.requests]

    def run(i: int) -> tuple[str, str | None]:
        return ("allow" if enforcer.enforce(*reqs[i]) else "deny"), None

    return run


EVAL_MODEL = """
[request_definition]
r = sub, obj, act, env
[policy_definition]
p = sub_rule, obj, act, eft, rid
[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))
[matchers]
m = r.obj == p.obj && r.act == p.act && eval(p.sub_rule)
"""


def casbin_eval_engine(w: Workload) -> Engine:
    enforcer = casbin.Enforcer(_model(EVAL_MODEL))
    rows = []
    for rule in w.rules:
        when = rule.get("when", {})
        expr = f'"{rule["subjects"][0]}" in r.sub.keys'
        if "clearance_at_least" in when:
            expr += f' and r.sub.clearance >= {when["clearance_at_least"]}'
        if "zones" in when:
            expr += f' and r.env.zone == "{when["zones"][0]}"'
        rows.append([expr, rule["datasets"][0], rule["actions"][0], rule["effect"], rule["id"]])
    enforcer.add_policies(rows)
    subs = [SimpleNamespace(keys=closure(w, s), clearance=s["clearance"]) for s in w.subjects]
    envs = {z: SimpleNamespace(zone=z) for z in ZONES}
    reqs = [(subs[si], ds, act, envs[zone]) for si, ds, act, zone in w.requests]

    def run(i: int) -> tuple[str, str | None]:
        return ("allow" if enforcer.enforce(*reqs[i]) else "deny"), None

    return run


def cedar_policies(w: Workload) -> str:
    out = []
    for rule in w.rules:
        who = rule["subjects"][0]
        kind, _, name = who.partition(":")
        principal = f'principal in {"Role" if kind == "role" else "Dept"}::"{name}"'
        head = "permit" if rule["effect"] == "allow" else "forbid"
        conds = []
        when = rule.get("when", {})
        if "clearance_at_least" in when:
            conds.append(f'principal.clearance >= {when["clearance_at_least"]}')
        if "zones" in when:
            conds.append(f'context.zone == "{when["zones"][0]}"')
        body = f' when {{ {" && ".join(conds)} }}' if conds else ""
        out.append(f'{head}({principal}, action == Action::"{rule["actions"][0]}", '
                   f'resource == Dataset::"{rule["datasets"][0]}"){body};')
    return "\n".join(out)


def cedar_entities(w: Workload) -> list[dict[str, Any]]:
    parents: dict[str, list[str]] = {}
    for a, b in w.links:
        parents.setdefault(a, []).append(b)
    roles = {r for s in w.subjects for r in s["roles"]} | {x for ab in w.links for x in ab} | {
        rule["subjects"][0][5:] for rule in w.rules if rule["subjects"][0].startswith("role:")}
    ents: list[dict[str, Any]] = [
        {"uid": {"type": "Role", "id": r}, "attrs": {},
         "parents": [{"type": "Role", "id": p} for p in parents.get(r, [])]} for r in sorted(roles)]
    ents += [{"uid": {"type": "Dept", "id": f"dep{k}"}, "attrs": {}, "parents": []} for k in range(N_DEPTS)]
    ents += [{"uid": {"type": "Dataset", "id": d}, "attrs": {}, "parents": []}
             for d in sorted({r["datasets"][0] for r in w.rules} | {q[1] for q in w.requests})]
    ents += [{"uid": {"type": "User", "id": s["id"]}, "attrs": {"clearance": s["clearance"]},
              "parents": [*({"type": "Role", "id": r} for r in s["roles"]),
                          {"type": "Dept", "id": s["dept"]}]}
             for s in w.subjects]
    return ents


def cedar_engine(w: Workload, *, handles: bool) -> Engine:
    """``handles``: pre-parsed PolicySet + all entities once; otherwise the policy text and the
    request's own entities (principal, its roles up the hierarchy, department, dataset) per call,
    as most integrations call it."""
    import cedarpy

    text = cedar_policies(w)
    ents = cedar_entities(w)
    by_uid = {(e["uid"]["type"], e["uid"]["id"]): e for e in ents}

    def slice_for(si: int, ds: str) -> list[dict[str, Any]]:
        out, todo, seen = [], [("User", w.subjects[si]["id"]), ("Dataset", ds)], set()
        while todo:
            uid = todo.pop()
            if uid in seen or uid not in by_uid:
                continue
            seen.add(uid)
            out.append(by_uid[uid])
            todo.extend((p["type"], p["id"]) for p in by_uid[uid]["parents"])
        return out

    policies: Any = cedarpy.PolicySet.from_str(text) if handles else text
    everyone: Any = cedarpy.Entities.from_json_str(json.dumps(ents)) if handles else None
    reqs = [({"principal": f'User::"{w.subjects[si]["id"]}"', "action": f'Action::"{act}"',
              "resource": f'Dataset::"{ds}"', "context": {"zone": zone}},
             everyone if handles else slice_for(si, ds))
            for si, ds, act, zone in w.requests]

    def run(i: int) -> tuple[str, str | None]:
        req, entities = reqs[i]
        return ("allow" if cedarpy.is_authorized(req, policies, entities).allowed else "deny"), None

    return run


def _model(text: str, fast: bool = False) -> Model:
    m = FastModel([1, 2]) if fast else Model()
    m.load_model_from_text(text)
    return m


# --- measuring ----------------------------------------------------------------------------------
def pct(values: Sequence[int], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))] / 1000  # ns -> µs


def measure(run: Engine, n: int, budget: float) -> dict[str, Any]:
    gc.collect()
    lat: list[int] = []
    answers: list[tuple[str, str | None]] = []
    clock = time.perf_counter_ns
    deadline = time.perf_counter() + budget
    for i in range(n):
        t0 = clock()
        answers.append(run(i))
        lat.append(clock() - t0)
        if time.perf_counter() > deadline:
            break
    out: dict[str, Any] = {"decisions": len(answers), "p50_us": round(pct(lat, 0.50), 2),
                           "p99_us": round(pct(lat, 0.99), 2),
                           "per_s": round(len(lat) / (sum(lat) / 1e9), 1)}
    out["answers"] = answers
    return out


def run_size(size: int, n_requests: int, slow_budget: float, engines: Sequence[str],
             rounds: int = 5) -> dict[str, Any]:
    w = build(size, n_requests)
    bulk: dict[str, Callable[[], Any]] = {}
    factories: dict[str, tuple[Callable[[], Engine], bool]] = {
        "ztgw": (lambda: ztgw_engine(w), False),
        "bare-matcher": (lambda: bare_engine(w), False),
        "casbin-FastEnforcer": (lambda: casbin_fast_engine(w), True),
        "casbin-Enforcer-eval": (lambda: casbin_eval_engine(w), True),
        "cedarpy": (lambda: cedar_engine(w, handles=False), True),
        "cedarpy-PolicySet": (lambda: cedar_engine(w, handles=True), True),
    }
    results: dict[str, Any] = {}
    for name in engines:
        factory, slow = factories[name]
        t0 = time.perf_counter()
        run = factory()
        build_s = time.perf_counter() - t0
        if name == "ztgw":  # cold first pass (memo tables empty), reported apart
            t1 = time.perf_counter()
            for i in range(n_requests):
                run(i)
            cold = n_requests / (time.perf_counter() - t1)
        r = measure(run, n_requests, slow_budget if slow else 1e9)
        r["build_s"] = round(build_s, 3)
        if name == "ztgw":
            r["cold_per_s"] = round(cold)
        results[name] = r
        if hasattr(run, "bulk"):
            bulk[name] = run.bulk
    # throughput without the per-call timer: the fast engines in interleaved rounds (so load
    # from other processes falls on each alike), best round of each
    best = dict.fromkeys(bulk, float("inf"))
    for _ in range(rounds):
        for name, f in bulk.items():
            gc.collect()
            t0 = time.perf_counter()
            f()
            best[name] = min(best[name], time.perf_counter() - t0)
    for name, seconds in best.items():
        results[name]["per_s"] = round(n_requests / seconds, 1)
    ref = results[engines[0]]["answers"]
    for name in engines:
        answers = results[name].pop("answers")
        with_rule = name in ("ztgw", "bare-matcher") and engines[0] in ("ztgw", "bare-matcher")
        results[name]["disagreements"] = sum(
            (a != b) if with_rule else (a[0] != b[0]) for a, b in zip(answers, ref, strict=False))
    allowed = sum(1 for a in ref if a[0] == "allow")
    return {"rules": size, "requests": n_requests, "allowed_share": round(allowed / len(ref), 3),
            "engines": results}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--slow-budget", type=float, default=4.0, help="seconds per slow engine and size")
    ap.add_argument("--engines", default="ztgw,bare-matcher,casbin-FastEnforcer,casbin-Enforcer-eval,"
                    "cedarpy,cedarpy-PolicySet")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved throughput rounds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    engines = args.engines.split(",")
    runs = [run_size(int(s), args.requests, args.slow_budget, engines, args.rounds)
            for s in args.sizes.split(",")]
    if args.json:
        print(json.dumps({"command": " ".join(sys.argv), "runs": runs}, indent=2))
        return 0
    for r in runs:
        print(f"\n{r['rules']} rules, {r['requests']} requests ({r['allowed_share']:.0%} allowed)")
        z = r["engines"].get("ztgw", {})
        print(f"  {'engine':<22}{'decisions/s':>13}{'p50 µs':>9}{'p99 µs':>9}{'sampled':>9}"
              f"{'disagree':>10}{'ztgw ×':>9}")
        for name, e in r["engines"].items():
            ratio = z.get("per_s", 0) / e["per_s"]
            print(f"  {name:<22}{e['per_s']:>13,.1f}{e['p50_us']:>9}{e['p99_us']:>9}{e['decisions']:>9}"
                  f"{e['disagreements']:>10}{ratio:>9.1f}")
        if z:
            print(f"  ztgw cold first pass: {z['cold_per_s']:,}/s; compile {z['build_s']} s")
    if len(runs) > 1 and all("ztgw" in r["engines"] for r in runs):
        first, last = runs[0]["engines"]["ztgw"]["per_s"], runs[-1]["engines"]["ztgw"]["per_s"]
        print(f"\nztgw slowdown {runs[0]['rules']} -> {runs[-1]['rules']} rules: {first / last:.2f}x")
    print(f"\ncommand: {' '.join(sys.argv)}; python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
