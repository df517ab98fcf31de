"""``ztgw db``: schema migrations of the directory database (SQLite or PostgreSQL)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import orjson
import typer

db_app = typer.Typer(help="Database schema: upgrade, current revision, history, drift check.",
                     no_args_is_help=True)


def _print(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


@contextmanager
def _database_errors() -> Iterator[None]:
    """An unreachable or refusing database is a clear exit 2 — without the URL (a password)."""
    import sqlalchemy as sa

    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        reason = type(getattr(exc, "orig", None) or exc).__name__
        typer.echo(f"cannot use the database: {reason}", err=True)
        raise typer.Exit(2) from exc


def _engine(ctx: typer.Context) -> Any:
    from ztgw.gateway.state.database import open_engine_for

    try:
        return open_engine_for(ctx.obj)
    except Exception as exc:  # bad URL, unreachable server: say which, never the password
        typer.echo(f"cannot open the database: {type(exc).__name__}", err=True)
        raise typer.Exit(2) from exc


@db_app.command("upgrade")
def upgrade_cmd(ctx: typer.Context,
                revision: Annotated[str, typer.Argument(help="target revision")] = "head",
                as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Apply every revision up to REVISION (default: the newest)."""
    from . import current, upgrade

    engine = _engine(ctx)
    with _database_errors():
        before = current(engine)
        after = upgrade(engine, revision)
    doc = {"before": list(before), "after": list(after)}
    _print(doc) if as_json else typer.echo(
        f"database at {', '.join(after) or 'base'} (was {', '.join(before) or 'base'})")


@db_app.command("current")
def current_cmd(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The revision the database is at; exit 1 if it is not the newest."""
    from . import current, heads

    with _database_errors():
        at, newest = current(_engine(ctx)), heads()
    doc = {"current": list(at), "head": list(newest), "up_to_date": set(at) == set(newest)}
    _print(doc) if as_json else typer.echo(
        f"{', '.join(at) or 'base'}{' (head)' if doc['up_to_date'] else ' — behind ' + ', '.join(newest)}")
    if not doc["up_to_date"]:
        raise typer.Exit(1)


@db_app.command("history")
def history_cmd(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every revision, newest first."""
    from . import history

    revs = history()
    if as_json:
        _print(revs)
        return
    for r in revs:
        typer.echo(f"{r['down_revision'] or 'base'} -> {r['revision']}{' (head)' if r['head'] else ''}"
                   f"  {r['doc']}")


@db_app.command("check")
def check_cmd(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Compare the database with the code's tables; exit 1 on any difference (a table or
    column without a revision)."""
    from . import schema_diff

    with _database_errors():
        diffs = [repr(d) for d in schema_diff(_engine(ctx))]
    _print({"differences": diffs}) if as_json else typer.echo(
        "\n".join(diffs) if diffs else "no differences")
    if diffs:
        raise typer.Exit(1)


@db_app.command("downgrade")
def downgrade_cmd(ctx: typer.Context,
                  revision: Annotated[str, typer.Argument(help="target revision (base: empty)")],
                  yes: Annotated[bool, typer.Option("--yes", help="confirm: tables are dropped")] = False,
                  as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Undo revisions down to REVISION. Drops tables and their rows: restore a backup instead
    unless you know why (docs/operations.md)."""
    from . import current, downgrade

    if not yes:
        typer.echo("refused: a downgrade drops tables and their rows; add --yes", err=True)
        raise typer.Exit(2)
    engine = _engine(ctx)
    with _database_errors():
        before = current(engine)
        after = downgrade(engine, revision)
    doc = {"before": list(before), "after": list(after)}
    _print(doc) if as_json else typer.echo(
        f"database at {', '.join(after) or 'base'} (was {', '.join(before) or 'base'})")
