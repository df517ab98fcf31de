"""A real ztgw over HTTP: a policy change takes effect without a restart and without a failed
request; `ztgw policy diff` replays the audit; a gateway that requires signed bundles refuses
to start on an unsigned one and refuses an altered one on reload."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e.conftest import ZTGW, RunningGateway, free_port, start_processes, stop_processes, wait_http
from scale.services import backend_env

from ztgw.gateway.demo.realm import demo_bundle_dir

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PERSONS = "/api/population/persons"
ANALYST_RULE = "subjects: [role:population-analyst]\n"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    gw, procs = start_processes(tmp_path_factory.mktemp("ztgw-policy"),
                                {"ZTGW_POLICY_RELOAD_INTERVAL": "0.1"})
    try:
        yield gw
    finally:
        stop_processes(procs)


def variant(tmp: Path, name: str, version: str, old: str = "", new: str = "") -> Path:
    b = tmp / name
    shutil.copytree(demo_bundle_dir(), b)
    shutil.rmtree(b / "tests")  # a different policy: the demo's own tests do not apply
    p = b / "policy.yaml"
    text = p.read_text(encoding="utf-8").replace('version: "2026.11.1"', f'version: "{version}"')
    if old:
        assert old in text
        text = text.replace(old, new)
    p.write_text(text, encoding="utf-8")
    return b


def read(gw: RunningGateway, token: str) -> int:
    return httpx.get(f"{gw.base}{PERSONS}", params={"size": 1},
                     headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


def wait_for(gw: RunningGateway, token: str, status: int) -> None:
    for _ in range(200):
        if read(gw, token) == status:
            return
        time.sleep(0.05)
    raise AssertionError(f"the gateway never answered {status}")


def test_policy_change_takes_effect_without_restart_or_failed_requests(
        gw: RunningGateway, tmp_path: Path) -> None:
    token = gw.token("demo-analytics")
    assert read(gw, token) == 200
    statuses: Counter[int | str] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.get(f"{gw.base}{PERSONS}", params={"size": 1},
                                   headers={"Authorization": f"Bearer {token}"})
                    statuses[r.status_code] += 1
                except httpx.HTTPError as exc:
                    statuses[type(exc).__name__] += 1

    worker = threading.Thread(target=load)
    worker.start()
    try:
        revoked = variant(tmp_path, "revoked", "2026.11.2", ANALYST_RULE, "subjects: [role:nobody]\n")
        out = gw.cli_json("policy", "install", str(revoked), "--json")
        assert out["version"] == "2026.11.2"
        wait_for(gw, token, 403)
        r = httpx.get(f"{gw.base}{PERSONS}", headers={"Authorization": f"Bearer {token}"})
        assert r.json()["error"] == "access_denied"
        restored = variant(tmp_path, "restored", "2026.11.3")
        gw.cli_json("policy", "install", str(restored), "--json")
        wait_for(gw, token, 200)
        workers = gw.cli_json("policy", "status", "--json")["workers"]
        assert [w["version"] for w in workers] == ["2026.11.3"] and workers[0]["reloads"] == 2
    finally:
        stop.set()
        worker.join(30)
    assert set(statuses) <= {200, 403}, statuses  # no 5xx, no connection errors during swaps
    assert statuses[200] > 0

    # the audit records the decision the new bundle took (no rule left: default deny)
    found = gw.cli_json("audit", "search", "--client", "demo-analytics", "--decision", "deny",
                        "--limit", "1", "--json")["events"]
    assert found and "default deny" in found[0]["event"]["reason"]
    # ... and the replay reports what the candidate would change
    diff = gw.cli_json("policy", "diff", str(revoked), "--since", "1h", "--json")
    assert diff["replayed"] > 0 and diff["changed"] > 0
    change = diff["changes"][0]
    assert change["active"]["effect"] == "allow" and change["candidate"]["effect"] == "deny"
    assert change["subject"] == "client:demo-analytics"


def test_an_invalid_bundle_is_refused_and_the_gateway_keeps_serving(
        gw: RunningGateway, tmp_path: Path) -> None:
    token = gw.token("demo-analytics")
    wait_for(gw, token, 200)
    broken = variant(tmp_path, "broken", "2026.11.9", "effect: deny", "effect: perhaps")
    out = gw.cli("policy", "install", str(broken))
    assert out.returncode == 2 and "effect" in out.stderr
    # even if it lands on disk behind the CLI's back, the running gateway refuses it
    active = gw.home / "policies" / "active" / "policy.yaml"
    original = active.read_text(encoding="utf-8")
    try:
        active.write_text(original.replace("effect: deny", "effect: perhaps"), encoding="utf-8")
        time.sleep(0.5)
        assert read(gw, token) == 200
        assert httpx.get(f"{gw.base}/readyz").status_code == 200
        (worker,) = gw.cli_json("policy", "status", "--json")["workers"]
        assert worker["refusals"] >= 1 and "effect" in worker["last_error"]
    finally:
        active.write_text(original, encoding="utf-8")


def test_signed_bundles_required(gw: RunningGateway, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "ZTGW_HOME": str(home), "ZTGW_POLICY_REQUIRE_SIGNATURE": "true",
           "ZTGW_POLICY_RELOAD_INTERVAL": "0.1", **backend_env()}  # ZTGW_TEST_BACKEND
    env.pop("ZTGW_CONFIG", None)
    subprocess.run([*ZTGW, "init"], env=env, check=True, capture_output=True, timeout=60)
    seeded = subprocess.run([*ZTGW, "demo", "seed", "--json", "--upstream-url", gw.upstream],
                            env=env, check=True, capture_output=True, text=True, timeout=60)
    port = free_port()
    serve = [*ZTGW, "serve", "--port", str(port)]
    # unsigned: the gateway does not start
    proc = subprocess.run(serve, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "not signed" in proc.stderr + proc.stdout or "no trusted key" in proc.stderr + proc.stdout
    # sign with a key the gateway trusts (HOME/keys/policy-signing.pub.pem)
    other = RunningGateway(base=f"http://127.0.0.1:{port}", upstream=gw.upstream, home=home,
                           accounts=json.loads(seeded.stdout), env=env)
    keys = other.cli_json("policy", "keygen", "--out", str(tmp_path / "k"), "--json")
    shutil.copy(keys["public_key"], home / "keys" / "policy-signing.pub.pem")
    active = home / "policies" / "active"
    signed = other.cli("policy", "sign", str(active), "--key", keys["private_key"])
    assert signed.returncode == 0, signed.stderr
    p = subprocess.Popen(serve, env=env)
    try:
        wait_http(f"{other.base}/readyz", p)
        token = other.token("demo-analytics")
        assert read(other, token) == 200
        # altered after signing: refused on reload, the signed policy stays in force
        policy = active / "policy.yaml"
        original = policy.read_text(encoding="utf-8")
        policy.write_text(original.replace(ANALYST_RULE, "subjects: [role:nobody]\n"),
                          encoding="utf-8")
        time.sleep(0.6)
        assert read(other, token) == 200
        # installing an unsigned bundle is refused by the CLI too (exit 1: signature check)
        unsigned = variant(tmp_path, "unsigned", "2026.12.1", ANALYST_RULE,
                           "subjects: [role:nobody]\n")
        assert other.cli("policy", "install", str(unsigned)).returncode == 1
        # a bundle signed by the trusted key is installed and takes effect
        sign = other.cli("policy", "sign", str(unsigned), "--key", keys["private_key"])
        assert sign.returncode == 0, sign.stderr
        other.cli_json("policy", "install", str(unsigned), "--json")
        wait_for(other, token, 403)
    finally:
        p.terminate()
        p.wait(15)


def test_queries_use_the_directory_and_catalogue(gw: RunningGateway) -> None:
    doc = gw.cli_json("policy", "who-can", "population.persons", "--json")
    by_role = {p["subject"]: p for p in doc["principals"]
               if p["rule_id"] not in ("grant-read", "consent-read")}
    assert {"client:demo-analytics", "client:demo-police"} <= set(by_role)
    assert "client:demo-denied" not in by_role and "client:demo-hrss" not in by_role
    # everyone else only with a data owner's grant or a citizen's consent (issue 6)
    conditional = {p["subject"]: p for p in doc["principals"] if p["subject"] not in by_role}
    assert "client:demo-denied" not in conditional  # an unconditional deny excludes it
    assert conditional["client:demo-hrss"]["conditions"]
    ex = gw.cli_json("policy", "explain", "--subject", "client:demo-hrss", "--resource",
                     "social-security.contributions", "--json")
    assert ex["known_subject"] and ex["decision"]["rule_id"] == "social-security-read"
    masked = ex["decision"]["obligations"][0]["fields"]
    assert set(masked) == {"bank_card", "id_number"}
    what = gw.cli_json("policy", "what-can", "--subject", "client:demo-police", "--json")
    assert {d["dataset"] for d in what["datasets"]} == {"population.persons", "enterprise.companies"}


def test_shadow_bundle_on_live_traffic(tmp_path: Path) -> None:
    candidate = variant(tmp_path, "candidate", "2026.12.0", ANALYST_RULE, "subjects: [role:nobody]\n")
    shadow_gw, procs = start_processes(tmp_path / "home", {"ZTGW_POLICY_SHADOW_BUNDLE": str(candidate)})
    try:
        token = shadow_gw.token("demo-analytics")
        assert read(shadow_gw, token) == 200  # the active bundle decides
        police = shadow_gw.token("demo-police")
        assert read(shadow_gw, police) == 200  # same answer in both bundles: nothing recorded
        events: list[dict] = []
        for _ in range(50):
            events = shadow_gw.cli_json("audit", "search", "--text", "policy-shadow-diff",
                                        "--json")["events"]
            if events:
                break
            time.sleep(0.1)
        assert len(events) == 1, events
        diff = events[0]["ztgw"]["policy"]
        assert diff["subject"]["id"] == "client:demo-analytics"
        assert diff["active"]["effect"] == "allow" and diff["shadow"]["effect"] == "deny"
        assert diff["shadow"]["ruleset_version"] == "2026.12.0"
    finally:
        stop_processes(procs)
