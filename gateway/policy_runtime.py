"""The policy engine inside the running gateway: load, verify, hot reload, shadow mode, replicas.

* Start: the active bundle (``Settings.bundle_path``) is loaded — and, with
  ``policy_require_signature``, verified against the trusted SM2 keys — before the gateway
  accepts traffic; a bundle that fails stops the start (fail closed).
* Hot reload: a watcher checks the bundle folder every ``policy_reload_interval`` seconds
  (file names, sizes, mtimes, inodes).  A changed bundle is loaded, verified and compiled off
  the event loop, then swapped in with one reference assignment: requests in flight finish on
  the policy they started with, none fails.  A bundle that does not load or verify is refused
  and the previous one stays active; the refusal is audited.
* Replicas: every worker and replica watching the same folder picks a change up within the
  interval; with ``policy_redis_url`` a change installed by ``ztgw policy install`` is also
  published on Redis (casbin watcher contract: ``update`` / ``set_update_callback``) so remote
  replicas reload at once.
* Shadow mode: ``policy_shadow_bundle`` is decided next to the active bundle on live traffic;
  every difference is audited (``event.dataset: ztgw.policy``, action ``policy-shadow-diff``)
  and never enforced.

Also the ``ztgw policy`` CLI for the composition root: the authoring commands of
:mod:`ztgw.policies.cli` with the directory and catalogue as hooks, plus ``install``, ``diff``
(replay audited requests through a candidate) and ``status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from ztgw.audit.errors import AuditUnavailable
from ztgw.audit.events import ECS_VERSION, iso_now, new_event_id
from ztgw.crypto.errors import CryptoError
from ztgw.crypto.sm2 import SM2PublicKey, load_public_key
from ztgw.policies.bundle import load_bundle
from ztgw.policies.cli import Hooks, build_app
from ztgw.policies.domain import Classification, Decision, Environment, Resource, Subject
from ztgw.policies.engine import CompiledPolicy, PolicyEngine, decision_dict, differs
from ztgw.policies.errors import BundleError, BundleSignatureError
from ztgw.policies.signing import load_verified_bundle

from .settings import Settings

log = logging.getLogger("ztgw.policy")
REDIS_CHANNEL = "ztgw:policy"
SHADOW_EVENTS_PER_SECOND = 50  # divergences audited per second; the rest are only counted
STATUS_EVERY = 5.0  # seconds between status-file refreshes (reloads write at once)
DEFAULT_KEY_NAME = "policy-signing.pub.pem"


# --- loading ---------------------------------------------------------------------------------
def trusted_key_paths(settings: Settings) -> list[Path]:
    if settings.policy_trusted_keys:
        return list(settings.policy_trusted_keys)
    default = settings.keys_dir / DEFAULT_KEY_NAME
    return [default] if default.is_file() else []


def trusted_keys(settings: Settings) -> list[SM2PublicKey]:
    keys = []
    for path in trusted_key_paths(settings):
        try:
            keys.append(load_public_key(path.read_bytes()))
        except (OSError, CryptoError) as exc:
            raise BundleSignatureError(f"cannot load trusted policy key {path}: {exc}") from exc
    return keys


def load_policy(settings: Settings, path: Path | None = None) -> CompiledPolicy:
    """Load (and, when required, verify) a bundle and compile it; raises BundleError."""
    path = path or settings.bundle_path
    if settings.policy_require_signature:
        keys = trusted_keys(settings)
        if not keys:
            raise BundleSignatureError(
                "policy_require_signature is set but no trusted key is configured "
                f"(policy_trusted_keys, or {settings.keys_dir / DEFAULT_KEY_NAME})")
        return CompiledPolicy(load_verified_bundle(path, keys))
    return CompiledPolicy(load_bundle(path))


def fingerprint(path: Path) -> tuple[Any, ...]:
    """Cheap change detector for a bundle folder (or file)."""
    try:
        st = path.stat()
    except OSError:
        return ("missing",)
    if not path.is_dir():
        return ((st.st_ino, st.st_mtime_ns, st.st_size),)
    out: list[Any] = [st.st_ino, st.st_mtime_ns]
    try:
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                fs = os.stat(os.path.join(root, name), follow_symlinks=False)
                out.append((root, name, fs.st_ino, fs.st_mtime_ns, fs.st_size))
    except OSError:
        return ("unreadable",)
    return tuple(out)


def install_bundle(source: Path, target: Path) -> None:
    """Copy a bundle folder into place by rename (a reader sees the old or the new one)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, symlinks=True)
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


