"""``ztgw``: one entry point, sub-commands per area (INTERFACES.md "CLI").

Exit codes: 0 ok, 1 a check failed, 2 bad usage or input.  Commands that report data accept
``--json`` and then print exactly one JSON document on stdout; progress goes to stderr.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from typer.core import TyperGroup

from .settings import Settings

# Sub-command groups are imported when they are invoked, not when `ztgw` starts: importing all
# of them (policy engine, alembic, SQLAlchemy, the scanners …) cost ~2 s per invocation, paid by
# every CLI call of operators, scripts and the test suite.  `ztgw --help` still lists them all.
_LAZY: dict[str, tuple[str, str]] = {
    "users": ("ztgw.gateway.identity.cli", "users_app"),
    "clients": ("ztgw.gateway.identity.cli", "clients_app"),
    "sessions": ("ztgw.gateway.identity.cli", "sessions_app"),
    "keys": ("ztgw.gateway.identity.cli", "keys_app"),
    "audit": ("ztgw.audit.cli", "app"),
    "crypto": ("ztgw.crypto.cli", "app"),
    "apikeys": ("ztgw.gateway.dataplane.cli", "apikeys_app"),
    "scan": ("ztgw.gateway.protection.cli", "scan_app"),
    "watermark": ("ztgw.gateway.protection.cli", "watermark_app"),
    "policy": ("ztgw.gateway.policy_runtime", "policy_app"),
    "db": ("ztgw.gateway.migrations.cli", "db_app"),  # issue 11: schema migrations (alembic)
    "requests": ("ztgw.gateway.grants.cli", "requests_app"),  # issue 6: owners, data subjects
    "grants": ("ztgw.gateway.grants.cli", "grants_app"),
    "consent": ("ztgw.gateway.grants.cli", "consent_app"),
    "datasets": ("ztgw.gateway.grants.cli", "datasets_app"),
    # issue 10: detection alerts, drills, posture scans (ztgw.scanners)
    "alerts": ("ztgw.scanners.cli", "alerts_app"),
    "drill": ("ztgw.scanners.cli", "drill_app"),
}


def _scanners_cli() -> Any:
    from ztgw.scanners import cli as scanners_cli

    scanners_cli.providers.credentials = _local_credentials
    scanners_cli.providers.datasets = _catalogue_datasets
    scanners_cli.providers.grants = _grants_and_consents
    scanners_cli.providers.sampled_pii = _sampled_pii
    return scanners_cli


def _load_group(name: str) -> typer.Typer:
    import importlib

    module, attr = _LAZY[name]
    sub: typer.Typer = getattr(importlib.import_module(module), attr)
    if module == "ztgw.scanners.cli":
        _scanners_cli()
    if name == "scan" and not getattr(sub, "_ztgw_composed", False):
        from .pii_sampler import scan_pii_command

        scanners_cli = _scanners_cli()
        sub.command("ports")(scanners_cli.ports)
        sub.command("tls")(scanners_cli.tls)
        sub.command("passwords")(scanners_cli.passwords)
        sub.command("coverage")(scanners_cli.coverage)
        # `scan pii FILE` (protection) or `scan pii --sampled` (the gateway's sampled answers)
        sub.registered_commands[:] = [c for c in sub.registered_commands if c.name != "pii"]
        sub.command("pii")(scan_pii_command)
        sub._ztgw_composed = True  # type: ignore[attr-defined]
    return sub


class LazyGroup(TyperGroup):
    """The root group: a sub-command group is imported and built on first use."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.commands, *(n for n in _LAZY if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = self.commands.get(cmd_name)
        if cmd is None and cmd_name in _LAZY:
            cmd = typer.main.get_group(_load_group(cmd_name))
            cmd.name = cmd_name
            self.add_command(cmd, cmd_name)
        return cmd


