"""Replicas: a policy change published over a real Redis reaches a runtime at once, long before
its file-watch interval (60 s here) would have."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from ztgw.gateway.demo.realm import demo_bundle_dir
from ztgw.gateway.policy_runtime import PolicyRuntime, RedisPolicyWatcher, install_bundle
from ztgw.gateway.settings import Settings
from ztgw.policies.domain import Classification, Environment, Resource, Subject

REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed")
ANALYST = Subject(id="client:a", kind="client", name="a", client_id="a",
                  roles=frozenset({"population-analyst"}))
PERSONS = Resource(dataset="population.persons", classification=Classification.CORE)
NOW = Environment(time=datetime(2026, 11, 20, 3, tzinfo=UTC))


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert REDIS is not None
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_a_published_change_reloads_every_subscribed_replica_at_once(
        tmp_path: Path, redis_url: str) -> None:
    active = tmp_path / "policies" / "active"
    install_bundle(demo_bundle_dir(), active)
    settings = Settings(home=tmp_path, policy_bundle=active, policy_reload_interval=60,
                        policy_redis_url=SecretStr(redis_url))
    replicas = [PolicyRuntime(settings), PolicyRuntime(settings)]
    for rt in replicas:
        await rt.start(None)
    try:
        assert all(rt.status()["replica_watcher"] == "redis" for rt in replicas)
        await asyncio.sleep(0.3)  # subscriptions established
        changed = tmp_path / "changed"
        shutil.copytree(demo_bundle_dir(), changed)
        p = changed / "policy.yaml"
        p.write_text(p.read_text(encoding="utf-8").replace(
            "subjects: [role:population-analyst]", "subjects: [role:nobody]"), encoding="utf-8")
        install_bundle(changed, active)
        publisher = RedisPolicyWatcher(redis_url)
        publisher.update("demo@changed")
        publisher.close()
        for _ in range(100):
            if all(not rt.engine.decide(ANALYST, PERSONS, "read", NOW).allowed for rt in replicas):
                break
            await asyncio.sleep(0.05)
        assert all(not rt.engine.decide(ANALYST, PERSONS, "read", NOW).allowed for rt in replicas)
        assert [rt.reloads for rt in replicas] == [1, 1]
    finally:
        for rt in replicas:
            await rt.stop()


async def test_an_unreachable_redis_falls_back_to_file_watching(tmp_path: Path) -> None:
    active = tmp_path / "policies" / "active"
    install_bundle(demo_bundle_dir(), active)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    settings = Settings(home=tmp_path, policy_bundle=active, policy_reload_interval=0.05,
                        policy_redis_url=SecretStr(f"redis://127.0.0.1:{dead}/0"))
    rt = PolicyRuntime(settings)
    await rt.start(None)
    try:
        assert rt.status()["replica_watcher"] == "file"
        assert rt.engine.decide(ANALYST, PERSONS, "read", NOW).allowed
    finally:
        await rt.stop()
