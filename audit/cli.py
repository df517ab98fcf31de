"""``ztgw audit …``: investigation from the command line."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from .config import ProvidesAuditSettings
from .errors import QueryError
from .query import FIELDS, AuditQuery, parse_time
from .store import AuditStore

app = typer.Typer(help="Audit trail: search, tail, verify.", no_args_is_help=True)


def _store(ctx: typer.Context) -> AuditStore:
    settings: ProvidesAuditSettings = ctx.obj
    conf = settings.audit_settings()
    if not conf.db_path.exists():
        Console(stderr=True).print(f"no audit store at {conf.db_path} (run `ztgw init`)")
        raise typer.Exit(2)
    return AuditStore(conf.db_path)


def _row(doc: dict[str, Any]) -> list[str]:
    user = doc.get("user", {}).get("name", "")
    client = doc.get("ztgw", {}).get("oidc", {}).get("client_id", "")
    return [
        doc.get("@timestamp", "")[:23],
        doc.get("event", {}).get("action", ""),
        doc.get("ztgw", {}).get("decision", {}).get("effect", "")
        or doc.get("event", {}).get("outcome", ""),
        str(doc.get("http", {}).get("response", {}).get("status_code", "")),
        user or client,
        doc.get("source", {}).get("ip", ""),
        doc.get("url", {}).get("path", ""),
        doc.get("rule", {}).get("id", "") or "",
        doc.get("http", {}).get("request", {}).get("id", ""),
    ]


HEADERS = ["time (UTC)", "action", "decision", "status", "who", "source", "path", "rule", "id"]


@app.command()
def search(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="ISO time or age (15m, 24h, 7d)")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time or age")] = None,
    user: Annotated[str | None, typer.Option(help="user.name")] = None,
    client: Annotated[str | None, typer.Option(help="OAuth client id")] = None,
    ip: Annotated[str | None, typer.Option(help="source.ip")] = None,
    dataset: Annotated[str | None, typer.Option(help="data set, e.g. population.persons")] = None,
    decision: Annotated[str | None, typer.Option(help="allow or deny")] = None,
    outcome: Annotated[str | None, typer.Option(help="success or failure")] = None,
    request_id: Annotated[str | None, typer.Option("--request-id", help="X-Request-ID")] = None,
    text: Annotated[str | None, typer.Option("--text", "-q", help="free text")] = None,
    top: Annotated[str | None, typer.Option(help=f"aggregate by one of {sorted(FIELDS)}")] = None,
    limit: Annotated[int, typer.Option(help="max events")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Search the audit trail (newest first)."""
    try:
        query = AuditQuery(
            since=parse_time(since) if since else None,
            until=parse_time(until) if until else None,
            user=user,
            client=client,
            source_ip=ip,
            dataset=dataset,
            decision=decision,
            outcome=outcome,
            request_id=request_id,
            text=text,
            limit=limit,
        )
        store = _store(ctx)
        if top:
            buckets = store.top(query, top, n=limit)
            if as_json:
                out = {"field": top, "buckets": [{"value": v, "count": c} for v, c in buckets]}
                sys.stdout.write(orjson.dumps(out).decode() + "\n")
            else:
                table = Table(top, "count")
                for v, c in buckets:
                    table.add_row(str(v), str(c))
                Console().print(table)
            return
        events = store.search(query)
        total = store.count(query)
    except QueryError as exc:
        Console(stderr=True).print(f"error: {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        sys.stdout.write(orjson.dumps({"total": total, "events": events}).decode() + "\n")
        return
    table = Table(*HEADERS, title=f"{len(events)} of {total} events")
    for doc in events:
        table.add_row(*_row(doc))
    Console().print(table)


@app.command()
def tail(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new events")] = False,
    lines: Annotated[int, typer.Option("-n", help="how many recent events first")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="NDJSON output")] = False,
    seconds: Annotated[float, typer.Option(help="with -f: stop after this long (0 = never)")] = 0,
) -> None:
    """Print the most recent events; with -f, follow new ones."""
    store = _store(ctx)
    last = max(0, store.last_seq() - lines)
    deadline = time.monotonic() + seconds if seconds > 0 else None
    console = Console()
    while True:
        for seq, doc in store.after(last):
            last = seq
            if as_json:
                sys.stdout.write(orjson.dumps(doc).decode() + "\n")
            else:
                console.print("  ".join(_row(doc)), markup=False, highlight=False)
        sys.stdout.flush()
        if not follow or (deadline is not None and time.monotonic() > deadline):
            return
        time.sleep(0.5)
