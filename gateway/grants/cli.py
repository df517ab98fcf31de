"""``ztgw requests …``, ``ztgw grants …``, ``ztgw consent …`` and ``ztgw datasets …``.

The same operations as the admin API, on the home's database, through the same service and its
checks: an approval is made ``--as`` a directory user who must hold the approver role in the
dataset's owner department (the CLI has no login of its own, so it cannot be more powerful than
the console).  Every change reaches the audit trail through the identity outbox the running
gateway relays.  ``ztgw consent verify RECEIPT`` needs nothing but the receipt and a public key.

Exit codes: 0 ok, 1 a check failed (bad receipt signature), 2 bad usage or input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from ztgw.crypto.errors import CryptoError
from ztgw.crypto.sm2 import load_public_key
from ztgw.policies.domain import Classification, Subject

from .receipts import PUBLIC_KEY_FILE, ReceiptInvalid, verify_receipt

requests_app = typer.Typer(help="Access requests to data owners (file, list, approve, reject).",
                           no_args_is_help=True)
grants_app = typer.Typer(help="Grants of datasets (list, show, narrow, revoke).", no_args_is_help=True)
consent_app = typer.Typer(help="Citizens' consents (verify a receipt offline, list).",
                          no_args_is_help=True)
datasets_app = typer.Typer(help="The dataset catalogue (list, show, register, confirm a field).",
                           no_args_is_help=True)

err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document")]


def _print_json(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(message)
    return typer.Exit(code)


def _grants(ctx: typer.Context) -> Any:
    """The service on the home's database; audit events go through the identity outbox."""
    import sqlalchemy as sa

    from ..catalogue import Catalogue
    from ..identity.directory import Directory
    from ..identity.store import create_tables, identity_audit_outbox, now
    from . import Grants

    settings = ctx.obj
    if settings.directory_url:
        directory = Directory.open_url(settings.directory_url.get_secret_value())
    elif not settings.db_path.exists():
        raise _fail(f"{settings.home} is not initialised: run `ztgw init` first")
    else:
        directory = Directory.open(settings.db_path)
    create_tables(directory.engine)

    def emit(doc: dict[str, Any]) -> None:
        doc.setdefault("event", {})["provider"] = "ztgw-cli"
        with directory.engine.begin() as conn:
            conn.execute(sa.insert(identity_audit_outbox).values(
                created_at=now(), doc=orjson.dumps(doc).decode()))

    return Grants(directory, Catalogue(directory), settings.keys_dir, emit)


def _actor(grants: Any, username: str) -> Subject:
    u = grants.service.directory.get_user(username)
    if u is None or not u.enabled:
        raise _fail(f"no enabled user {username!r}")
    return Subject(id=f"user:{u.username}", kind="user", name=u.username, client_id="ztgw-cli",
                   roles=frozenset(u.roles), department=u.department, clearance=u.clearance,
                   attributes=dict(u.attributes))