app = typer.Typer(
    name="ztgw", help="ztgw — zero-trust gateway for government data APIs.",
    no_args_is_help=True, pretty_exceptions_enable=False, cls=LazyGroup,
)
demo_app = typer.Typer(help="The demo realm: seed it, run its data APIs, run everything.",
                       no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
app.add_typer(demo_app, name="demo")
app.add_typer(config_app, name="config")


def _local_credentials(settings: Settings) -> list[Any]:
    from ztgw.scanners.passwords import Credential

    from .state.database import open_directory

    d = open_directory(settings)  # SQLite or directory_url
    return ([Credential("user", u.username, u.password_hash, u.enabled) for u in d.list_users()]
            + [Credential("client", c.client_id, c.secret_hash, c.enabled, c.public)
               for c in d.list_clients()])


def _catalogue_datasets(settings: Settings) -> list[Any]:
    from ztgw.scanners.coverage import DatasetInfo

    from .catalogue import Catalogue
    from .state.database import open_directory

    return [DatasetInfo(d.dataset, d.route_prefix, d.owner_department,
                        d.classification.label if d.fields else None, d.enabled,
                        fields={k: v.label for k, v in d.fields.items()},
                        pi={k: v.value for k, v in d.pi.items()})
            for d in Catalogue(open_directory(settings)).all()]


def _grants_and_consents(settings: Settings) -> list[Any]:
    """Grants and consents for `scan coverage` (read-only; no citizen names leave here)."""
    from ztgw.scanners.coverage import GrantInfo

    from .grants.store import GrantStore
    from .state.database import open_directory

    store = GrantStore(open_directory(settings).engine)
    return ([GrantInfo(g.id, "grant", g.dataset, g.grantee, g.status, g.expires_at)
             for g in store.list_grants(limit=100_000)]
            + [GrantInfo(c.id, "consent", c.dataset, c.client_id, c.status, c.expires_at)
               for c in store.list_consents(limit=100_000)])


def _sampled_pii(settings: Settings) -> list[Any]:
    from .pii_sampler import sampled_findings

    return sampled_findings(Path(settings.home) / "detection" / "pii-sampled.db")



err = Console(stderr=True)


def _print_json(doc: Any) -> None:
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


@app.callback()
def main_callback(
    ctx: typer.Context,
    home: Annotated[Path | None, typer.Option(help="state folder", envvar="ZTGW_HOME")] = None,
    config: Annotated[Path | None, typer.Option(help="TOML config file", envvar="ZTGW_CONFIG")
                      ] = None,
) -> None:
    # the composition root exports them, so worker processes and sub-commands agree
    if home is not None:
        os.environ["ZTGW_HOME"] = str(home)
    if config is not None:
        if not config.is_file():
            err.print(f"config file {config} not found")
            raise typer.Exit(2)
        os.environ["ZTGW_CONFIG"] = str(config)
    ctx.obj = _settings()


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except Exception as exc:  # pydantic ValidationError, bad TOML …
        err.print(f"invalid configuration: {exc}")
        raise typer.Exit(2) from exc


# --- init ----------------------------------------------------------------------------------
EMPTY_BUNDLE = """\
# No rules: every request is denied until a bundle with rules is installed (default deny).
bundle: default
version: "0"
rules: []
"""


def initialise(settings: Settings) -> dict[str, Any]:
    from .catalogue import Catalogue
    from .identity.client_secrets import load_or_create_pepper
    from .identity.keys import KeyRing
    from .state.database import open_directory

    settings.home.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.home, 0o700)
    keyring = KeyRing.load_or_create(settings.keys_dir)
    load_or_create_pepper(settings.keys_dir)
    # every key a replica needs exists after init, so replicas can share one keys folder
    # (issue 11: otherwise each would make its own protection and upstream-identity key)
    from .dataplane.identity_header import load_or_create_key as load_or_create_identity_key
    from .grants.receipts import load_or_create_receipt_key
    from .protection.keys import ProtectionKeys

    ProtectionKeys.load_or_create(settings.keys_dir)
    load_or_create_identity_key(settings.keys_dir)
    load_or_create_receipt_key(settings.keys_dir)  # consent receipts (issue 6)
    Catalogue(open_directory(settings))  # SQLite or directory_url, upgraded to the newest schema
    from ztgw.audit.checkpoint import load_or_create_signing_key
    from ztgw.audit.store import AuditStore

    AuditStore(settings.audit_settings().db_path).close()
    load_or_create_signing_key(settings.audit_settings().effective_keys_dir)
    bundle = settings.bundle_path
    if not bundle.exists():
        bundle.mkdir(parents=True)
        (bundle / "policy.yaml").write_text(EMPTY_BUNDLE, encoding="utf-8")
    return {"home": str(settings.home.resolve()), "keys": keyring.algorithms,
            "policy_bundle": str(bundle)}


