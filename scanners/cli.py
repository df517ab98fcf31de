"""``ztgw alerts …``, ``ztgw drill …`` and ``ztgw scan ports|tls|passwords|coverage``.

The root CLI (gateway/cli.py) mounts :data:`alerts_app` and :data:`drill_app` and registers
the scan commands on its ``scan`` app.  Settings arrive as ``ctx.obj`` (the gateway's
settings object: ``home``, ``audit_settings()``, ``detect_*``, ``scan_allowed_hosts``).
Data this package cannot read itself (local credentials, the dataset catalogue) comes from
providers the root CLI installs in :data:`providers`.
"""

from __future__ import annotations

import getpass
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from .alerts import AlertBook
from .coverage import DatasetInfo, GrantInfo, scan_coverage
from .errors import ScannerError
from .passwords import Credential, scan_credentials
from .ports import parse_ports, scan_ports
from .response import ResponseBook
from .tls import scan_tls

alerts_app = typer.Typer(help="Detection alerts and automatic responses.", no_args_is_help=True)
drill_app = typer.Typer(help="Attack-defence drills (攻防演练): simulate a campaign, write the debrief.",
                        no_args_is_help=True)
err = Console(stderr=True)
out = Console()


@dataclass
class Providers:
    credentials: Callable[[Any], Iterable[Credential]] | None = None
    datasets: Callable[[Any], Iterable[DatasetInfo]] | None = None
    grants: Callable[[Any], Iterable[GrantInfo]] | None = None  # grants and consents (issue 6)
    sampled_pii: Callable[[Any], Iterable[dict[str, Any]]] | None = None  # scan pii --sampled


providers = Providers()
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document")]


def _print_json(doc: Any) -> None:
    opts = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
    sys.stdout.write(orjson.dumps(doc, option=opts, default=str).decode() + "\n")


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    err.print(f"error: {exc}")
    return typer.Exit(code)


def _state(ctx: typer.Context) -> Path:
    return Path(ctx.obj.home) / "detection" / "detection.db"


def _book(ctx: typer.Context) -> AlertBook:
    return AlertBook(ctx.obj.audit_settings().db_path, _state(ctx))


def _record(ctx: typer.Context, kind: str, report: dict[str, Any]) -> None:
    """Keep the latest posture report for the drill debrief (best effort)."""
    folder = Path(ctx.obj.home) / "detection" / "posture"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{kind}.json").write_bytes(orjson.dumps({**report, "kind": kind,
                                                             "at": datetime.now(UTC).isoformat()}))
    except OSError as exc:
        err.print(f"could not record the {kind} report: {exc}")


def _allowed(ctx: typer.Context) -> tuple[str, ...]:
    return tuple(getattr(ctx.obj, "scan_allowed_hosts", ()) or ())