def _iso(t: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from .service import GrantError

    try:
        return fn(*args, **kwargs)
    except GrantError as exc:
        raise _fail(f"refused ({exc.code}): {exc.message}") from exc


# --- requests ------------------------------------------------------------------------------
@requests_app.command("list")
def requests_list(ctx: typer.Context,
                  status: Annotated[str | None, typer.Option(help="pending/approved/rejected")] = None,
                  dataset: Annotated[str | None, typer.Option()] = None,
                  as_json: JsonOpt = False) -> None:
    """Access requests, newest first."""
    g = _grants(ctx)
    items = g.store.list_requests(datasets=[dataset] if dataset else None, status=status)
    if as_json:
        _print_json({"requests": [r.as_dict() for r in items]})
        return
    for r in items:
        ok = sum(1 for a in r.approvals if a.decision == "approve")
        print(f"{r.id}  {r.status:9} {ok}/{r.required_approvals}  {r.dataset:32} {r.grantee}  "
              f"{','.join(r.fields)}  {r.purpose}")


@requests_app.command("show")
def requests_show(ctx: typer.Context, request_id: str, as_json: JsonOpt = True) -> None:
    """One request with its approvals."""
    _print_json(_run(_grants(ctx).service.get_request, request_id).as_dict())


@requests_app.command("create")
def requests_create(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="dataset id")],
    field: Annotated[list[str], typer.Option("--field", help="a field needed (repeat)")],
    purpose: Annotated[str, typer.Option(help="why the data is needed")],
    days: Annotated[int, typer.Option(help="period in days from now")] = 30,
    client: Annotated[str | None, typer.Option(help="the application the grant is for")] = None,
    user: Annotated[str | None, typer.Option(help="…or the user it is for")] = None,
    row_field: Annotated[str | None, typer.Option(help="row scope: the field")] = None,
    row_value: Annotated[list[str] | None, typer.Option(help="row scope: a value (repeat)")] = None,
    rows_per_day: Annotated[int | None, typer.Option(help="daily record quota")] = None,
    as_json: JsonOpt = False,
) -> None:
    """File a request on behalf of an application (--client) or a user (--user)."""
    g = _grants(ctx)
    if (client is None) == (user is None):
        raise _fail("name exactly one of --client or --user")
    if client is not None:
        rec = g.service.directory.get_client(client)
        if rec is None or not rec.enabled:
            raise _fail(f"no enabled client {client!r}")
        requester = Subject(id=f"client:{client}", kind="client", name=client, client_id=client,
                            roles=frozenset(rec.roles), department=rec.department)
    else:
        requester = _actor(g, str(user))
    r = _run(g.service.create_request, requester, dataset=dataset, fields=field, purpose=purpose,
             days=days, row_field=row_field, row_values=row_value, rows_per_day=rows_per_day)
    if as_json:
        _print_json(r.as_dict())
    else:
        print(f"{r.id} pending ({r.required_approvals} approver(s) needed)")


def _decide(ctx: typer.Context, request_id: str, username: str, reason: str, how: str,
            as_json: bool) -> None:
    g = _grants(ctx)
    actor = _actor(g, username)
    fn = g.service.approve if how == "approve" else g.service.reject
    r = _run(fn, actor, request_id, reason)
    if as_json:
        _print_json(r.as_dict())
    else:
        print(f"{r.id} {r.status}" + (f" → grant {r.grant_id}" if r.grant_id else ""))


AsUser = Annotated[str, typer.Option("--as", help="the approver (a directory user)")]
Reason = Annotated[str, typer.Option(help="why (recorded in the audit trail)")]


@requests_app.command("approve")
def requests_approve(ctx: typer.Context, request_id: str, as_user: AsUser, reason: Reason,
                     as_json: JsonOpt = False) -> None:
    """Approve as an approver of the owner department (核心 data: two distinct approvers)."""
    _decide(ctx, request_id, as_user, reason, "approve", as_json)


@requests_app.command("reject")
def requests_reject(ctx: typer.Context, request_id: str, as_user: AsUser, reason: Reason,
                    as_json: JsonOpt = False) -> None:
    """Reject with a reason."""
    _decide(ctx, request_id, as_user, reason, "reject", as_json)


# --- grants --------------------------------------------------------------------------------
@grants_app.command("list")
def grants_list(ctx: typer.Context, dataset: Annotated[str | None, typer.Option()] = None,
                grantee: Annotated[str | None, typer.Option(help="client:ID or user:NAME")] = None,
                status: Annotated[str | None, typer.Option(help="active/revoked")] = None,
                as_json: JsonOpt = False) -> None:
    """Grants, newest first."""
    g = _grants(ctx)
    items = g.store.list_grants(datasets=[dataset] if dataset else None, grantee=grantee,
                                status=status)
    if as_json:
        _print_json({"grants": [x.as_dict() for x in items]})
        return
    for x in items:
        print(f"{x.id}  {x.status:8} {x.dataset:32} {x.grantee}  {','.join(x.fields)}  "
              f"until {_iso(x.expires_at)}")


@grants_app.command("show")
def grants_show(ctx: typer.Context, grant_id: str, as_json: JsonOpt = True) -> None:
    """One grant."""
    _print_json(_run(_grants(ctx).service.get_grant, grant_id).as_dict())