@app.command()
def init(ctx: typer.Context,
         as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Create keys, databases and the default (deny-all) policy under the home (idempotent)."""
    import sqlalchemy as sa

    try:
        out = initialise(ctx.obj)
    except sa.exc.SQLAlchemyError as exc:  # an unreachable directory_url: no URL (a password)
        err.print(f"cannot use the database: {type(getattr(exc, 'orig', None) or exc).__name__}")
        raise typer.Exit(2) from exc
    if as_json:
        _print_json(out)
    else:
        err.print(f"initialised {out['home']} (signing keys: {', '.join(out['keys'])})")


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective configuration (secrets masked) as JSON."""
    _print_json(ctx.obj.redacted())


# --- serve ---------------------------------------------------------------------------------
@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    port: Annotated[int | None, typer.Option(help="listen port")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="worker processes")] = 1,
) -> None:
    """Run the gateway: identity provider, admin API, data plane."""
    import uvicorn

    if host is not None:
        os.environ["ZTGW_HOST"] = host
    if port is not None:
        os.environ["ZTGW_PORT"] = str(port)
    settings = _settings()
    if not _initialised(settings):
        err.print(f"{settings.home} is not initialised: run `ztgw init` first")
        raise typer.Exit(2)
    from functools import partial

    from .server import DeadlineProtocol

    daemon: AuditDaemonProcess | None = None
    if workers > 1 or settings.audit_daemon:
        # one SM3 chain per home, one writer: the workers share the home's audit daemon
        daemon = AuditDaemonProcess(settings)
        try:
            daemon.start()
        except RuntimeError as exc:
            err.print(str(exc))
            raise typer.Exit(1) from exc
        os.environ["ZTGW_AUDIT_SOCKET"] = str(daemon.socket)

    def run() -> None:
        uvicorn.run(
            "ztgw.gateway.app:create_app", factory=True, host=settings.host, port=settings.port,
            workers=workers, loop="uvloop", log_level="warning",
            http=partial(DeadlineProtocol, request_deadline=settings.request_receive_timeout),  # type: ignore[arg-type]
            access_log=False, server_header=False, proxy_headers=False, lifespan="on",
            timeout_keep_alive=30, **_tls_options(settings),
        )

    if daemon is None:
        run()
    else:
        _run_with_daemon(daemon, run)


def _run_with_daemon(daemon: AuditDaemonProcess, serve: Any) -> None:
    try:
        serve()
    finally:
        daemon.stop()


class AuditDaemonProcess:
    """``ztgw audit-daemon`` as a child of ``ztgw serve``: started before the workers,
    restarted if it dies (workers refuse meanwhile: fail closed), stopped after them."""

    MAX_RESTARTS = 10  # per start; then the trail stays down and the workers keep refusing

    def __init__(self, settings: Any) -> None:
        from ztgw.audit.remote import socket_path

        self.socket = socket_path(settings.home)
        self.proc: subprocess.Popen[bytes] | None = None
        self._stop = False
        self._watch: Any = None

    def _spawn(self) -> None:
        env = {**os.environ}
        env.pop("ZTGW_AUDIT_SOCKET", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "ztgw.gateway", "audit-daemon"], env=env)

    def start(self, timeout: float = 60.0) -> None:
        import socket as sk
        import threading

        self._spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"the audit daemon exited with {self.proc.returncode}")
            try:
                with sk.socket(sk.AF_UNIX) as s:
                    s.connect(str(self.socket))
                break
            except OSError:
                time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError("the audit daemon did not start in time")
        self._watch = threading.Thread(target=self._supervise, name="ztgw-auditd-watch", daemon=True)
        self._watch.start()

    def _supervise(self) -> None:
        restarts = 0
        while not self._stop:
            time.sleep(0.5)
            proc = self.proc
            if proc is None or proc.poll() is None or self._stop:
                continue
            if restarts >= self.MAX_RESTARTS:
                err.print("the audit daemon keeps failing; the gateway refuses data until it is back")
                return
            restarts += 1
            err.print(f"the audit daemon exited ({proc.returncode}); restarting it")
            self._spawn()

    def stop(self) -> None:
        self._stop = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@app.command("audit-daemon", hidden=True)
def audit_daemon(ctx: typer.Context) -> None:
    """Internal: the audit trail's single writer for `ztgw serve --workers N`."""
    from .auditd import run_daemon

    run_daemon(_settings())


def _tls_options(settings: Any) -> dict[str, Any]:
    """uvicorn's TLS arguments: HTTPS when a certificate is configured; with a client CA, a
    client certificate is asked for (optional) and verified against it (mTLS)."""
    if settings.tls_certfile is None:
        if settings.tls_client_ca is not None:
            err.print("tls_client_ca needs tls_certfile and tls_keyfile")
            raise typer.Exit(2)
        return {}
    import ssl

    opts: dict[str, Any] = {"ssl_certfile": str(settings.tls_certfile),
                            "ssl_keyfile": str(settings.tls_keyfile or settings.tls_certfile)}
    if settings.tls_client_ca is not None:
        opts["ssl_ca_certs"] = str(settings.tls_client_ca)
        opts["ssl_cert_reqs"] = ssl.CERT_OPTIONAL
    return opts


