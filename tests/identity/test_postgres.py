"""The directory and the provider's state on a real PostgreSQL (started here on loopback):
the same code as SQLite — codes, rotation with reuse detection, revocation list, sessions."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ztgw.gateway.identity.directory import ClientRecord, Directory, UserRecord
from ztgw.gateway.identity.revocation import RevocationList
from ztgw.gateway.identity.store import CodeRecord, OAuthStore, RefreshRecord, digest, now

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    initdb = shutil.which("initdb") or str(PG_BIN / "initdb")
    pg_ctl = shutil.which("pg_ctl") or str(PG_BIN / "pg_ctl")
    if not Path(initdb).exists():
        pytest.skip("PostgreSQL is not installed")
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser")
        run_as = ["runuser", "-u", "postgres", "--"]
    # pytest's temp root is private to this user; the postgres user needs its own folder
    base = Path(tempfile.mkdtemp(prefix="ztgw-pg-"))
    data = base / "data"
    if run_as:
        shutil.chown(base, "postgres", "postgres")
    subprocess.run([*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True, timeout=120)
    port = _free_port()
    subprocess.run([*run_as, pg_ctl, "-D", str(data), "-l", str(base / "log"), "-w", "-o",
                    f"-p {port} -k {base} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "fast", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def test_directory_and_store_on_postgres(pg_url: str) -> None:
    d = Directory.open_url(pg_url)
    Directory.open_url(pg_url)  # a second worker starting: tables exist, no error
    d.put_user(UserRecord(username="alice", department="市公安局", attributes={"groups": ["a"]}))
    d.put_client(ClientRecord(client_id="app", name="应用", public=True,
                              redirect_uris=("http://127.0.0.1:9/cb",),
                              grant_types=("authorization_code",)))
    u = d.get_user("alice")
    assert u is not None and u.department == "市公安局" and u.attributes == {"groups": ["a"]}
    assert d.get_client("app") is not None

    store = OAuthStore(d.engine)
    rec = CodeRecord(client_id="app", username="alice", redirect_uri="http://127.0.0.1:9/cb",
                     scope="openid", nonce="n", code_challenge="c" * 43, code_challenge_method="S256",
                     auth_time=now(), acr="urn:ztgw:acr:pwd", amr=("pwd",), sid=None,
                     family_id="fam", expires_at=now() + 60)
    store.save_code("code-1", rec)
    assert store.consume_code("code-1", "app") is not None
    store.create_family("fam", "app", "alice", None)
    store.record_access("jti-1", "fam", now() + 600)
    assert store.consume_code("code-1", "app") is None  # replay: refused and family revoked
    assert store.family_revoked("fam") and store.is_jti_revoked("jti-1")

    store.create_family("fam2", "app", "alice", None)
    store.save_refresh("rt-1", RefreshRecord(
        token_hash=digest("rt-1"), family_id="fam2", client_id="app", username="alice",
        scope="openid", auth_time=now(), acr=None, amr=(), sid=None, issued_at=now(),
        expires_at=now() + 600, rotated=False, family_revoked=False))
    assert store.rotate_refresh(digest("rt-1")) and not store.rotate_refresh(digest("rt-1"))

    other_worker = RevocationList(OAuthStore(Directory.open_url(pg_url).engine), poll_seconds=0.0)
    assert other_worker.is_revoked("jti-1")
    store.revoke_jti("jti-2", now() + 60)
    deadline = time.monotonic() + 5
    while not other_worker.is_revoked("jti-2") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert other_worker.is_revoked("jti-2")
    assert store.use_challenge("h1", now() + 60) and not store.use_challenge("h1", now() + 60)