# --- alerts -----------------------------------------------------------------------------------
@alerts_app.command("list")
def alerts_list(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="ISO time or age (15m, 24h, 7d)")] = "24h",
    rule: Annotated[str | None, typer.Option(help="rule id, name or category")] = None,
    unacked: Annotated[bool, typer.Option(help="only alerts not acknowledged")] = False,
    min_severity: Annotated[int, typer.Option(help="1 low … 4 critical")] = 0,
    grouped: Annotated[bool, typer.Option(help="one row per alert group")] = False,
    limit: Annotated[int, typer.Option(help="at most this many rows")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Alerts raised by the detection engine, newest first."""
    try:
        rows = _book(ctx).list(since=since, rule=rule, unacked=unacked, min_severity=min_severity,
                               limit=limit, grouped=grouped)
    except (ScannerError, ValueError) as exc:
        raise _fail(exc) from exc
    if as_json:
        _print_json({"alerts" if not grouped else "groups": rows, "count": len(rows)})
        return
    table = Table("time (UTC)", "id", "sev", "rule", "source", "user", "count", "ack", "message")
    for a in rows:
        if grouped:
            a = {**a["latest"], "ack": a["latest"].get("ack")}
        al = a.get("ztgw", {}).get("alert", {})
        table.add_row(a["@timestamp"][:19], a["event"]["id"], str(a["event"].get("severity", "")),
                      a["rule"].get("name", ""), a.get("source", {}).get("ip", ""),
                      a.get("user", {}).get("name", ""), str(al.get("count", 1)),
                      "yes" if a.get("ack") else "", a.get("message", "")[:80])
    out.print(table)


@alerts_app.command("show")
def alerts_show(ctx: typer.Context, alert_id: str, as_json: JsonOpt = False) -> None:
    """One alert with its evidence events and the responses taken."""
    try:
        alert = _book(ctx).show(alert_id)
    except ScannerError as exc:
        raise _fail(exc, 1) from exc
    if as_json:
        _print_json(alert)
        return
    out.print_json(orjson.dumps(alert, default=str).decode())


@alerts_app.command("ack")
def alerts_ack(
    ctx: typer.Context, alert_id: str,
    note: Annotated[str | None, typer.Option(help="why (ticket, finding)")] = None,
    by: Annotated[str | None, typer.Option(help="who acknowledges; default: the OS user")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Acknowledge an alert (it no longer shows with ``--unacked``)."""
    try:
        res = _book(ctx).ack(alert_id, by or getpass.getuser(), note)
    except ScannerError as exc:
        raise _fail(exc, 1) from exc
    _print_json(res) if as_json else out.print(f"acknowledged {alert_id}")


@alerts_app.command("responses")
def alerts_responses(
    ctx: typer.Context,
    active: Annotated[bool, typer.Option(help="only actions in force")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Automatic responses taken (IP blocks, account locks, token revocations, risk)."""
    book = ResponseBook(_state(ctx))
    try:
        rows = [a.as_dict() for a in book.list(active_only=active)]
    finally:
        book.close()
    if as_json:
        _print_json({"responses": rows, "count": len(rows)})
        return
    table = Table("id", "action", "target", "value", "rule", "expires (UTC)", "active", "undone by")
    for r in rows:
        table.add_row(str(r["id"]), r["kind"], r["target"], str(r["value"] or ""), r["rule_id"],
                      datetime.fromtimestamp(r["expires"], UTC).isoformat()[:19],
                      "yes" if r["active"] else "", r["undone_by"] or "")
    out.print(table)


@alerts_app.command("undo")
def alerts_undo(
    ctx: typer.Context, action_id: int,
    by: Annotated[str | None, typer.Option(help="who lifts it; default: the OS user")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Lift an automatic response now (the gateway audits the undo)."""
    book = ResponseBook(_state(ctx))
    try:
        action = book.undo(action_id, by or getpass.getuser())
    except ScannerError as exc:
        raise _fail(exc, 1) from exc
    finally:
        book.close()
    _print_json(action.as_dict()) if as_json else out.print(f"undone {action.kind} {action.target}")


@alerts_app.command("rules")
def alerts_rules(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="default (Lucene), dsl_lucene, kibana_ndjson, "
                                                      "siem_rule, siem_rule_ndjson")] = "default",
    as_json: JsonOpt = False,
) -> None:
    """The Sigma rules as Elasticsearch queries (pySigma's Elasticsearch backend)."""
    from .sigma import load_collection, load_rules, to_elasticsearch

    rules_dir = getattr(ctx.obj, "detect_rules_dir", None)
    paths = [rules_dir] if rules_dir else None
    try:
        coll = load_collection(paths)
        queries = to_elasticsearch(coll, fmt)
        compiled = load_rules(paths)
    except ScannerError as exc:
        raise _fail(exc) from exc
    rows = [{"id": r.id, "title": r.title, "level": r.level, "query": q}
            for r, q in zip(compiled, queries, strict=False)]
    if as_json:
        _print_json({"format": fmt, "rules": rows})
        return
    for row in rows:
        out.print(f"[bold]{row['title']}[/bold] ({row['level']})")
        q = row["query"]
        sys.stdout.write(f"{q if isinstance(q, str) else orjson.dumps(q).decode()}\n\n")


# --- scans ----------------------------------------------------------------------------------
def ports(
    ctx: typer.Context,
    hosts: Annotated[list[str] | None, typer.Argument(help="hosts (default 127.0.0.1)")] = None,
    port_spec: Annotated[str | None, typer.Option("--ports", help="e.g. 22,80,8000-8100; "
                                                  "default: the high-risk list")] = None,
    timeout: Annotated[float, typer.Option(help="seconds per connect")] = 0.5,
    as_json: JsonOpt = False,
) -> None:
    """TCP connect scan for high-risk ports (loopback or ZTGW_SCAN_ALLOWED_HOSTS only).
    Exit 1 when a high-risk port is open."""
    try:
        report = scan_ports(hosts or ["127.0.0.1"], parse_ports(port_spec), allowed=_allowed(ctx),
                            timeout=max(0.05, min(timeout, 5.0)))
    except ScannerError as exc:
        raise _fail(exc) from exc
    report["findings"] = [{"severity": "high" if f["service"] != "unknown" else "info",
                           "finding": f"{f['host']}:{f['port']} open ({f['service']}: {f['risk']})"}
                          for f in report["open"]]
    _record(ctx, "ports", report)
    if as_json:
        _print_json(report)
    else:
        table = Table("host", "port", "service", "risk")
        for f in report["open"]:
            table.add_row(f["host"], str(f["port"]), f["service"], f["risk"])
        out.print(table)
        out.print(f"{report['ports_checked']} ports on {len(report['hosts'])} host(s): "
                  f"{len(report['open'])} open, {report['high_risk_open']} high-risk")
    if report["high_risk_open"]:
        raise typer.Exit(1)


def tls(
    ctx: typer.Context, url: str,
    ca: Annotated[Path | None, typer.Option(help="PEM CA bundle to verify against")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Protocols, cipher suites, certificate, expiry and key type (SM2 included) of a TLS
    endpoint. Exit 1 on a high or critical finding."""
    try:
        report = scan_tls(url, allowed=_allowed(ctx), ca=str(ca) if ca else None)
    except ScannerError as exc:
        raise _fail(exc) from exc
    _record(ctx, "tls", report)
    if as_json:
        _print_json(report)
    else:
        for name, p in report["protocols"].items():
            out.print(f"{name:8} {'yes ' + str(p.get('cipher')) if p['negotiated'] else 'no'}")
        out.print(f"certificate: {report.get('certificate')}")
        for f in report["findings"]:
            out.print(f"[{f['severity']}] {f['finding']}")
    if any(f["severity"] in ("high", "critical") for f in report["findings"]):
        raise typer.Exit(1)


def passwords(
    ctx: typer.Context,
    max_guesses: Annotated[int, typer.Option(help="candidates per account")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Weak, reused or policy-violating local credentials (verifiers only; no plaintext is
    stored or printed). Exit 1 on a finding."""
    if providers.credentials is None:
        raise _fail(RuntimeError("no credential source is configured"))
    report = scan_credentials(providers.credentials(ctx.obj), max_guesses=max(1, min(max_guesses, 200)))
    _record(ctx, "passwords", report)
    if as_json:
        _print_json(report)
    else:
        for f in report["findings"]:
            out.print(f"[{f['severity']}] {f['account']}: {f['finding']}")
        out.print(f"{report['checked']} credentials checked, {report['weak']} weak")
    if report["findings"]:
        raise typer.Exit(1)


def coverage(
    ctx: typer.Context,
    idle_days: Annotated[int, typer.Option(help="no traffic for this many days = finding")] = 30,
    expiring_days: Annotated[int, typer.Option(help="grants/consents expiring within this many days")] = 7,
    as_json: JsonOpt = False,
) -> None:
    """Routes without policy, datasets without owner or classification, idle interfaces,
    expired or expiring grants and consents, fields whose sampled content is personal data
    while the catalogue flags or classifies them lower."""
    from ztgw.policies.bundle import load_bundle
    from ztgw.policies.errors import PolicyError

    if providers.datasets is None:
        raise _fail(RuntimeError("no dataset catalogue is configured"))
    try:
        bundle = load_bundle(Path(ctx.obj.bundle_path))
    except (PolicyError, OSError) as exc:
        err.print(f"policy bundle not readable ({exc}); policy coverage not checked")
        bundle = None
    grants = sampled = None
    try:
        grants = list(providers.grants(ctx.obj)) if providers.grants is not None else None
    except Exception as exc:  # grants tables missing (older home): the rest is still checked
        err.print(f"grants not readable ({type(exc).__name__}); grant expiry not checked")
    try:
        sampled = list(providers.sampled_pii(ctx.obj)) if providers.sampled_pii is not None else None
    except Exception as exc:
        err.print(f"sampled PII findings not readable ({type(exc).__name__}); not checked")
    report = scan_coverage(providers.datasets(ctx.obj), bundle, ctx.obj.audit_settings().db_path,
                           idle_days=max(1, idle_days), grants=grants,
                           expiring_days=max(0, min(expiring_days, 365)), sampled=sampled)
    _record(ctx, "coverage", report)
    if as_json:
        _print_json(report)
    else:
        for f in report["findings"]:
            where = f["dataset"] + (f".{f['field']}" if f.get("field") else "")
            ref = f" ({f.get('grant') or f.get('consent')})" if f.get("grant") or f.get("consent") else ""
            out.print(f"[{f['severity']}] {where}{ref}: {f['finding']}", markup=False)
        out.print(f"{len(report['datasets'])} datasets, {len(report['findings'])} findings")


# --- drills ---------------------------------------------------------------------------------
@drill_app.command("simulate")
def drill_simulate(
    ctx: typer.Context,
    base: Annotated[str | None, typer.Option(help="gateway URL (loopback); default from settings")] = None,
    client_id: Annotated[str, typer.Option(help="a confidential client the drill may use")] = "demo-police",
    client_secret_stdin: Annotated[bool, typer.Option(help="read the client secret from stdin "
                                                      "(else ZTGW_DRILL_CLIENT_SECRET)")] = False,
    victim: Annotated[str, typer.Option(help="account attacked by the brute force")] = "zhangwei",
    dataset_path: Annotated[str, typer.Option(help="route attacked")] = "/api/population/persons",
    only: Annotated[list[str] | None, typer.Option(help="run only these attacks")] = None,
    exfil_pages: Annotated[int, typer.Option(help="pages read by the exfiltration step")] = 8,
    wait: Annotated[float, typer.Option(help="seconds to wait for the alerts")] = 20.0,
    as_json: JsonOpt = False,
) -> None:
    """Run the scripted attack campaign and report what was detected, how fast, and the
    responses taken. Exit 1 when an attack was missed."""
    from .drill import Campaign, DrillTarget, wait_for_alerts

    secret = sys.stdin.readline().strip() if client_secret_stdin else os.environ.get(
        "ZTGW_DRILL_CLIENT_SECRET", "")
    if not secret:
        raise _fail(ValueError("give the client secret on stdin (--client-secret-stdin) or in "
                               "ZTGW_DRILL_CLIENT_SECRET"))
    url = base or f"http://127.0.0.1:{getattr(ctx.obj, 'port', 8080)}"
    try:
        camp = Campaign(DrillTarget(url, client_id, secret, victim=victim, dataset_path=dataset_path,
                                    allowed=_allowed(ctx)),
                        exfil_pages=max(1, min(exfil_pages, 100)))
    except ScannerError as exc:
        raise _fail(exc) from exc
    try:
        attacks = camp.run(only)
    except ScannerError as exc:
        raise _fail(exc) from exc
    finally:
        camp.close()
    result = wait_for_alerts(ctx.obj.audit_settings().db_path, attacks, timeout=max(0.0, min(wait, 300)))
    result["target"] = url
    result["finished"] = datetime.now(UTC).isoformat()
    drills = Path(ctx.obj.home) / "detection" / "drills"
    drills.mkdir(parents=True, exist_ok=True)
    (drills / f"drill-{int(time.time())}.json").write_bytes(
        orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS))
    if as_json:
        _print_json(result)
    else:
        table = Table("attack", "requests", "detected", "time to detect (s)", "rules", "responses")
        for r in result["attacks"]:
            table.add_row(r["attack"], str(r["requests"]), "yes" if r["detected"] else "[red]MISSED",
                          str(r["time_to_detect_s"] or ""), ", ".join(r["rules"])[:60],
                          ", ".join(f"{x['action']} {x['target']}" for x in r["responses"])[:60])
        out.print(table)
        out.print(f"detected {result['detected']} of {len(result['attacks'])}")
    if result["missed"]:
        raise typer.Exit(1)


@drill_app.command("report")
def drill_report(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="ISO time or age (24h, 7d)")] = "24h",
    output: Annotated[Path, typer.Option("--out", help="HTML file to write")] = Path("drill-report.html"),
    as_json: JsonOpt = False,
) -> None:
    """The debrief: an HTML report with charts (timeline, attacks by type, detected/missed,
    responses, time to detect, posture findings)."""
    from .report import build_report

    try:
        summary = build_report(ctx.obj, since, output)
    except (ScannerError, ValueError) as exc:
        raise _fail(exc) from exc
    _print_json(summary) if as_json else out.print(f"wrote {output}")