@grants_app.command("revoke")
def grants_revoke(ctx: typer.Context, grant_id: str, as_user: AsUser, reason: Reason,
                  as_json: JsonOpt = False) -> None:
    """Revoke: every gateway refuses the grantee's next request (within a second)."""
    g = _grants(ctx)
    x = _run(g.service.revoke, _actor(g, as_user), grant_id, reason)
    _print_json(x.as_dict()) if as_json else print(f"{x.id} {x.status}")


@grants_app.command("narrow")
def grants_narrow(
    ctx: typer.Context, grant_id: str, as_user: AsUser, reason: Reason,
    field: Annotated[list[str] | None, typer.Option("--field", help="keep this field (repeat)")] = None,
    row_value: Annotated[list[str] | None, typer.Option(help="keep this row value (repeat)")] = None,
    row_field: Annotated[str | None, typer.Option(help="row field for a new row scope")] = None,
    rows_per_day: Annotated[int | None, typer.Option()] = None,
    expires_at: Annotated[int | None, typer.Option(help="Unix time, earlier than now's end")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Narrow a grant: fields, rows, quota and period may only shrink."""
    g = _grants(ctx)
    x = _run(g.service.narrow, _actor(g, as_user), grant_id, reason, fields=field,
             row_values=row_value, row_field=row_field, rows_per_day=rows_per_day,
             expires_at=expires_at)
    _print_json(x.as_dict()) if as_json else print(f"{x.id} narrowed (version {x.version})")


# --- consent -------------------------------------------------------------------------------
@consent_app.command("verify")
def consent_verify(
    ctx: typer.Context,
    receipt: Annotated[Path, typer.Argument(help="the receipt JSON file ('-' for stdin)")],
    key: Annotated[Path | None, typer.Option(help="the signer's public key (PEM); default: "
                                                   "HOME/keys/" + PUBLIC_KEY_FILE)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a consent receipt's SM2 signature offline (exit 1 when it does not verify)."""
    key_path = key or (ctx.obj.keys_dir / PUBLIC_KEY_FILE)
    try:
        pub = load_public_key(key_path.read_bytes())
    except (OSError, CryptoError, ValueError) as exc:
        raise _fail(f"cannot read the public key {key_path}: {exc}") from exc
    try:
        text = sys.stdin.read() if str(receipt) == "-" else receipt.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read {receipt}: {exc}") from exc
    try:
        statement = verify_receipt(text, pub)
    except ReceiptInvalid as exc:
        if as_json:
            _print_json({"valid": False, "error": str(exc)})
        else:
            err.print(f"INVALID: {exc}")
        raise typer.Exit(1) from exc
    if as_json:
        _print_json({"valid": True, "key_id": pub.fingerprint().hex(), "receipt": statement})
    else:
        print(f"OK: consent {statement.get('consent_id')} — {statement.get('citizen')} authorised "
              f"{statement.get('client_id')} to read {statement.get('dataset')} "
              f"({statement.get('purpose')}) until {statement.get('expires_at')}")


@consent_app.command("list")
def consent_list(ctx: typer.Context, citizen: Annotated[str | None, typer.Option()] = None,
                 client: Annotated[str | None, typer.Option()] = None,
                 as_json: JsonOpt = False) -> None:
    """Consents (never the citizens' id numbers)."""
    items = _grants(ctx).store.list_consents(citizen=citizen, client_id=client)
    if as_json:
        _print_json({"consents": [c.as_dict() for c in items]})
        return
    for c in items:
        print(f"{c.id}  {c.status:8} {c.citizen:16} {c.client_id:20} {c.dataset}  {c.purpose}")


# --- datasets ------------------------------------------------------------------------------
@datasets_app.command("list")
def datasets_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The catalogue with classification and PI flags."""
    from .api import dataset_dict

    items = [dataset_dict(d) for d in _grants(ctx).service.catalogue.all()]
    if as_json:
        _print_json({"datasets": items})
        return
    for d in items:
        print(f"{d['dataset']:32} {d['classification']}  {d['owner_department'] or '-'}  "
              f"{d['route_prefix']}")


@datasets_app.command("show")
def datasets_show(ctx: typer.Context, dataset: str, as_json: JsonOpt = True) -> None:
    """One dataset: every field with its classification and PI flag."""
    from .api import dataset_dict

    _print_json(dataset_dict(_run(_grants(ctx).service.dataset, dataset)))


@datasets_app.command("register")
def datasets_register(ctx: typer.Context,
                      file: Annotated[Path, typer.Argument(help="dataset description (JSON)")],
                      as_json: JsonOpt = False) -> None:
    """Register (or replace) a dataset from a JSON description — the admin API's body:
    {dataset, title, route_prefix, upstream_url, owner_department, fields: {NAME:
    {classification, pi}}, key_field, subject_field, filter_fields}.  Restart (or reload) the
    gateway to route it."""
    from ..catalogue import CatalogueError, Dataset, PersonalInfo
    from .api import DatasetIn, dataset_dict

    try:
        body = DatasetIn.model_validate(json.loads(file.read_text(encoding="utf-8")))
        d = Dataset(dataset=body.dataset, title=body.title, route_prefix=body.route_prefix,
                    upstream_url=body.upstream_url, owner_department=body.owner_department,
                    fields={k: Classification.parse(v.classification) for k, v in body.fields.items()},
                    pi={k: PersonalInfo(v.pi) for k, v in body.fields.items()},
                    key_field=body.key_field, subject_field=body.subject_field,
                    filter_fields=frozenset(body.filter_fields))
        g = _grants(ctx)
        g.service.catalogue.register(d)
    except (OSError, ValueError, CatalogueError) as exc:
        raise _fail(f"cannot register: {exc}") from exc
    g.service._audit("cli", "dataset-registered", {"dataset": d.dataset,
                                                   "owner_department": d.owner_department})
    _print_json(dataset_dict(d)) if as_json else print(f"registered {d.dataset}")


@datasets_app.command("confirm")
def datasets_confirm(ctx: typer.Context, dataset: str, field: str, as_user: AsUser,
                     classification: Annotated[str, typer.Option(help="一般/重要/核心")],
                     pi: Annotated[str, typer.Option(help="none/personal/sensitive")] = "none",
                     as_json: JsonOpt = False) -> None:
    """The owner confirms a field's classification and PI flag (e.g. a `ztgw scan pii` proposal)."""
    from .api import dataset_dict

    g = _grants(ctx)
    d = _run(g.service.confirm_field, _actor(g, as_user), dataset, field, classification, pi)
    _print_json(dataset_dict(d)) if as_json else print(f"{dataset}.{field} confirmed")



@datasets_app.command("propose")
def datasets_propose(
    ctx: typer.Context, dataset: str,
    sample: Annotated[Path, typer.Argument(help="a sample of the dataset's records (CSV/JSON/NDJSON)")],
    apply: Annotated[bool, typer.Option("--apply", help="confirm the proposals (needs --as)")] = False,
    as_user: Annotated[str | None, typer.Option("--as", help="the owner's approver")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Propose classification and PI flags from `ztgw scan pii` over a sample; never lowers a
    field.  The owner confirms with --apply --as USER (or in the console's 数据目录)."""
    from ..protection.formats import FileFormatError, iter_records, sniff
    from ..protection.scan import scan_records
    from .proposals import propose

    g = _grants(ctx)
    d = _run(g.service.dataset, dataset)
    try:
        report = scan_records(iter_records(sample, sniff(sample)))
    except (OSError, FileFormatError) as exc:
        raise _fail(f"cannot scan {sample}: {exc}") from exc
    proposals = propose(d, report.to_dict()["fields"], report.rows)
    if apply:
        if not as_user:
            raise _fail("--apply needs --as USER (an approver of the owner department)")
        actor = _actor(g, as_user)
        for p in proposals:
            _run(g.service.confirm_field, actor, dataset, p["field"],
                 p["proposed"]["classification"], p["proposed"]["pi"])
    if as_json:
        _print_json({"dataset": dataset, "rows": report.rows, "applied": apply,
                     "proposals": proposals})
        return
    for p in proposals:
        print(f"{p['field']:24} {p['detector']:14} {p['current']['classification']}/"
              f"{p['current']['pi']} → {p['proposed']['classification']}/{p['proposed']['pi']}")
    print(f"{len(proposals)} proposal(s){' applied' if apply else ''}")
