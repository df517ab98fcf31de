"""``ztgw apikeys …``: SM2 access keys for signed requests (see signatures.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from ztgw.crypto.errors import CryptoError

from ..identity.directory import Directory
from .signatures import ApiKeyStore

apikeys_app = typer.Typer(help="SM2 access keys for AK/SK request signatures.", no_args_is_help=True)
err = Console(stderr=True)


def _store(ctx: typer.Context) -> tuple[ApiKeyStore, Directory]:
    from ..state.database import is_initialised, open_directory

    settings: Any = ctx.obj
    if not is_initialised(settings):
        err.print(f"{settings.home} is not initialised: run `ztgw init` first")
        raise typer.Exit(2)
    directory = open_directory(settings, migrate=False)  # SQLite, or directory_url
    return ApiKeyStore(directory), directory


def _out(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


@apikeys_app.command("add")
def add(
    ctx: typer.Context,
    client_id: Annotated[str, typer.Option(help="the application the key acts for")],
    public_key: Annotated[Path, typer.Option(help="SM2 public key, PEM (SubjectPublicKeyInfo)")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register an SM2 public key; prints the key id to put in signed requests."""
    store, directory = _store(ctx)
    if directory.get_client(client_id) is None:
        err.print(f"no application {client_id!r}")
        raise typer.Exit(2)
    try:
        key_id = store.add(client_id, public_key.read_bytes())
    except (OSError, CryptoError, ValueError) as exc:
        err.print(f"cannot use {public_key}: {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        _out({"key_id": key_id, "client_id": client_id})
    else:
        typer.echo(key_id)


@apikeys_app.command("list")
def list_keys(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List access keys (public material only)."""
    rows = _store(ctx)[0].list()
    if as_json:
        _out({"keys": rows})
    else:
        for r in rows:
            typer.echo(f"{r['key_id']}  {r['client_id']}  {'enabled' if r['enabled'] else 'disabled'}")


@apikeys_app.command("disable")
def disable(ctx: typer.Context, key_id: Annotated[str, typer.Argument()]) -> None:
    """Disable a key; signed requests with it are refused within a second."""
    if not _store(ctx)[0].disable(key_id):
        err.print(f"no key {key_id}")
        raise typer.Exit(2)