# --- replicas --------------------------------------------------------------------------------
class RedisPolicyWatcher:
    """casbin's watcher contract over Redis pub/sub: ``update()`` publishes, the callback runs
    in every subscribed replica."""

    def __init__(self, url: str, channel: str = REDIS_CHANNEL) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3)
        self.channel = channel
        self._callback: Callable[[str], None] | None = None
        self._pubsub: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def set_update_callback(self, callback: Callable[[str], None]) -> None:
        self._callback = callback

    def update(self, message: str = "reload") -> bool:
        self._redis.publish(self.channel, message)
        return True

    def start(self) -> None:
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(self.channel)
        self._thread = threading.Thread(target=self._run, name="ztgw-policy-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = self._pubsub.get_message(timeout=0.5)
            except Exception as exc:  # connection lost: the file watcher still works
                log.warning("policy watcher: redis error %s", type(exc).__name__)
                self._stop.wait(1.0)
                continue
            if msg and self._callback is not None:
                data = msg.get("data")
                self._callback(data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        with contextlib.suppress(Exception):
            if self._pubsub is not None:
                self._pubsub.close()
            self._redis.close()


# --- the runtime -----------------------------------------------------------------------------
class PolicyRuntime:
    """Owns the gateway's :class:`PolicyEngine` and keeps it in step with the bundle on disk."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = settings.bundle_path
        self._fingerprint = fingerprint(self.path)
        self.engine = PolicyEngine(load_policy(settings))  # raises: the gateway does not start
        self.loaded_at = time.time()
        self.reloads = 0
        self.refusals = 0
        self.last_error: str | None = None
        self.shadow_divergences = 0
        self._shadow_fp: tuple[Any, ...] | None = None
        self._emit: Callable[[dict[str, Any]], Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: RedisPolicyWatcher | None = None
        self._budget = (0.0, 0)
        self._load_shadow()

    # lifecycle
    async def start(self, emit: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self._emit = emit
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self.settings.policy_redis_url is not None:
            try:
                self._watcher = RedisPolicyWatcher(self.settings.policy_redis_url.get_secret_value())
                self._watcher.set_update_callback(self._notified)
                self._watcher.start()
            except Exception as exc:
                log.warning("policy watcher: redis unavailable (%s); file watching only",
                            type(exc).__name__)
                self._watcher = None
        self._task = asyncio.create_task(self._watch(), name="ztgw-policy-reload")
        self.write_status()

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(OSError):
            self.status_file().unlink()

    def _notified(self, _message: str) -> None:
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _watch(self) -> None:
        assert self._wake is not None
        written = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.policy_reload_interval)
            self._wake.clear()
            try:
                if await asyncio.to_thread(self.check) or time.monotonic() - written > STATUS_EVERY:
                    self.write_status()
                    written = time.monotonic()
            except Exception as exc:  # never let the watcher die
                log.exception("policy reload check failed: %s", exc)

    # reload
    def check(self) -> bool:
        """Reload if the bundle changed; True when a new policy was swapped in."""
        changed = False
        fp = fingerprint(self.path)
        if fp != self._fingerprint:
            changed = self.reload(fp)
        if self.settings.policy_shadow_bundle is not None:
            sfp = fingerprint(self.settings.policy_shadow_bundle)
            if sfp != self._shadow_fp:
                self._load_shadow()
        return changed

    def reload(self, fp: tuple[Any, ...] | None = None) -> bool:
        fp = fp if fp is not None else fingerprint(self.path)
        old = self.engine.policy.bundle
        try:
            policy = load_policy(self.settings)
        except (BundleError, OSError) as exc:
            if fp == ("missing",):
                return False  # mid-rename of an install: the next tick sees the new folder
            self._fingerprint = fp  # refuse this content once; a new change is tried again
            self.refusals += 1
            self.last_error = str(exc)
            self._audit("policy-reload", "failure", {"error": str(exc)[:500]},
                        signature=isinstance(exc, BundleSignatureError))
            log.error("policy bundle refused, keeping %s %s: %s", old.name, old.version, exc)
            with contextlib.suppress(OSError):
                self.write_status()
            return False
        self.engine.swap(policy)
        self._fingerprint = fp
        self.reloads += 1
        self.loaded_at = time.time()
        self.last_error = None
        self._audit("policy-reload", "success",
                    {"previous": {"name": old.name, "version": old.version}})
        return True

    # shadow
    def _load_shadow(self) -> None:
        path = self.settings.policy_shadow_bundle
        if path is None:
            return
        self._shadow_fp = fingerprint(path)
        try:
            shadow = CompiledPolicy(load_bundle(path))
        except (BundleError, OSError) as exc:
            self.engine.set_shadow(None)
            self.last_error = f"shadow bundle: {exc}"
            log.error("shadow policy bundle refused: %s", exc)
            return
        self.engine.set_shadow(shadow, self._diverged)

    def _diverged(self, subject: Subject, resource: Resource, action: str, active: Decision,
                  candidate: Decision) -> None:
        self.shadow_divergences += 1
        now = time.monotonic()
        start, used = self._budget
        if now - start >= 1.0:
            start, used = now, 0
        if used >= SHADOW_EVENTS_PER_SECOND:
            self._budget = (start, used)
            return
        self._budget = (start, used + 1)
        self._audit("policy-shadow-diff", "unknown", {
            "subject": {"id": subject.id, "client_id": subject.client_id},
            "dataset": resource.dataset, "action": action,
            "active": _brief(active), "shadow": _brief(candidate),
        })

    # status / audit
    def status(self) -> dict[str, Any]:
        b = self.engine.policy.bundle
        shadow = self.engine.shadow
        return {
            "bundle": b.name, "version": b.version, "path": str(self.path),
            "loaded_at": datetime.fromtimestamp(self.loaded_at, UTC).isoformat(),
            "reloads": self.reloads, "refusals": self.refusals, "last_error": self.last_error,
            "signature_required": self.settings.policy_require_signature,
            "shadow": None if shadow is None else {
                "bundle": shadow.bundle.name, "version": shadow.bundle.version,
                "divergences": self.shadow_divergences},
            "replica_watcher": "redis" if self._watcher is not None else "file",
        }

    def status_file(self) -> Path:
        return self.settings.home / "run" / f"policy-{os.getpid()}.json"

    def write_status(self) -> None:
        """What this worker enforces, for ``ztgw policy status`` (written atomically)."""
        import orjson

        path = self.status_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({**self.status(), "pid": os.getpid(),
                                      "written_at": datetime.now(UTC).isoformat()}))
        tmp.replace(path)

    def _audit(self, action: str, outcome: str, details: dict[str, Any], *,
               signature: bool = False) -> None:
        b = self.engine.policy.bundle
        event = {
            "@timestamp": iso_now(),
            "ecs": {"version": ECS_VERSION},
            "event": {"id": new_event_id(), "kind": "event", "category": ["configuration"],
                      "type": ["change"], "action": action, "outcome": outcome,
                      "dataset": "ztgw.policy", "module": "ztgw", "provider": "policy"},
            "data_stream": {"type": "logs", "dataset": "ztgw.policy", "namespace": "default"},
            "rule": {"ruleset": b.name, "version": b.version},
            "ztgw": {"policy": {**details, "signature_failure": signature}},
        }
        if self._emit is None:
            return
        with contextlib.suppress(AuditUnavailable):
            self._emit(event)


def _brief(d: Decision) -> dict[str, Any]:
    return {"effect": d.effect, "rule_id": d.rule_id, "ruleset_version": d.ruleset_version,
            "obligations": [o.type for o in d.obligations]}


# --- CLI ------------------------------------------------------------------------------------
def _directory(settings: Settings) -> Any:
    from .state.database import is_initialised, open_directory

    if not is_initialised(settings):
        return None
    return open_directory(settings, migrate=False)  # SQLite, or directory_url


def subject_from_directory(settings: Settings, ref: str) -> Subject | None:
    """``client:ID`` or ``user:NAME`` with its directory attributes (None when unknown)."""
    directory = _directory(settings)
    return None if directory is None else _subject(directory, ref)


def _subject(directory: Any, ref: str) -> Subject | None:
    kind, _, name = ref.partition(":")
    if kind == "client":
        c = directory.get_client(name)
        if c is None:
            return None
        return Subject(id=ref, kind="client", name=c.client_id, client_id=c.client_id,
                       roles=frozenset(c.roles), department=c.department, clearance=c.clearance,
                       attributes={"organization": c.organization, "display_name": c.name})
    if kind == "user":
        u = directory.get_user(name)
        if u is None:
            return None
        return Subject(id=ref, kind="user", name=u.username, client_id="cli",
                       roles=frozenset(u.roles), department=u.department, clearance=u.clearance,
                       attributes={**u.attributes, "organization": u.department})
    return None


def catalogue_resources(settings: Settings) -> list[Resource]:
    from .catalogue import Catalogue

    directory = _directory(settings)
    if directory is None:
        return []
    return [Resource(dataset=d.dataset, classification=d.classification,
                     owner_department=d.owner_department, fields=dict(d.fields))
            for d in Catalogue(directory).all()]


def directory_principals(settings: Settings) -> list[Subject]:
    directory = _directory(settings)
    if directory is None:
        return []
    out = [_subject(directory, f"client:{c.client_id}") for c in directory.list_clients() if c.enabled]
    out += [_subject(directory, f"user:{u.username}") for u in directory.list_users() if u.enabled]
    return [s for s in out if s is not None]


def resource_from_catalogue(settings: Settings, dataset: str) -> Resource | None:
    return next((r for r in catalogue_resources(settings) if r.dataset == dataset), None)


policy_app = build_app(Hooks(
    default_bundle=lambda s: s.bundle_path,
    trusted_keys=trusted_key_paths,
    subject=subject_from_directory,
    resource=resource_from_catalogue,
    datasets=catalogue_resources,
    principals=directory_principals,
))


def _print(doc: Any) -> None:
    import orjson

    typer.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


@policy_app.command("install")
def install_cmd(ctx: typer.Context,
                bundle: Annotated[Path, typer.Argument(help="bundle folder to make active")],
                skip_tests: Annotated[bool, typer.Option(
                    "--skip-tests", help="install even if the bundle's own tests fail")] = False,
                as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check a bundle (signature too, when required; its tests/*.yaml must pass) and make it
    the active one; running gateways pick it up within the reload interval (at once over
    Redis when configured)."""
    from ztgw.policies.testing import run_dir

    settings: Settings = ctx.obj
    try:
        policy = load_policy(settings, bundle)
        results = run_dir(bundle) if any((bundle / "tests").glob("*.yaml")) else []
    except BundleSignatureError as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(1) from exc
    except (BundleError, OSError) as exc:
        typer.echo(f"invalid bundle: {exc}", err=True)
        raise typer.Exit(2) from exc
    failed = [r for r in results if not r.passed]
    if failed and not skip_tests:
        for r in failed:
            typer.echo(f"FAIL  {r.file}: {r.name}: {'; '.join(r.failures)}", err=True)
        typer.echo(f"refused: {len(failed)} of the bundle's own tests fail (--skip-tests to "
                   "install anyway)", err=True)
        raise typer.Exit(1)
    install_bundle(bundle, settings.bundle_path)
    notified = False
    if settings.policy_redis_url is not None:
        try:
            watcher = RedisPolicyWatcher(settings.policy_redis_url.get_secret_value())
            notified = watcher.update(f"{policy.bundle.name}@{policy.bundle.version}")
            watcher.close()
        except Exception as exc:
            typer.echo(f"warning: could not notify replicas over redis ({type(exc).__name__})",
                       err=True)
    doc = {"installed": str(settings.bundle_path), "bundle": policy.bundle.name,
           "version": policy.bundle.version, "rules": len(policy.rules), "redis_notified": notified,
           "tests": {"passed": len(results) - len(failed), "failed": len(failed)}}
    _print(doc) if as_json else typer.echo(
        f"installed {doc['bundle']} {doc['version']} ({doc['rules']} rules) at {doc['installed']}")


@policy_app.command("status")
def status_cmd(ctx: typer.Context,
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The bundle each running gateway worker enforces (version, reloads, refusals, shadow)."""
    import orjson

    settings: Settings = ctx.obj
    workers = []
    for f in sorted((settings.home / "run").glob("policy-*.json")):
        try:
            doc = orjson.loads(f.read_bytes())
            os.kill(int(doc["pid"]), 0)  # still running?
        except (OSError, ValueError, KeyError, orjson.JSONDecodeError):
            continue
        workers.append(doc)
    if as_json:
        _print({"workers": workers})
        return
    if not workers:
        typer.echo("no running gateway worker found under this home")
    for w in workers:
        shadow = w.get("shadow")
        typer.echo(f"pid {w['pid']}: {w['bundle']} {w['version']} (reloads {w['reloads']}, "
                   f"refusals {w['refusals']}{', last error: ' + w['last_error'] if w['last_error'] else ''})"
                   + (f"; shadow {shadow['bundle']} {shadow['version']}: {shadow['divergences']} "
                      "differences" if shadow else ""))


def replay_subject(settings: Settings, event: dict[str, Any], cache: dict[str, Any]) -> Subject | None:
    user = event.get("user") or {}
    sid = user.get("id")
    if not isinstance(sid, str):
        return None
    if sid not in cache:
        cache[sid] = subject_from_directory(settings, sid)
    known: Subject | None = cache[sid]
    if known is not None:
        client = ((event.get("ztgw") or {}).get("oidc") or {}).get("client_id") or known.client_id
        return Subject(id=known.id, kind=known.kind, name=known.name, client_id=client,
                       roles=known.roles, department=known.department,
                       clearance=known.clearance, attributes=known.attributes)
    return Subject(id=sid, kind="user" if sid.startswith("user:") else "client",
                   name=str(user.get("name", sid)),
                   client_id=str(((event.get("ztgw") or {}).get("oidc") or {}).get("client_id", "")),
                   roles=frozenset(user.get("roles") or ()), department=user.get("domain"))


@policy_app.command("diff")
def diff_cmd(ctx: typer.Context,
             candidate: Annotated[Path, typer.Argument(help="candidate bundle folder")],
             since: Annotated[str, typer.Option(help="audit window: 15m, 24h, 7d or ISO time")] = "24h",
             limit: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
             as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Replay recent audited requests through a candidate bundle; report what would change."""
    from ztgw.audit.errors import QueryError
    from ztgw.audit.query import AuditQuery, parse_time
    from ztgw.audit.store import AuditStore

    settings: Settings = ctx.obj
    try:
        cand = CompiledPolicy(load_bundle(candidate))
        active = load_policy(settings)
    except (BundleError, OSError) as exc:
        typer.echo(f"invalid bundle: {exc}", err=True)
        raise typer.Exit(2) from exc
    try:
        query = AuditQuery(since=parse_time(since), event_dataset="ztgw.access", limit=limit)
    except QueryError as exc:
        typer.echo(f"invalid query: {exc}", err=True)
        raise typer.Exit(2) from exc
    store = AuditStore(settings.audit_settings().db_path)
    try:
        events = store.search(query)
    finally:
        store.close()
    resources = {r.dataset: r for r in catalogue_resources(settings)}
    subjects: dict[str, Any] = {}
    changes, replayed, skipped = [], 0, 0
    for ev in events:
        z = ev.get("ztgw") or {}
        dataset = (z.get("data") or {}).get("dataset")
        subject = replay_subject(settings, ev, subjects)
        if not dataset or subject is None or "decision" not in z:
            skipped += 1
            continue
        res = resources.get(dataset) or Resource(
            dataset=dataset, classification=Classification.parse(
                (z.get("data") or {}).get("classification", "一般")))
        try:
            when = datetime.fromisoformat(ev["@timestamp"])
        except (KeyError, ValueError):
            when = datetime.now(UTC)
        env = Environment(time=when, source_ip=(ev.get("source") or {}).get("ip"))
        action = "read" if (ev.get("event") or {}).get("action") == "data-api-read" else "write"
        before = active.decide(subject, res, action, env)
        after = cand.decide(subject, res, action, env)
        replayed += 1
        if differs(before, after):
            changes.append({
                "request_id": (ev.get("http") or {}).get("request", {}).get("id"),
                "timestamp": ev.get("@timestamp"), "subject": subject.id, "dataset": dataset,
                "action": action, "recorded": {"effect": z["decision"].get("effect"),
                                               "rule_id": (ev.get("rule") or {}).get("id")},
                "active": decision_dict(before), "candidate": decision_dict(after)})
    doc = {"candidate": {"bundle": cand.bundle.name, "version": cand.bundle.version},
           "active": {"bundle": active.bundle.name, "version": active.bundle.version},
           "events": len(events), "replayed": replayed, "skipped": skipped,
           "changed": len(changes), "changes": changes}
    if as_json:
        _print(doc)
        return
    typer.echo(f"replayed {replayed} audited requests ({skipped} skipped) through "
               f"{cand.bundle.name} {cand.bundle.version}: {len(changes)} would change")
    for c in changes:
        a, b = c["active"], c["candidate"]
        typer.echo(f"  {c['timestamp']} {c['subject']} {c['action']} {c['dataset']}: "
                   f"{a['effect']}/{a['rule_id']} -> {b['effect']}/{b['rule_id']}")
