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

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]  # our own identifiers, never input

    def new_database(self, prefix: str = "ztgw", template: str | None = None) -> str:
        """A fresh database (empty, or a copy of the database ``template``); its SQLAlchemy URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`new_database` (its engines must be disposed first)."""
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

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


def shared_postgres() -> Postgres:
    """The session's PostgreSQL for ``ZTGW_TEST_BACKEND=postgres`` (started on first use,
    stopped at exit)."""
    pg = _shared.get("pg")
    if pg is None:
        import atexit

        pg = start_postgres()
        atexit.register(pg.stop)
        _shared["pg"] = pg
    assert isinstance(pg, Postgres)
    return pg


def shared_redis() -> Redis:
    """The session's redis-server for ``ZTGW_TEST_BACKEND=postgres`` (as :func:`shared_postgres`)."""
    rd = _shared.get("redis")
    if rd is None:
        import atexit

        rd = start_redis()
        atexit.register(rd.stop)
        _shared["redis"] = rd
    assert isinstance(rd, Redis)
    return rd


def backend_env() -> dict[str, str]:
    """Settings for one more test gateway: with ``ZTGW_TEST_BACKEND=postgres``, a fresh database
    on the session's PostgreSQL and its own key prefix on the session's redis-server (both
    started on first use, stopped at exit); otherwise nothing (the embedded default)."""
    if backend() != "postgres":
        return {}
    pg, rd = shared_postgres(), shared_redis()
    n = next(_gateways)
    return {"ZTGW_DIRECTORY_URL": pg.new_database(), "ZTGW_REDIS_URL": rd.url,
            "ZTGW_REDIS_KEY_PREFIX": f"ztgw-e2e-{os.getpid()}-{n}:"}


_MIGRATED_TEMPLATE = "ztgw_migrated_template"
_templated: set[str] = set()  # data folders of the servers that hold the migrated template


def migrated_database(pg: Postgres) -> str:
    """A fresh database at the newest schema revision: a copy of one database migrated once per
    session by the product's own alembic revisions (``ztgw init`` / ``ztgw db upgrade`` path)."""
    if str(pg.base) not in _templated:
        import sqlalchemy as sa

        from ztgw.gateway.migrations import upgrade

        pg._admin(f'DROP DATABASE IF EXISTS "{_MIGRATED_TEMPLATE}"')
        pg._admin(f'CREATE DATABASE "{_MIGRATED_TEMPLATE}"')
        engine = sa.create_engine(pg.url(_MIGRATED_TEMPLATE), poolclass=sa.NullPool)
        try:
            upgrade(engine)
        finally:
            engine.dispose()  # a template must have no open connections when it is copied
        _templated.add(str(pg.base))
    return pg.new_database(template=_MIGRATED_TEMPLATE)
