"""The policy runtime inside the gateway: start fails closed, reload swaps atomically, a bad or
unsigned bundle is refused and the previous one stays, shadow differences are audited."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ztgw.crypto.sm2 import generate_key
from ztgw.gateway.demo.realm import demo_bundle_dir
from ztgw.gateway.policy_runtime import PolicyRuntime, install_bundle
from ztgw.gateway.settings import Settings
from ztgw.policies.domain import Classification, Environment, Resource, Subject
from ztgw.policies.errors import BundleError, BundleSignatureError
from ztgw.policies.signing import sign_bundle

KEY = generate_key()
ANALYST = Subject(id="client:a", kind="client", name="a", client_id="a",
                  roles=frozenset({"population-analyst"}))
PERSONS = Resource(dataset="population.persons", classification=Classification.CORE)
NOW = Environment(time=datetime(2026, 11, 20, 3, tzinfo=UTC))


def make(tmp_path: Path, **kw: Any) -> tuple[Settings, Path]:
    active = tmp_path / "policies" / "active"
    install_bundle(demo_bundle_dir(), active)
    return Settings(home=tmp_path, policy_bundle=active, **kw), active


def edit(bundle: Path, old: str, new: str) -> None:
    p = bundle / "policy.yaml"
    text = p.read_text(encoding="utf-8")
    assert old in text
    p.write_text(text.replace(old, new), encoding="utf-8")


def staged(tmp_path: Path, name: str, old: str, new: str) -> Path:
    b = tmp_path / name
    shutil.copytree(demo_bundle_dir(), b)
    edit(b, old, new)
    return b


def test_reload_swaps_the_policy_and_audits_it(tmp_path: Path) -> None:
    settings, active = make(tmp_path)
    rt = PolicyRuntime(settings)
    events: list[dict[str, Any]] = []
    rt._emit = events.append
    assert rt.engine.decide(ANALYST, PERSONS, "read", NOW).allowed
    assert not rt.check()  # nothing changed
    install_bundle(staged(tmp_path, "v2", "version: \"2026.11.1\"", "version: \"2026.11.2\"\n# v2"),
                   active)
    edit(active, "subjects: [role:population-analyst]", "subjects: [role:nobody]")
    assert rt.check()
    d = rt.engine.decide(ANALYST, PERSONS, "read", NOW)
    assert not d.allowed and d.ruleset_version == "2026.11.2"
    assert events[-1]["event"]["action"] == "policy-reload" and events[-1]["event"]["outcome"] == "success"


def test_a_broken_bundle_is_refused_and_the_old_one_stays(tmp_path: Path) -> None:
    settings, active = make(tmp_path)
    rt = PolicyRuntime(settings)
    events: list[dict[str, Any]] = []
    rt._emit = events.append
    edit(active, "effect: deny", "effect: maybe")
    assert not rt.check()
    assert rt.engine.decide(ANALYST, PERSONS, "read", NOW).allowed
    assert rt.refusals == 1 and "effect" in (rt.last_error or "")
    assert events[-1]["event"]["outcome"] == "failure"
    assert not rt.check()  # the same refused content is not retried on every tick
    assert rt.refusals == 1


def test_start_fails_closed_on_a_bad_bundle(tmp_path: Path) -> None:
    settings, active = make(tmp_path)
    edit(active, "effect: deny", "effect: maybe")
    with pytest.raises(BundleError):
        PolicyRuntime(settings)


def _rule(rt: PolicyRuntime, rule_id: str) -> Any:
    return next(r for r in rt.engine.policy.bundle.rules if r.id == rule_id)


def test_signature_required_at_start_and_on_reload(tmp_path: Path) -> None:
    pub = tmp_path / "pub.pem"
    pub.write_bytes(KEY.public_key().to_pem())
    settings, active = make(tmp_path, policy_require_signature=True, policy_trusted_keys=[pub])
    with pytest.raises(BundleSignatureError, match="not signed"):
        PolicyRuntime(settings)
    sign_bundle(active, KEY)
    rt = PolicyRuntime(settings)
    assert rt.engine.decide(ANALYST, PERSONS, "read", NOW).allowed
    # altered after signing: refused, the signed policy stays active
    edit(active, "subjects: [role:suspended]", "subjects: [role:nobody]")
    assert not rt.check()
    assert "altered" in (rt.last_error or "")
    assert _rule(rt, "deny-suspended").subjects == ("role:suspended",)
    # re-signed by the trusted key: accepted
    sign_bundle(active, KEY)
    assert rt.check()
    assert _rule(rt, "deny-suspended").subjects == ("role:nobody",)


def test_signature_required_without_a_trusted_key_refuses(tmp_path: Path) -> None:
    settings, active = make(tmp_path, policy_require_signature=True)
    sign_bundle(active, KEY)
    with pytest.raises(BundleSignatureError, match="no trusted key"):
        PolicyRuntime(settings)


def test_shadow_bundle_differences_are_audited_not_enforced(tmp_path: Path) -> None:
    shadow = staged(tmp_path, "candidate", "subjects: [role:population-analyst]\n",
                    "subjects: [role:nobody]\n")
    settings, _ = make(tmp_path, policy_shadow_bundle=shadow)
    rt = PolicyRuntime(settings)
    events: list[dict[str, Any]] = []
    rt._emit = events.append
    assert rt.engine.decide(ANALYST, PERSONS, "read", NOW).allowed
    (ev,) = events
    assert ev["event"]["action"] == "policy-shadow-diff"
    diff = ev["ztgw"]["policy"]
    assert diff["active"]["effect"] == "allow" and diff["shadow"]["effect"] == "deny"
    assert rt.status()["shadow"]["divergences"] == 1


async def test_watcher_task_reloads_without_being_asked(tmp_path: Path) -> None:
    settings, active = make(tmp_path, policy_reload_interval=0.05)
    rt = PolicyRuntime(settings)
    await rt.start(None)
    try:
        edit(active, "subjects: [role:population-analyst]", "subjects: [role:nobody]")
        for _ in range(200):
            if not rt.engine.decide(ANALYST, PERSONS, "read", NOW).allowed:
                break
            await asyncio.sleep(0.02)
        assert not rt.engine.decide(ANALYST, PERSONS, "read", NOW).allowed
        assert rt.reloads == 1
    finally:
        await rt.stop()


async def test_status_file_tracks_what_the_worker_enforces(tmp_path: Path) -> None:
    import json
    import os

    from typer.testing import CliRunner

    from ztgw.gateway.policy_runtime import policy_app

    settings, active = make(tmp_path, policy_reload_interval=0.05)
    rt = PolicyRuntime(settings)
    await rt.start(None)
    try:
        doc = json.loads(rt.status_file().read_text(encoding="utf-8"))
        assert doc["pid"] == os.getpid() and doc["version"] == "2026.11.1"
        edit(active, 'version: "2026.11.1"', 'version: "2026.11.5"')
        for _ in range(200):
            doc = json.loads(rt.status_file().read_text(encoding="utf-8"))
            if doc["version"] == "2026.11.5":
                break
            await asyncio.sleep(0.02)
        assert doc["version"] == "2026.11.5" and doc["reloads"] == 1
        out = CliRunner().invoke(policy_app, ["status", "--json"], obj=settings)
        assert out.exit_code == 0, out.output
        assert [w["version"] for w in json.loads(out.stdout)["workers"]] == ["2026.11.5"]
    finally:
        await rt.stop()
    assert not rt.status_file().exists()


def test_install_runs_the_bundle_tests_first(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from ztgw.gateway.policy_runtime import policy_app

    settings, active = make(tmp_path)
    # the rule changes but the bundle's own tests still expect the old behaviour
    candidate = staged(tmp_path, "candidate", "subjects: [role:population-analyst]\n",
                       "subjects: [role:nobody]\n")
    runner = CliRunner()
    out = runner.invoke(policy_app, ["install", str(candidate)], obj=settings)
    assert out.exit_code == 1 and "of the bundle's own tests fail" in out.output
    assert "role:population-analyst" in (active / "policy.yaml").read_text(encoding="utf-8")
    out = runner.invoke(policy_app, ["install", str(candidate), "--skip-tests", "--json"],
                        obj=settings)
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["tests"]["failed"] >= 1
    assert "role:nobody" in (active / "policy.yaml").read_text(encoding="utf-8")
