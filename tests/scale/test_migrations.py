"""alembic builds exactly the code's schema, on SQLite and on PostgreSQL; homes made by
``create_all`` before migrations upgrade in place; ``ztgw db`` reports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from scale.services import Postgres
from ztgw.gateway import migrations
from ztgw.gateway.catalogue import Catalogue
from ztgw.gateway.identity.directory import Directory, open_engine
from ztgw.gateway.identity.store import create_tables

ZTGW = [sys.executable, "-m", "ztgw.gateway"]


def _all_tables() -> set[str]:
    return {t for m in migrations.target_metadata() for t in m.tables}


def _check(engine: sa.Engine) -> None:
    assert migrations.current(engine) == ()
    assert migrations.upgrade(engine) == migrations.heads()
    assert migrations.is_current(engine)
    # autogenerate finds nothing to do: every table of the code has a revision
    assert migrations.schema_diff(engine) == []
    have = set(sa.inspect(engine).get_table_names())
    assert _all_tables() <= have and migrations.VERSION_TABLE in have
    assert migrations.upgrade(engine) == migrations.heads()  # idempotent


def test_upgrade_head_on_empty_sqlite_matches_the_code(tmp_path: Path) -> None:
    _check(open_engine(tmp_path / "ztgw.db"))


def test_upgrade_head_on_empty_postgres_matches_the_code(postgres: Postgres) -> None:
    _check(sa.create_engine(postgres.new_database()))


def test_downgrade_to_base_and_up_again(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "ztgw.db")
    migrations.upgrade(engine)
    migrations.downgrade(engine, "base")
    assert set(sa.inspect(engine).get_table_names()) == {migrations.VERSION_TABLE}
    migrations.upgrade(engine)
    assert migrations.schema_diff(engine) == []


def test_a_table_without_a_revision_is_found(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "ztgw.db")
    migrations.upgrade(engine)
    meta = migrations.target_metadata()[0]
    extra = sa.Table("not_migrated", meta, sa.Column("id", sa.Integer, primary_key=True))
    try:
        diffs = migrations.schema_diff(engine)
        assert any(d[0] == "add_table" and d[1].name == "not_migrated" for d in diffs)
    finally:
        meta.remove(extra)


def test_a_home_made_by_create_all_before_alembic_upgrades_in_place(tmp_path: Path) -> None:
    engine = open_engine(tmp_path / "ztgw.db")
    for meta in migrations.target_metadata():
        create_tables(engine, meta)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO datasets (dataset, title, route_prefix, upstream_url, "
                             "fields, filter_fields, enabled, pi_fields) VALUES ('ds', 't', "
                             "'/api/ds', 'http://127.0.0.1:9', '{}', '[]', 1, '{}')"))
        # the oldest homes lack datasets.filter_fields (the hand-written upgrade added it)
        conn.execute(sa.text("ALTER TABLE datasets DROP COLUMN filter_fields"))
    assert migrations.current(engine) == ()
    # opening the catalogue migrates (what the gateway and every CLI do)
    [ds] = Catalogue(Directory(engine)).all()
    assert migrations.is_current(engine) and migrations.schema_diff(engine) == []
    assert ds.dataset == "ds" and ds.filter_fields == frozenset()  # the row survived


def test_replicas_upgrading_at_once_apply_each_revision_once(postgres: Postgres) -> None:
    url = postgres.new_database()
    code = ("import sqlalchemy as sa; from ztgw.gateway import migrations as m; "
            f"print(m.upgrade(sa.create_engine({url!r})))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    engine = sa.create_engine(url)
    assert migrations.is_current(engine) and migrations.schema_diff(engine) == []


def test_ztgw_init_migrates_and_ztgw_db_reports(tmp_path: Path) -> None:
    env = {**os.environ, "ZTGW_HOME": str(tmp_path / "home")}
    env.pop("ZTGW_CONFIG", None)
    env.pop("ZTGW_DIRECTORY_URL", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*ZTGW, *args], env=env, capture_output=True, text=True, timeout=120)

    assert run("init").returncode == 0
    cur = run("db", "current", "--json")
    assert cur.returncode == 0, cur.stderr
    doc = json.loads(cur.stdout)
    assert doc["up_to_date"] and doc["current"] == list(migrations.heads())
    hist = json.loads(run("db", "history", "--json").stdout)
    assert hist[-1]["revision"] == "0001" and hist[0]["head"]
    check = run("db", "check", "--json")
    assert check.returncode == 0 and json.loads(check.stdout) == {"differences": []}
    up = run("db", "upgrade", "--json")
    assert up.returncode == 0 and json.loads(up.stdout)["after"] == list(migrations.heads())
    # a database one revision behind is reported (exit 1), and `db upgrade` brings it back
    assert run("db", "downgrade", "0001").returncode == 2  # refused without --yes
    assert run("db", "downgrade", "0001", "--yes").returncode == 0
    behind = run("db", "current", "--json")
    assert behind.returncode == 1 and json.loads(behind.stdout)["current"] == ["0001"]
    assert run("db", "upgrade").returncode == 0 and run("db", "current").returncode == 0


@pytest.mark.parametrize("command", [("db", "current"), ("init",), ("serve",)])
def test_an_unreachable_database_is_a_clear_usage_error(tmp_path: Path, command: tuple[str, ...]) -> None:
    url = "postgresql+psycopg://nobody:s3cret-pw@127.0.0.1:1/none"
    env = {**os.environ, "ZTGW_HOME": str(tmp_path), "ZTGW_DIRECTORY_URL": url}
    out = subprocess.run([*ZTGW, *command], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "cannot use the database" in out.stderr, out.stderr[-2000:]
    assert "s3cret" not in out.stderr + out.stdout  # the URL holds a password: never echoed
