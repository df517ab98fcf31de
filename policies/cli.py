"""``ztgw policy …``: authoring tools that need no running gateway.

:func:`build_app` takes hooks so the composition root can supply the active bundle path and
resolve subjects and datasets from the directory and catalogue; without hooks, everything comes
from the command line.  Exit codes: 0 ok, 1 a check failed (tests, signature), 2 bad input.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from ztgw.crypto.errors import CryptoError
from ztgw.crypto.sm2 import generate_key, load_private_key, load_public_key

from .bundle import load_bundle
from .domain import Resource, Subject
from .engine import CompiledPolicy, casbin_export, decision_dict
from .errors import BundleError, BundleSignatureError
from .signing import SIGNATURE_FILE, load_verified_bundle, sign_bundle, signer_id, verify_bundle
from .testing import env_from, resource_from, run_dir, subject_from


@dataclass
class Hooks:
    """What the composition root knows: ``ctx.obj`` is passed to each."""

    default_bundle: Callable[[Any], Path] | None = None
    trusted_keys: Callable[[Any], list[Path]] | None = None
    subject: Callable[[Any, str], Subject | None] | None = None
    resource: Callable[[Any, str], Resource | None] | None = None
    datasets: Callable[[Any], list[Resource]] | None = None
    principals: Callable[[Any], list[Subject]] | None = None


def _print_json(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _kv(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _fail(f"{what} takes KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _safe(hook: Callable[..., Any] | None, *args: Any) -> Any:
    """Call a directory/catalogue hook; if the store cannot be read, say so and go on without."""
    if hook is None:
        return None
    try:
        return hook(*args)
    except Exception as exc:
        typer.echo(f"warning: directory/catalogue unavailable ({type(exc).__name__}); "
                   "using the command line only", err=True)
        return None


def build_app(hooks: Hooks | None = None) -> typer.Typer:
    hooks = hooks or Hooks()
    app = typer.Typer(help="Policy bundles: test, explain, sign, verify, query.",
                      no_args_is_help=True)

    def bundle_path(ctx: typer.Context, given: Path | None) -> Path:
        if given is not None:
            return given
        if hooks.default_bundle is not None:
            return hooks.default_bundle(ctx.obj)
        raise _fail("name the bundle with --bundle")

    def compiled(ctx: typer.Context, given: Path | None) -> CompiledPolicy:
        try:
            return CompiledPolicy(load_bundle(bundle_path(ctx, given)))
        except BundleError as exc:
            raise _fail(f"invalid bundle: {exc}") from exc

    def trusted(ctx: typer.Context, pubkeys: list[Path] | None) -> list[Any]:
        paths = list(pubkeys or ())
        if not paths and hooks.trusted_keys is not None:
            paths = hooks.trusted_keys(ctx.obj)
        if not paths:
            raise _fail("name the trusted public key(s) with --pubkey")
        try:
            return [load_public_key(p.read_bytes()) for p in paths]
        except (OSError, CryptoError) as exc:
            raise _fail(f"cannot load public key: {exc}") from exc

    @app.command("test")
    def test_cmd(path: Annotated[Path, typer.Argument(help="bundle folder or folder of test files")],
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Run YAML test cases (given → expected decision and obligations)."""
        try:
            results = run_dir(path)
        except BundleError as exc:
            raise _fail(f"invalid bundle or tests: {exc}") from exc
        failed = [r for r in results if not r.passed]
        if as_json:
            _print_json({"passed": len(results) - len(failed), "failed": len(failed),
                         "cases": [r.as_dict() for r in results]})
        else:
            for r in results:
                typer.echo(f"{'PASS' if r.passed else 'FAIL'}  {r.file}: {r.name}")
                for f in r.failures:
                    typer.echo(f"      {f}")
            typer.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
        if failed:
            raise typer.Exit(1)

    @app.command("lint")
    def lint_cmd(ctx: typer.Context,
                 bundle: Annotated[Path | None, typer.Argument(help="bundle folder")] = None,
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Load and compile a bundle; report what it holds."""
        p = compiled(ctx, bundle)
        out = {"bundle": p.bundle.name, "version": p.bundle.version, "rules": len(p.rules),
               "deny_rules": sum(c.deny for c in p.rules), "role_links": len(p.bundle.role_links)}
        _print_json(out) if as_json else typer.echo(
            f"{out['bundle']} {out['version']}: {out['rules']} rules "
            f"({out['deny_rules']} deny), {out['role_links']} role links — OK")

    @app.command("explain")
    def explain_cmd(
        ctx: typer.Context,
        subject: Annotated[str, typer.Option(help="client:ID or user:NAME")],
        resource: Annotated[str, typer.Option(help="dataset id, e.g. population.persons")],
        action: Annotated[str, typer.Option(help="read|write|delete|admin")] = "read",
        client: Annotated[str | None, typer.Option(help="the application a user acts through")] = None,
        role: Annotated[list[str] | None, typer.Option(help="role (adds to the directory's)")] = None,
        dept: Annotated[str | None, typer.Option(help="department")] = None,
        clearance: Annotated[str | None, typer.Option(help="一般/重要/核心")] = None,
        attr: Annotated[list[str] | None, typer.Option(help="subject attribute K=V")] = None,
        classification: Annotated[str | None, typer.Option(help="dataset classification")] = None,
        owner: Annotated[str | None, typer.Option(help="dataset owner department")] = None,
        record: Annotated[str | None, typer.Option(help="record id")] = None,
        env: Annotated[list[str] | None, typer.Option(
            help="context K=V: time, zone, acr, risk, device, source_ip")] = None,
        bundle: Annotated[Path | None, typer.Option(help="bundle (default: the active one)")] = None,
        as_json: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Show the decision, the rules that matched and the conditions that failed."""
        p = compiled(ctx, bundle)
        known = _safe(hooks.subject, ctx.obj, subject)
        try:
            base = ({"id": known.id, "client_id": known.client_id, "roles": sorted(known.roles),
                     "department": known.department, "clearance": int(known.clearance),
                     "attributes": dict(known.attributes)} if known else {"id": subject})
            base["roles"] = sorted({*base.get("roles", ()), *(role or ())})
            if client is not None:
                base["client_id"] = client
            if dept is not None:
                base["department"] = dept
            if clearance is not None:
                base["clearance"] = clearance
            base["attributes"] = {**base.get("attributes", {}), **_kv(attr, "--attr")}
            sub = subject_from(base)
            known_res = _safe(hooks.resource, ctx.obj, resource)
            res = known_res or resource_from({"dataset": resource})
            res = resource_from({
                "dataset": res.dataset,
                "classification": classification or int(res.classification),
                "owner_department": owner if owner is not None else res.owner_department,
                "record_id": record, "fields": {k: int(v) for k, v in res.fields.items()},
                "attributes": dict(res.attributes)})
            envd: dict[str, Any] = _kv(env, "--env")
            if "risk" in envd:
                envd["risk"] = int(envd["risk"])
            e = env_from(envd) if "time" in envd else env_from({**envd, "time": _now()})
        except (BundleError, ValueError) as exc:
            raise _fail(f"invalid input: {exc}") from exc
        ex = p.explain(sub, res, action, e)
        if as_json:
            _print_json({**ex.as_dict(), "subject": sub.id, "action": action,
                         "known_subject": known is not None})
            return
        d = ex.decision
        typer.echo(f"{d.effect.upper()}: {d.reason}  [{d.ruleset} {d.ruleset_version}]")
        for o in d.obligations:
            typer.echo(f"  obligation {o.type}: {orjson.dumps(dict(o.params)).decode()}")
        typer.echo(f"subject keys: {', '.join(ex.subject_keys)}")
        for t in ex.rules:
            mark = "applied" if t.applied else (
                "subject not matched" if not t.subject_matched else "conditions failed")
            typer.echo(f"  {t.effect:<5} {t.rule_id}: {mark}")
            for f in t.failed_conditions:
                typer.echo(f"        failed: {f}")

    @app.command("who-can")
    def who_can(ctx: typer.Context,
                dataset: Annotated[str, typer.Argument(help="dataset id")],
                action: Annotated[str, typer.Option()] = "read",
                bundle: Annotated[Path | None, typer.Option()] = None,
                as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """The subjects (and role members) that may act on a dataset, with conditions; with a
        directory, also the known applications and users it covers."""
        p = compiled(ctx, bundle)
        entries = p.subjects_for(dataset, action)
        known = p.principals_for(dataset, action, _safe(hooks.principals, ctx.obj) or [])
        if as_json:
            _print_json({"dataset": dataset, "action": action, "grants": entries,
                         "principals": known})
            return
        for e in entries:
            via = f" (members: {', '.join(e['via_members'])})" if e["via_members"] else ""
            cond = f" when {'; '.join(e['conditions'])}" if e["conditions"] else ""
            typer.echo(f"{e['subject']}{via} by {e['rule_id']}{cond}")
        for k in known:
            cond = f" when {'; '.join(k['conditions'])}" if k["conditions"] else ""
            veto = f" unless {', '.join(k['unless_denied_by'])}" if k["unless_denied_by"] else ""
            typer.echo(f"  directory: {k['subject']} by {k['rule_id']}{cond}{veto}")

    @app.command("what-can")
    def what_can(ctx: typer.Context,
                 subject: Annotated[str, typer.Option(help="client:ID or user:NAME")],
                 action: Annotated[str, typer.Option()] = "read",
                 role: Annotated[list[str] | None, typer.Option()] = None,
                 bundle: Annotated[Path | None, typer.Option()] = None,
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """The catalogued datasets (and field masks) a subject may access now."""
        p = compiled(ctx, bundle)
        known = _safe(hooks.subject, ctx.obj, subject)
        sub = known or subject_from({"id": subject, "roles": role or []})
        if role and known:
            sub = subject_from({"id": known.id, "client_id": known.client_id,
                                "roles": sorted({*known.roles, *role}),
                                "department": known.department,
                                "clearance": int(known.clearance),
                                "attributes": dict(known.attributes)})
        datasets = _safe(hooks.datasets, ctx.obj) or []
        if not datasets:
            names = sorted({d for r in p.bundle.rules for d in r.datasets if "*" not in d})
            datasets = [resource_from(n) for n in names]
        rows = [{"dataset": r.dataset, **decision_dict(d)}
                for r, d in p.accessible(sub, datasets, action, env_from({"time": _now()}))]
        if as_json:
            _print_json({"subject": sub.id, "action": action, "datasets": rows})
            return
        for row in rows:
            masks = [o for o in row["obligations"] if o["type"] == "mask"]
            masked = sorted(masks[0]["fields"]) if masks else []
            typer.echo(f"{row['dataset']}  by {row['rule_id']}  masked: {', '.join(masked) or '-'}")

    @app.command("export-casbin")
    def export_casbin(ctx: typer.Context,
                      out: Annotated[Path, typer.Option(help="folder for model.conf and policy.csv")],
                      bundle: Annotated[Path | None, typer.Option()] = None,
                      as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Write the bundle as casbin model.conf + policy.csv (fail-closed projection)."""
        p = compiled(ctx, bundle)
        try:
            model, rows, omitted = casbin_export(p.bundle)
        except ValueError as exc:
            raise _fail(str(exc)) from exc
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.conf").write_text(model, encoding="utf-8")
        (out / "policy.csv").write_text(rows, encoding="utf-8")
        doc = {"model": str(out / "model.conf"), "policy": str(out / "policy.csv"),
               "omitted_conditional_allows": omitted}
        _print_json(doc) if as_json else typer.echo(
            f"wrote {doc['model']} and {doc['policy']}"
            + (f"; left out conditional allow rules {omitted}" if omitted else ""))

    @app.command("keygen")
    def keygen(out: Annotated[Path, typer.Option(help="folder for the key pair")],
               name: Annotated[str, typer.Option()] = "policy-signing",
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Create an SM2 key pair for signing bundles (private key mode 0600)."""
        out.mkdir(parents=True, exist_ok=True)
        key_path, pub_path = out / f"{name}.key.pem", out / f"{name}.pub.pem"
        if key_path.exists():
            raise _fail(f"{key_path} exists; refusing to overwrite a signing key")
        key = generate_key()
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key.to_pem())
        pub_path.write_bytes(key.public_key().to_pem())
        doc = {"private_key": str(key_path), "public_key": str(pub_path),
               "signer": signer_id(key.public_key())}
        _print_json(doc) if as_json else typer.echo(f"wrote {key_path} and {pub_path}")

    @app.command("sign")
    def sign_cmd(bundle: Annotated[Path, typer.Argument(help="bundle folder")],
                 key: Annotated[Path, typer.Option(help="SM2 private key (PEM)")],
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Sign every file of a bundle with SM2 (writes bundle.sig)."""
        try:
            info = sign_bundle(bundle, load_private_key(key.read_bytes()))
        except (OSError, CryptoError) as exc:
            raise _fail(f"cannot sign: {exc}") from exc
        except BundleError as exc:
            raise _fail(f"invalid bundle: {exc}") from exc
        doc = {"bundle": str(bundle), "signature": str(bundle / SIGNATURE_FILE),
               "signer": info.signer, "files": sorted(info.files)}
        _print_json(doc) if as_json else typer.echo(
            f"signed {len(info.files)} files of {bundle} (signer {info.signer[:16]}…)")

    @app.command("verify")
    def verify_cmd(ctx: typer.Context,
                   bundle: Annotated[Path, typer.Argument(help="bundle folder")],
                   pubkey: Annotated[list[Path] | None, typer.Option(help="trusted key (PEM)")] = None,
                   as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Verify a bundle's SM2 signature and that it loads (exit 1 if it does not verify)."""
        keys = trusted(ctx, pubkey)
        try:
            info = verify_bundle(bundle, keys)
            load_verified_bundle(bundle, keys)
        except BundleSignatureError as exc:
            if as_json:
                _print_json({"bundle": str(bundle), "valid": False, "error": str(exc)})
            else:
                typer.echo(f"NOT VALID: {exc}", err=True)
            raise typer.Exit(1) from exc
        except (OSError, BundleError) as exc:
            raise _fail(f"invalid bundle: {exc}") from exc
        doc = {"bundle": str(bundle), "valid": True, "signer": info.signer,
               "files": sorted(info.files)}
        _print_json(doc) if as_json else typer.echo(f"valid: signed by {info.signer[:16]}…")

    return app


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat()


app = build_app()
