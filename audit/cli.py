"""``ztgw audit …``: investigation from the command line."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .checkpoint import PUBLIC_KEY_FILE
from .config import ProvidesAuditSettings
from .errors import QueryError
from .query import FIELDS, AuditQuery, parse_time
from .store import AuditStore
from .verify import verify as verify_chain

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


COUNT_CAP = 10_000  # totals are exact up to here (bounded work on a large store)
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
                    table.add_row(Text(str(v)), str(c))
                Console().print(table)
            return
        events = store.search(query)
        total = store.count(query, cap=COUNT_CAP)
    except QueryError as exc:
        Console(stderr=True).print(f"error: {exc}")
        raise typer.Exit(2) from exc
    relation = "gte" if total >= COUNT_CAP else "eq"  # as Elasticsearch's hits.total.relation
    if as_json:
        out = {"total": total, "total_relation": relation, "events": events}
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
        return
    shown = f"{'≥' if relation == 'gte' else ''}{total}"
    table = Table(*HEADERS, title=f"{len(events)} of {shown} events")
    for doc in events:
        table.add_row(*(Text(cell) for cell in _row(doc)))  # Text: no rich markup from events
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


@app.command()
def verify(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Recompute the SM3 chain and check it against the signed checkpoints; exit 1 on tampering."""
    settings: ProvidesAuditSettings = ctx.obj
    conf = settings.audit_settings()
    store = _store(ctx)
    report = verify_chain(store, conf.effective_checkpoint_path,
                          conf.effective_keys_dir / PUBLIC_KEY_FILE, list(conf.witness_dirs))
    store.close()
    if as_json:
        sys.stdout.write(orjson.dumps(report.to_dict()).decode() + "\n")
    else:
        console = Console()
        if report.ok:
            console.print(f"OK: {report.events} events, chain intact; {report.checkpoints} signed "
                          f"checkpoints up to position {report.checkpointed_to}")
        else:
            console.print(f"TAMPERED: first bad position {report.first_bad_position}", style="bold red")
            for f in report.findings:
                console.print(f"  [{f.kind}] position {f.position}: {f.detail}", markup=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def install(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Install the Elasticsearch ILM policy, ingest pipeline and templates (ZTGW_AUDIT_ES_URL)."""
    from elasticsearch.exceptions import ApiError, TransportError

    from .es.sink import install as install_assets
    from .es.sink import make_client

    settings: ProvidesAuditSettings = ctx.obj
    conf = settings.audit_settings()
    if not conf.es_url:
        Console(stderr=True).print("no Elasticsearch URL: set ZTGW_AUDIT_ES_URL")
        raise typer.Exit(2)
    client = make_client(conf)
    try:
        done = install_assets(client)
    except (ApiError, TransportError) as exc:
        Console(stderr=True).print(f"error: {type(exc).__name__}: {str(exc)[:300]}")
        raise typer.Exit(1) from exc
    finally:
        client.close()
    if as_json:
        sys.stdout.write(orjson.dumps({"installed": done}).decode() + "\n")
    else:
        for path in done:
            Console().print(f"PUT {path}")


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document")] = False,
) -> None:
    """Spool size against its quota, each sink's backlog, the last signed checkpoint."""
    from .checkpoint import read_checkpoints
    from .spool import Cursor

    settings: ProvidesAuditSettings = ctx.obj
    conf = settings.audit_settings()
    spool = conf.effective_spool_dir
    segments = sorted(spool.glob("seg-*.ndjson")) if spool.exists() else []
    sizes = {int(p.name[4:14]): p.stat().st_size for p in segments}
    sinks = {}
    for path in sorted((spool / "cursors").glob("*.json")) if spool.exists() else []:
        cur = Cursor.load(path)
        if cur is None:
            continue
        behind = sum(size for seg, size in sizes.items() if seg > cur.segment)
        behind += max(0, sizes.get(cur.segment, 0) - cur.offset)
        sinks[path.stem] = {"segment": cur.segment, "offset": cur.offset, "backlog_bytes": behind}
    cps, _ = read_checkpoints(conf.effective_checkpoint_path)
    out = {
        "spool_dir": str(spool), "spool_bytes": sum(sizes.values()),
        "spool_quota_bytes": conf.spool_quota_bytes, "segments": len(sizes), "fsync": conf.fsync,
        "sinks_configured": list(conf.sinks), "sinks": sinks,
        "last_checkpoint": {"seq_to": cps[-1].seq_to, "time": cps[-1].time} if cps else None,
        "witnesses": [str(w) for w in conf.witness_dirs],
    }
    if as_json:
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
        return
    console = Console()
    pct = 100 * out["spool_bytes"] / conf.spool_quota_bytes
    console.print(f"spool {out['spool_bytes']:,} bytes in {len(sizes)} segments ({pct:.1f}% of quota), "
                  f"fsync={conf.fsync}")
    for name, info in sinks.items():
        console.print(f"  sink {name}: {info['backlog_bytes']:,} bytes behind")
    lc = out["last_checkpoint"]
    console.print(f"last checkpoint: position {lc['seq_to']} at {lc['time']}" if lc else "no checkpoint yet")
