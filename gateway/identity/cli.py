"""``ztgw users …``, ``ztgw clients …`` and ``ztgw sessions …`` (INTERFACES.md "CLI").

Exit codes: 0 ok, 1 a check failed, 2 bad usage or input.  ``--json`` prints one JSON document.
Passwords are read from stdin (``--password-stdin``) or prompted for, never taken as arguments.
"""

from __future__ import annotations

import re
import secrets
import sys
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from ztgw.policies.domain import Classification

users_app = typer.Typer(help="Users of the directory.", no_args_is_help=True)
clients_app = typer.Typer(help="Applications (OAuth clients).", no_args_is_help=True)
sessions_app = typer.Typer(help="SSO sessions (list, end).", no_args_is_help=True)
keys_app = typer.Typer(help="Token-signing keys (list, rotate, retire).", no_args_is_help=True)

err = Console(stderr=True)
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{1,127}")
CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,127}")
FORBIDDEN_GRANTS = frozenset({"password", "implicit", "token"})  # RFC 9700 §2.4, §2.1.2
KNOWN_GRANTS = frozenset({"authorization_code", "refresh_token", "client_credentials"})


def _print_json(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(message)
    return typer.Exit(code)


def _settings(ctx: typer.Context) -> Any:
    return ctx.obj


def _directory(settings: Any) -> Any:
    from .directory import Directory

    if settings.directory_url:
        return Directory.open_url(settings.directory_url.get_secret_value())
    if not settings.db_path.exists():
        raise _fail(f"{settings.home} is not initialised: run `ztgw init` first")
    return Directory.open(settings.db_path)


def _store(settings: Any) -> Any:
    from .store import OAuthStore

    return OAuthStore(_directory(settings).engine)


def _session_manager(settings: Any) -> Any:
    """The same session logic as the server, so ending a session here also revokes its token
    families and sends back-channel logout tokens to its applications."""
    from .keys import KeyRing
    from .sessions import SessionManager
    from .tokens import TokenIssuer

    directory = _directory(settings)
    issuer = TokenIssuer(KeyRing.load_or_create(settings.keys_dir), settings.effective_issuer,
                         settings.data_audience, settings.access_token_ttl)
    return SessionManager(_store(settings), directory, issuer, settings.session_idle_timeout,
                          settings.session_max_age, settings.effective_issuer.startswith("https://"))


def _hasher(settings: Any) -> Any:
    from .client_secrets import SecretHasher, load_or_create_pepper

    if settings.secret_pepper:
        return SecretHasher(bytes.fromhex(settings.secret_pepper.get_secret_value()))
    return SecretHasher(load_or_create_pepper(settings.keys_dir))


def _audit(settings: Any, action: str, target: str | None = None, reason: str | None = None,
           details: dict[str, Any] | None = None) -> None:
    """Record an admin action in the audit trail (through the outbox the gateway relays;
    auditing.py).  Public facts only: never a password, secret or personal attribute value."""
    from .auditing import AdminAudit

    try:
        AdminAudit(_directory(settings).engine).record(action, target=target, reason=reason,
                                                        details=details)
    except Exception as exc:
        raise _fail(f"{action}: done, but the audit record could not be written "
                    f"({type(exc).__name__}); report this to the security officer", 1) from exc


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


# --- users ----------------------------------------------------------------------------------
@users_app.command("add")
def users_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="user name (login)")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin",
                                                 help="read the password from stdin")] = False,
    no_password: Annotated[bool, typer.Option("--no-password",
                                              help="no password (certificate or federated login only)")
                           ] = False,
    attr: Annotated[list[str] | None, typer.Option(help="attribute K=V (department, clearance, "
                                                   "roles=a,b, display_name, anything else)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a user; attributes feed the policy engine."""
    from .authn import password_problems
    from .directory import UserRecord

    settings = _settings(ctx)
    if not USERNAME.fullmatch(name):
        raise _fail("user name: 2-128 characters of A-Z a-z 0-9 . _ @ -")
    attrs: dict[str, str] = {}
    for item in attr or []:
        if "=" not in item:
            raise _fail(f"--attr {item!r}: expected K=V")
        k, v = item.split("=", 1)
        attrs[k.strip()] = v.strip()
    try:
        clearance = Classification.parse(attrs.pop("clearance", "一般"))
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    roles = tuple(r for r in attrs.pop("roles", "").split(",") if r)
    groups = [g for g in attrs.pop("groups", "").split(",") if g]
    department = attrs.pop("department", None)
    display_name = attrs.pop("display_name", None)
    directory = _directory(settings)
    if directory.get_user(name) is not None:
        raise _fail(f"user {name} already exists")
    password_hash = None
    if not no_password:
        password = _read_password(password_stdin)
        problems = password_problems(password, name)
        if problems:
            raise _fail("password refused: " + "；".join(problems))
        from ztgw.crypto.passwords import hash_password

        password_hash = hash_password(password, iterations=settings.password_iterations)
    attributes: dict[str, Any] = dict(attrs)
    if groups:
        attributes["groups"] = groups  # a list: the policy engine and the `groups` claim read it
    directory.put_user(UserRecord(username=name, display_name=display_name,
                                  password_hash=password_hash, department=department,
                                  clearance=clearance, roles=roles, attributes=attributes))
    out = {"username": name, "department": department, "clearance": clearance.label,
           "roles": list(roles), "attributes": attributes, "password": password_hash is not None}
    _audit(settings, "user-added", target=name, details={
        "department": department, "clearance": clearance.label, "roles": list(roles),
        "attribute_names": sorted(attributes), "password": password_hash is not None})
    if as_json:
        _print_json(out)
    else:
        err.print(f"user {name} created")


@users_app.command("list")
def users_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List users (never their password verifiers)."""
    rows = [{"username": u.username, "display_name": u.display_name, "department": u.department,
             "clearance": u.clearance.label, "roles": list(u.roles), "enabled": u.enabled}
            for u in _directory(_settings(ctx)).list_users()]
    if as_json:
        _print_json({"users": rows})
    else:
        for r in rows:
            typer.echo(f"{r['username']:<20} {r['display_name'] or '':<10} {r['department'] or '':<14}"
                       f" {r['clearance']}  roles={','.join(r['roles'])}"
                       f"{'' if r['enabled'] else '  (disabled)'}")


def _set_enabled(ctx: typer.Context, name: str, enabled: bool) -> None:
    settings = _settings(ctx)
    if not _directory(settings).set_user_enabled(name, enabled):
        raise _fail(f"no user {name}")
    ended: list[str] = []
    if not enabled:
        manager = _session_manager(settings)
        for s in manager.store.list_sessions(name):
            manager.end(s.sid, reason="user_disabled", wait=True)
            ended.append(s.sid)
    _audit(settings, "user-enabled" if enabled else "user-disabled", target=name,
           details={"sessions_ended": ended} if ended else None)
    err.print(f"user {name} {'enabled' if enabled else 'disabled'}")


@users_app.command("disable")
def users_disable(ctx: typer.Context, name: str) -> None:
    """Disable a user: sessions end, refresh tokens die, the data plane refuses within 1 s."""
    _set_enabled(ctx, name, False)


@users_app.command("enable")
def users_enable(ctx: typer.Context, name: str) -> None:
    """Enable a disabled user."""
    _set_enabled(ctx, name, True)


@users_app.command("passwd")
def users_passwd(
    ctx: typer.Context, name: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False,
) -> None:
    """Set a user's password (checked against the password policy)."""
    from ztgw.crypto.passwords import hash_password

    from .authn import password_problems

    settings = _settings(ctx)
    directory = _directory(settings)
    if directory.get_user(name) is None:
        raise _fail(f"no user {name}")
    password = _read_password(password_stdin)
    problems = password_problems(password, name)
    if problems:
        raise _fail("password refused: " + "；".join(problems))
    directory.set_password_hash(name, hash_password(password, iterations=settings.password_iterations))
    _audit(settings, "user-password-changed", target=name)
    err.print(f"password of {name} changed")


@users_app.command("totp-enrol")
def users_totp_enrol(ctx: typer.Context, name: str,
                     as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Enrol a TOTP authenticator for a user (confirmed at once; prints the secret once)."""
    from . import totp
    from .client_secrets import load_or_create_pepper

    settings = _settings(ctx)
    if _directory(settings).get_user(name) is None:
        raise _fail(f"no user {name}")
    pepper = (bytes.fromhex(settings.secret_pepper.get_secret_value()) if settings.secret_pepper
              else load_or_create_pepper(settings.keys_dir))
    secret = totp.new_secret()
    _store(settings).totp_put(name, totp.SecretSealer(pepper).seal(name, secret), confirmed=True)
    _audit(settings, "totp-enrolled", target=name)  # the secret goes to stdout only
    out = {"username": name, "secret": secret, "otpauth_uri": totp.provisioning_uri(secret, name)}
    if as_json:
        _print_json(out)
    else:
        typer.echo(out["otpauth_uri"])


@users_app.command("totp-remove")
def users_totp_remove(ctx: typer.Context, name: str) -> None:
    """Remove a user's TOTP enrolment (e.g. a lost phone, after identity checks)."""
    settings = _settings(ctx)
    _store(settings).totp_delete(name)
    _audit(settings, "totp-removed", target=name)
    err.print(f"TOTP removed for {name}")


# --- clients --------------------------------------------------------------------------------
@clients_app.command("add")
def clients_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="display name")],
    redirect_uri: Annotated[list[str] | None, typer.Option(help="exact redirect URI")] = None,
    public: Annotated[bool, typer.Option(help="public client (no secret)")] = False,
    grant_type: Annotated[list[str] | None, typer.Option(help="allowed grant type")] = None,
    scope: Annotated[str, typer.Option(help="space-separated scopes")] = "",
    id_token_alg: Annotated[str, typer.Option(help="ID token signing alg: ES256, RS256, SM2")
                            ] = "RS256",  # noqa: S107
    role: Annotated[list[str] | None, typer.Option(help="role for the policy engine")] = None,
    department: Annotated[str | None, typer.Option(help="owning department")] = None,
    clearance: Annotated[str, typer.Option(help="一般/重要/核心")] = "一般",
    client_id: Annotated[str | None, typer.Option(help="choose the client id")] = None,
    backchannel_logout_uri: Annotated[str | None, typer.Option(
        help="OIDC back-channel logout URI")] = None,
    post_logout_redirect_uri: Annotated[list[str] | None, typer.Option(
        help="exact URI allowed after RP-initiated logout")] = None,
    third_party: Annotated[bool, typer.Option(help="ask users for consent")] = False,
    require_acr: Annotated[str | None, typer.Option(
        help="weakest sign-in this client accepts, e.g. urn:ztgw:acr:mfa")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register an application; prints client_id (and client_secret if confidential)."""
    from .client_secrets import new_client_secret
    from .directory import ClientRecord
    from .keys import KeyRing, canonical_alg

    settings = _settings(ctx)
    grants = tuple(grant_type or (["authorization_code", "refresh_token"] if public
                                  else ["client_credentials"]))
    forbidden = FORBIDDEN_GRANTS & set(grants)
    if forbidden:
        raise _fail(f"grant types {sorted(forbidden)} are not allowed (RFC 9700)")
    unknown = set(grants) - KNOWN_GRANTS
    if unknown:
        raise _fail(f"unknown grant types {sorted(unknown)}")
    if public and "client_credentials" in grants:
        raise _fail("a public client cannot use client_credentials")
    if "authorization_code" in grants and not redirect_uri:
        raise _fail("authorization_code needs at least one --redirect-uri")
    for uri in [*(redirect_uri or ()), *(post_logout_redirect_uri or ()),
                *([backchannel_logout_uri] if backchannel_logout_uri else [])]:
        if not re.match(r"^(https://|http://(127\.0\.0\.1|localhost|\[::1\])[:/])", uri) or "#" in uri:
            raise _fail(f"{uri}: URIs must be https (or http on loopback) without a fragment")
    from .oauth import ACR_LEVELS

    if require_acr is not None and require_acr not in ACR_LEVELS:
        raise _fail(f"--require-acr: one of {', '.join(sorted(ACR_LEVELS))}")
    cid = client_id or f"app-{secrets.token_hex(8)}"
    if not CLIENT_ID.fullmatch(cid):
        raise _fail("client id: 3-128 characters of A-Z a-z 0-9 . _ -")
    try:
        level = Classification.parse(clearance)
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    available = KeyRing.load_or_create(settings.keys_dir).algorithms
    id_token_alg = canonical_alg(id_token_alg)
    if id_token_alg not in available:
        raise _fail(f"--id-token-alg {id_token_alg}: this gateway signs with {', '.join(available)}")
    directory = _directory(settings)
    if directory.get_client(cid) is not None:
        raise _fail(f"client {cid} already exists")
    secret = None if public else new_client_secret()
    directory.put_client(ClientRecord(
        client_id=cid, name=name, secret_hash=_hasher(settings).hash(secret) if secret else None,
        public=public, redirect_uris=tuple(redirect_uri or ()), grant_types=grants, scope=scope,
        roles=tuple(role or ()), department=department, organization=department,
        clearance=level, id_token_alg=id_token_alg,
    ))
    if backchannel_logout_uri or post_logout_redirect_uri or third_party or require_acr:
        _store(settings).set_client_logout(cid, backchannel_logout_uri,
                                           tuple(post_logout_redirect_uri or ()), not third_party,
                                           min_acr=require_acr)
    _audit(settings, "client-added", target=cid, details={
        "client_id": cid, "public": public, "grant_types": list(grants), "scope": scope,
        "redirect_uris": list(redirect_uri or ()), "roles": list(role or ()),
        "clearance": level.label, "id_token_alg": id_token_alg, "third_party": third_party,
        "require_acr": require_acr})
    out: dict[str, Any] = {"client_id": cid, "name": name, "grant_types": list(grants)}
    if secret:
        out["client_secret"] = secret
    if as_json:
        _print_json(out)
    else:
        for k, v in out.items():
            typer.echo(f"{k}: {v}")


def _change_client(ctx: typer.Context, client_id: str, action: str, **changes: Any) -> Any:
    import dataclasses

    settings = _settings(ctx)
    directory = _directory(settings)
    record = directory.get_client(client_id)
    if record is None:
        raise _fail(f"no client {client_id}")
    if "secret_hash" in changes and record.public:
        raise _fail(f"{client_id} is a public client: it has no secret")
    directory.put_client(dataclasses.replace(record, **changes))
    _audit(settings, action, target=client_id)  # never the secret
    return settings


@clients_app.command("disable")
def clients_disable(ctx: typer.Context, client_id: str) -> None:
    """Disable an application: no new tokens within a second (the provider caches client
    records for 1 s); tokens already issued live until they expire or are revoked."""
    _change_client(ctx, client_id, "client-disabled", enabled=False)
    err.print(f"client {client_id} disabled")


@clients_app.command("enable")
def clients_enable(ctx: typer.Context, client_id: str) -> None:
    """Enable a disabled application."""
    _change_client(ctx, client_id, "client-enabled", enabled=True)
    err.print(f"client {client_id} enabled")


@clients_app.command("rotate-secret")
def clients_rotate_secret(ctx: typer.Context, client_id: str,
                          as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Give a confidential application a new secret (printed once); the old one stops working
    within a second."""
    from .client_secrets import new_client_secret

    secret = new_client_secret()
    settings = _settings(ctx)
    _change_client(ctx, client_id, "client-secret-rotated",
                   secret_hash=_hasher(settings).hash(secret))
    if as_json:
        _print_json({"client_id": client_id, "client_secret": secret})
    else:
        typer.echo(f"client_secret: {secret}")


@clients_app.command("list")
def clients_list(ctx: typer.Context,
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List registered applications (never their secrets)."""
    rows = [
        {"client_id": c.client_id, "name": c.name, "public": c.public, "roles": list(c.roles),
         "grant_types": list(c.grant_types), "redirect_uris": list(c.redirect_uris),
         "id_token_alg": c.id_token_alg, "enabled": c.enabled}
        for c in _directory(_settings(ctx)).list_clients()
    ]
    if as_json:
        _print_json({"clients": rows})
    else:
        for r in rows:
            typer.echo(f"{r['client_id']:<24} {r['name']}  roles={','.join(r['roles'])}")


# --- sessions -------------------------------------------------------------------------------
@sessions_app.command("list")
def sessions_list(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option(help="only this user's sessions")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List active SSO sessions."""
    rows = [{"sid": s.sid, "username": s.username, "auth_time": s.auth_time, "acr": s.acr,
             "amr": list(s.amr), "source_ip": s.source_ip, "clients": list(s.clients)}
            for s in _store(_settings(ctx)).list_sessions(user)]
    if as_json:
        _print_json({"sessions": rows})
    else:
        for r in rows:
            typer.echo(f"{r['sid']}  {r['username']:<16} {'+'.join(r['amr']):<12} "
                       f"{r['source_ip'] or '-':<16} {','.join(r['clients'])}")


@sessions_app.command("end")
def sessions_end(
    ctx: typer.Context,
    sid: Annotated[str | None, typer.Argument(help="session id (from `sessions list`)")] = None,
    user: Annotated[str | None, typer.Option(help="end every session of this user")] = None,
) -> None:
    """End SSO sessions (an administrator's action): their refresh tokens and access tokens
    are revoked; the data plane refuses them within 1 s."""
    settings = _settings(ctx)
    manager = _session_manager(settings)
    targets = [s for s in manager.store.list_sessions(user) if sid is None or s.sid == sid] \
        if (sid or user) else []
    if not targets:
        raise _fail("no matching active session", 1)
    for s in targets:
        manager.end(s.sid, reason="admin", wait=True)
        _audit(settings, "session-ended", target=s.username, reason="admin",
               details={"sid": s.sid, "clients": list(s.clients)})
    err.print(f"ended {len(targets)} session(s)")


# --- signing keys ---------------------------------------------------------------------------
@keys_app.command("list")
def keys_list(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List signing keys (public facts only): pending, signing, verify-only or retired."""
    from .keys import KeyRing

    rows = KeyRing.load_or_create(_settings(ctx).keys_dir).describe()
    if as_json:
        _print_json({"keys": rows})
    else:
        for r in rows:
            typer.echo(f"{r['kid']:<46} {r['alg']:<7} {r['state']}")


def _max_token_lifetime(settings: Any) -> int:
    """The longest a token signed now can be accepted: access, ID and logout tokens never
    outlive an access token (tokens.TokenIssuer), plus the verifiers' clock leeway."""
    return int(settings.access_token_ttl) + int(settings.token_leeway)


@keys_app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    alg_arg: Annotated[str | None, typer.Argument(metavar="[ALG]", help="ES256, RS256 or SM2")] = None,
    alg: Annotated[str | None, typer.Option("--alg", help="ES256, RS256 or SM2SM3 (SM2)")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Rotate the signing key of ALG (default: the access-token algorithm) without a restart:
    the new key is published at once and signs after ZTGW_KEY_PUBLISH_DELAY; the old key keeps
    verifying until every token it signed has expired, then it is retired."""
    from .keys import DEFAULT_ALGS, KeyRing, canonical_alg

    settings = _settings(ctx)
    if alg and alg_arg and canonical_alg(alg) != canonical_alg(alg_arg):
        raise _fail("give the algorithm once")
    chosen = canonical_alg(alg or alg_arg or settings.access_token_alg)
    if chosen not in DEFAULT_ALGS:
        raise _fail("ALG: one of ES256, RS256, SM2SM3 (SM2)")
    done = KeyRing.rotate(settings.keys_dir, chosen, publish_delay=settings.key_publish_delay,
                          max_token_lifetime=_max_token_lifetime(settings))
    _audit(settings, "key-rotated", target=done["kid"], details={
        "alg": chosen, "kid": done["kid"], "sign_after": done["sign_after"],
        "superseded": done["superseded"], "retire_after": done["retire_after"],
        "removed": done["removed"]})
    if as_json:
        _print_json(done)
    else:
        err.print(f"new {chosen} key {done['kid']}: published now, signs in "
                  f"{settings.key_publish_delay} s; {', '.join(done['superseded']) or 'no key'} "
                  f"retired {done['retire_after'] - done['sign_after']} s after that")


@keys_app.command("retire")
def keys_retire(ctx: typer.Context, kid: str) -> None:
    """Remove a verify-only key at once (e.g. it leaked): tokens it signed stop verifying
    within a second."""
    from .keys import KeyRing

    settings = _settings(ctx)
    try:
        KeyRing.retire(settings.keys_dir, kid)
    except (KeyError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    _audit(settings, "key-retired", target=kid, reason="manual")
    err.print(f"retired {kid}")
