"""Real PostgreSQL and redis-server on loopback for tests: started on free ports, stopped after.

Used by the multi-replica tests (tests/scale/) and by the e2e fixtures when
``ZTGW_TEST_BACKEND=postgres`` (every e2e gateway then gets its own database and Redis key
prefix on one shared server pair).
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# the newest installed PostgreSQL (Debian installs its binaries off PATH)
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"),
             key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
             default=Path("/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServiceMissing(RuntimeError):
    """The server binary is not installed (tests skip)."""


@dataclass
class Postgres:
    port: int
    base: Path
    run_as: list[str]
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "ztgw") -> str:
        """A fresh empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        pg_ctl = shutil.which("pg_ctl") or str(PG_BIN / "pg_ctl")
        subprocess.run([*self.run_as, pg_ctl, "-D", str(self.base / "data"), "-m", "fast", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(self.base, ignore_errors=True)


def start_postgres() -> Postgres:
    initdb = shutil.which("initdb") or str(PG_BIN / "initdb")
    pg_ctl = shutil.which("pg_ctl") or str(PG_BIN / "pg_ctl")
    if not Path(initdb).exists():
        raise ServiceMissing("PostgreSQL is not installed")
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
        if shutil.which("runuser") is None:
            raise ServiceMissing("running as root without runuser")
        run_as = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="ztgw-pg-"))  # pytest's tmp root is private to us
    if run_as:
        shutil.chown(base, "postgres", "postgres")
    subprocess.run([*run_as, initdb, "-D", str(base / "data"), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    subprocess.run([*run_as, pg_ctl, "-D", str(base / "data"), "-l", str(base / "log"), "-w", "-o",
                    f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                    "-c fsync=off",
                    "start"], check=True, capture_output=True, timeout=120)
    return Postgres(port=port, base=base, run_as=run_as)


@dataclass
class Redis:
    port: int
    proc: subprocess.Popen[bytes]
    base: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.base, ignore_errors=True)


def start_redis() -> Redis:
    server = shutil.which("redis-server")
    if server is None:
        raise ServiceMissing("redis-server is not installed")
    import redis

    base = Path(tempfile.mkdtemp(prefix="ztgw-redis-"))
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(base)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    client.close()
    return Redis(port=port, proc=proc, base=base)


# --- the e2e suite on PostgreSQL + Redis (ZTGW_TEST_BACKEND=postgres) ------------------------
BACKEND_ENV = "ZTGW_TEST_BACKEND"
_shared: dict[str, Postgres | Redis] = {}
_gateways = itertools.count(1)


def backend() -> str:
    value = os.environ.get(BACKEND_ENV, "embedded").strip().lower() or "embedded"
    if value not in ("embedded", "postgres"):
        raise RuntimeError(f"{BACKEND_ENV} must be 'embedded' or 'postgres', not {value!r}")
    return value


def backend_env() -> dict[str, str]:
    """Settings for one more test gateway: with ``ZTGW_TEST_BACKEND=postgres``, a fresh database
    on the session's PostgreSQL and its own key prefix on the session's redis-server (both
    started on first use, stopped at exit); otherwise nothing (the embedded default)."""
    if backend() != "postgres":
        return {}
    if not _shared:
        import atexit

        pg = start_postgres()
        atexit.register(pg.stop)
        _shared["pg"] = pg
        rd = start_redis()
        atexit.register(rd.stop)
        _shared["redis"] = rd
    pg, rd = _shared["pg"], _shared["redis"]
    assert isinstance(pg, Postgres) and isinstance(rd, Redis)
    n = next(_gateways)
    return {"ZTGW_DIRECTORY_URL": pg.new_database(), "ZTGW_REDIS_URL": rd.url,
            "ZTGW_REDIS_KEY_PREFIX": f"ztgw-e2e-{os.getpid()}-{n}:"}