# --- users and clients ---------------------------------------------------------------------
def _initialised(settings: Settings) -> bool:
    import sqlalchemy as sa

    from .state.database import is_initialised

    try:
        return is_initialised(settings)
    except sa.exc.SQLAlchemyError as exc:
        err.print(f"cannot use the database: {type(getattr(exc, 'orig', None) or exc).__name__}")
        raise typer.Exit(2) from exc


def _open_directory(settings: Settings) -> Any:
    from .state.database import open_directory

    if not _initialised(settings):
        err.print(f"{settings.home} is not initialised: run `ztgw init` first")
        raise typer.Exit(2)
    return open_directory(settings)


def _hasher(settings: Settings) -> Any:
    from .identity.client_secrets import SecretHasher, load_or_create_pepper

    if settings.secret_pepper:
        return SecretHasher(bytes.fromhex(settings.secret_pepper.get_secret_value()))
    return SecretHasher(load_or_create_pepper(settings.keys_dir))


# --- demo ----------------------------------------------------------------------------------
def seed_demo(settings: Settings) -> dict[str, Any]:
    from .catalogue import Catalogue
    from .demo.realm import seed

    initialise(settings)
    directory = _open_directory(settings)
    # the demo bundle goes to the home's default place; a bundle the operator configured
    # elsewhere (ZTGW_POLICY_BUNDLE) is never overwritten by a demo
    return seed(directory, Catalogue(directory), _hasher(settings),
                settings.home / "policies" / "active",
                settings.demo_upstream_url)


@demo_app.command("seed")
def demo_seed(
    ctx: typer.Context,
    upstream_url: Annotated[str | None, typer.Option(help="where the demo data APIs listen")
                            ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Seed the demo realm (users, applications, datasets, policy)."""
    settings: Settings = ctx.obj
    if upstream_url:
        settings = settings.model_copy(update={"demo_upstream_url": upstream_url})
    accounts = seed_demo(settings)
    if as_json:
        _print_json(accounts)
    else:
        err.print(f"demo realm seeded in {settings.home} "
                  f"({len(accounts['clients'])} applications, {len(accounts['routes'])} datasets)")


@demo_app.command("upstream")
def demo_upstream(
    host: Annotated[str, typer.Option(help="listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="listen port")] = 8081,
) -> None:
    """Run the demo government data APIs (population, enterprise, social security)."""
    from .demo.upstream import serve_upstream

    serve_upstream(host=host, port=port)


def _wait_ready(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback URL we built
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


@demo_app.command("run")
def demo_run(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="gateway port")] = 8080,
    upstream_port: Annotated[int, typer.Option(help="demo data API port")] = 8081,
) -> None:
    """init + seed + demo upstream + gateway, and print a tour.  Ctrl-C stops all of it."""
    settings: Settings = ctx.obj
    host = settings.host
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    settings = settings.model_copy(update={"demo_upstream_url": upstream_url, "port": port})
    accounts = seed_demo(settings)
    env = {**os.environ, "ZTGW_HOME": str(settings.home), "ZTGW_PORT": str(port),
           "ZTGW_HOST": host}
    exe = [sys.executable, "-m", "ztgw.gateway"]
    procs = [
        subprocess.Popen([*exe, "demo", "upstream", "--port", str(upstream_port)], env=env),
        subprocess.Popen([*exe, "serve", "--host", host, "--port", str(port)], env=env),
    ]

    def stop(*_: Any) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()

    signal.signal(signal.SIGTERM, lambda *a: (stop(), sys.exit(0)))
    try:
        ok = _wait_ready(f"{upstream_url}/api/population/persons?size=1", 30, procs[0]) and \
            _wait_ready(f"http://{host}:{port}/readyz", 30, procs[1])
        if not ok:
            err.print("the demo did not start; see the messages above")
            stop()
            raise typer.Exit(1)
        from .demo.tour import tour

        typer.echo(tour(f"http://{host}:{port}", accounts))
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        err.print("a demo process stopped; shutting down")
        raise typer.Exit(1)
    except KeyboardInterrupt:
        err.print("stopping…")
    finally:
        stop()


def main() -> None:
    app()
