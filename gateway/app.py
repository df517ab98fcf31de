"""The composition root: build every component from settings and join them in one ASGI app.

A plain ASGI dispatcher in front keeps the data plane (``/api/…``) off FastAPI's routing; the
identity provider, health, metrics and admin API run on FastAPI behind it.  The dispatcher
gives every request an ``X-Request-ID`` that the audit event carries too.
"""

from __future__ import annotations

from functools import partial
from importlib.metadata import version as pkg_version
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from ztgw.audit.errors import AuditUnavailable
from ztgw.audit.events import random_hex
from ztgw.audit.log import AuditLog
from ztgw.audit.remote import RemoteAuditLog
from ztgw.audit.store import AuditStore

from .admin.api import build_admin_api
from .catalogue import Catalogue
from .dataplane.auditpath import subject_ref
from .dataplane.clientip import ClientAddressResolver
from .dataplane.federation import CompositeVerifier, FederatedIssuer, FederatedVerifier
from .dataplane.identity_header import load_or_create_key as load_or_create_identity_key
from .dataplane.obligations import DailyQuota
from .dataplane.posture import PostureVerifier
from .dataplane.proxy import DataPlane, DataPlaneConfig, Receive, Scope, Send, fail_open_datasets
from .dataplane.ratelimit import RateLimit, RateLimiter
from .dataplane.routes import RouteTable
from .dataplane.signatures import ApiKeyStore, SignatureVerifier
from .dataplane.upstream import UpstreamConfig, UpstreamPool
from .grants import Grants
from .grants.api import build_grants_router
from .grants.console import Console
from .http import JSONResponse as ORJSONResponse
from .identity.auditing import REQUIRED_ACTIONS, AuditRefused, OutboxRelay
from .identity.authn import Authenticator
from .identity.client_secrets import SecretHasher, load_or_create_pepper
from .identity.extensions import attach_login_extensions
from .identity.http import build_router
from .identity.keys import KeyRing
from .identity.oauth import ZtgwAuthorizationServer
from .identity.revocation import RevocationList
from .identity.sessions import CsrfGuard, SessionManager
from .identity.store import OAuthStore
from .identity.subjects import SubjectResolver
from .identity.tokens import AccessTokenVerifier, TokenIssuer
from .identity.totp import SecretSealer
from .identity.web import IdentityWeb
from .metrics import Metrics
from .pii_sampler import sampled_findings
from .policy_runtime import PolicyRuntime
from .protection.cli import REGISTRY_FILE as WATERMARK_REGISTRY
from .protection.keys import ProtectionKeys
from .protection.watermark import Watermarker, WatermarkRegistry
from .settings import Settings
from .state.database import open_directory
from .state.limits import RedisQuotaStore, RedisRateLimitStore
from .state.notify import ChangeBus
from .tracing import Tracing

VERSION = pkg_version("ztgw")
DATA_PLANE_ROOT = b"/api/"
HEALTH_PATHS = frozenset({b"/healthz", b"/readyz", b"/metrics"})
TOKEN_PATH = b"/oauth2/token"  # served without the framework (identity.http.token_asgi)


def new_request_id() -> str:
    return random_hex(12)


class Gateway:
    """The whole gateway as one ASGI application."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        issuer = settings.effective_issuer
        self.metrics = Metrics(VERSION)
        # SQLite under the home or directory_url (PostgreSQL), migrated to the newest schema
        self.directory = open_directory(settings)
        self.shared = settings.state_settings()  # Redis when redis_url is set (issue 11)
        self.changes = ChangeBus(self.shared) if self.shared.distributed else None
        if self.changes is not None:
            self.changes.watch_engine(self.directory.engine)
        self.catalogue = Catalogue(self.directory)
        # issue 6: grants and consents; the data plane reads them from an in-memory index that
        # follows a change counter (every replica within 1 s; at once with the Redis change bus)
        self.grants = Grants(self.directory, self.catalogue, settings.keys_dir, self._emit,
                             lambda outcome, s: self.metrics.grant_approval.labels(outcome).observe(s))
        self.grants.index.start()
        if self.changes is not None:
            for table in ("grants", "consents"):
                self.changes.on_change(table, lambda _t: self.grants.index.poll_once())
        self.keyring = KeyRing.load_or_create(settings.keys_dir)
        pepper = (bytes.fromhex(settings.secret_pepper.get_secret_value())
                  if settings.secret_pepper else load_or_create_pepper(settings.keys_dir))
        self.hasher = SecretHasher(pepper)
        self.issuer = TokenIssuer(self.keyring, issuer, settings.data_audience,
                                  settings.access_token_ttl, alg=settings.access_token_alg)
        self.oauth_store = OAuthStore(self.directory.engine)
        self.revocations = RevocationList(self.oauth_store)
        if self.changes is not None:  # another replica revoked: look now, not at the next poll
            self.changes.on_change("oauth_revoked",
                                   lambda _t: self.revocations.refresh(force=True))
        self.verifier = AccessTokenVerifier(self.keyring, issuer, settings.data_audience,
                                            leeway=settings.token_leeway,
                                            revocations=self.revocations)
        self.pepper = pepper
        self.policy_runtime = PolicyRuntime(settings)  # load + verify; hot reload, shadow
        self.engine = self.policy_runtime.engine
        # the audit trail: in-process writer, or — with several worker processes — the home's
        # audit daemon (gateway/auditd.py), which then also runs the detection engine
        self.audit: AuditLog | RemoteAuditLog = (
            RemoteAuditLog(settings.audit_socket) if settings.audit_socket is not None
            else AuditLog.from_settings(settings.audit_settings()))
        # issue 10: detection follows the audit store; blocklist for the data plane to consult
        from ztgw.scanners.engine import build_service
        from ztgw.scanners.response import Blocklist

        self.detection, self.responses = build_service(settings, self._emit)
        if isinstance(self.audit, AuditLog):
            self.detection.attach(self.audit)  # the writer hands its parsed documents over
        from .pii_sampler import from_settings as pii_sampler_from_settings

        # issue 10: the data plane offers upstream answers (before masking); findings only
        self.pii_sampler = pii_sampler_from_settings(settings)
        self.blocklist = Blocklist(self.responses)
        self.oauth = ZtgwAuthorizationServer(
            self.directory, self.hasher, self.issuer, store=self.oauth_store,
            verifier=self.verifier, refresh_ttl=settings.refresh_token_ttl,
            on_signal=self._identity_event)
        self.sessions = SessionManager(
            self.oauth_store, self.directory, self.issuer, settings.session_idle_timeout,
            settings.session_max_age, issuer.startswith("https://"), on_event=self._identity_event)
        self.authn = Authenticator(self.directory, self.oauth_store, SecretSealer(pepper),
                                   iterations=settings.password_iterations)
        self.authn.external_lock = self.blocklist.account_locked  # detection's account locks
        self.identity_web = IdentityWeb(self.oauth, self.sessions, self.authn, CsrfGuard(pepper),
                                        issuer, self._identity_event)
        attach_login_extensions(self.identity_web, settings, pepper)
        self.identity_outbox = OutboxRelay(  # CLI admin events; one relaying worker per home
            self.directory.engine, self.audit.emit, lock_path=settings.home / "identity-outbox.lock")
        protection_keys = ProtectionKeys.load_or_create(settings.keys_dir)
        self.federation = FederatedVerifier(
            [FederatedIssuer.parse(raw) for raw in settings.federated_issuers],
            leeway=settings.token_leeway, linked_user=self.oauth_store.linked_user)
        routes = RouteTable(self.catalogue.all())
        self.tracing = Tracing(settings, VERSION)
        self.data_plane = DataPlane(
            config=DataPlaneConfig(
                max_request_body=settings.max_request_body,
                receive_timeout=settings.request_receive_timeout,
                identity_key=load_or_create_identity_key(settings.keys_dir),
                passthrough=settings.data_plane_passthrough,
                fail_open=fail_open_datasets(settings.fail_open_datasets, routes),
                cert_clients=dict(settings.client_certificates),
                posture=(PostureVerifier.from_files(settings.device_attesters)
                         if settings.device_attesters else None),
            ),
            upstream=UpstreamPool(UpstreamConfig(
                connect_timeout=settings.upstream_connect_timeout,
                read_timeout=settings.upstream_read_timeout,
                max_response_body=settings.max_response_body,
                breaker_failures=settings.upstream_breaker_failures,
                breaker_reset=settings.upstream_breaker_reset,
            ), self.metrics),
            addresses=ClientAddressResolver(settings.trusted_proxies, settings.network_zones),
            limiter=RateLimiter([RateLimit(**lim) for lim in settings.rate_limits],
                                store=RedisRateLimitStore(self.shared) if self.shared.distributed
                                else None, fail_open=self.shared.fail_open),
            quota=DailyQuota(RedisQuotaStore(self.shared) if self.shared.distributed else None,
                             fail_open=self.shared.fail_open),
            keys=protection_keys,
            watermarker=Watermarker(protection_keys.watermark,
                                    WatermarkRegistry(settings.home / WATERMARK_REGISTRY)),
            signatures=SignatureVerifier(ApiKeyStore(self.directory)),
            blocklist=self.blocklist,
            entitlements=self.grants.index,
            routes=routes,
            tracer=self.tracing.tracer,
            pii_sampler=self.pii_sampler,
            verifier=CompositeVerifier(self.verifier, self.federation),
            subjects=SubjectResolver(self.directory),
            engine=self.engine,
            audit=self.audit,
            metrics=self.metrics,
        )
        self.api = self._build_api(issuer)
        admin_api = build_admin_api(
            verifier=self.verifier, subjects=SubjectResolver(self.directory), engine=self.engine,
            audit_store=self._audit_reader, catalogue=self.catalogue, directory=self.directory,
            emit=self._emit, version=VERSION,
        )
        admin_api.include_router(build_grants_router(
            service=self.grants.service, verifier=self.verifier,
            subjects=SubjectResolver(self.directory), engine=self.engine, emit=self._emit))
        self.api.mount("/admin/v1", admin_api)
        self.api.include_router(Console(
            service=self.grants.service, sessions=self.sessions, csrf=CsrfGuard(pepper),
            directory=self.directory, engine=self.engine, audit_store=self._audit_reader,
            pii_findings=lambda ds: sampled_findings(self.pii_sampler.path, ds),
            subject_ref=partial(subject_ref, protection_keys.audit_subject)).router())
        self._audit_store: AuditStore | None = None

    def _audit_reader(self) -> AuditStore:
        if self._audit_store is None:
            self._audit_store = AuditStore(self.settings.audit_settings().db_path)
        return self._audit_store

    # --- FastAPI side --------------------------------------------------------------------
    def _emit(self, event: dict[str, Any]) -> None:
        try:
            self.audit.emit(event)
        except AuditUnavailable:
            self.metrics.audit_events.labels("dropped").inc()

    def _emit_strict(self, event: dict[str, Any]) -> None:
        """For events that grant access: the caller refuses when the trail does not take it."""
        try:
            self.audit.emit(event)
        except AuditUnavailable:
            self.metrics.audit_events.labels("dropped").inc()
            raise

    def _identity_event(self, action: str, fields: dict[str, Any]) -> None:
        from ztgw.audit.events import auth_event

        failure = action.endswith("failed") or action in ("refresh-token-reuse",)
        event = auth_event(
            action=action, outcome="failure" if failure else "success",
            request_id=fields.get("request_id") or new_request_id(),
            client_id=fields.get("client_id"), source_ip=fields.get("source_ip"),
            reason=fields.get("reason"), user=fields.get("username"),
        )
        if action not in REQUIRED_ACTIONS:
            self._emit(event)
            return
        try:  # no audit, no access (identity.auditing): the caller refuses the sign-in
            self._emit_strict(event)
        except AuditUnavailable as exc:
            raise AuditRefused(action) from exc

    def _build_api(self, issuer: str) -> FastAPI:
        api = FastAPI(title="ztgw", version=VERSION, docs_url=None, redoc_url=None,
                      openapi_url=None, default_response_class=ORJSONResponse)
        identity_router = build_router(self.oauth, self.keyring, issuer, self._emit_strict,
                                       audit_ready=lambda: self.audit.healthy)
        self.token_endpoint = identity_router.token_asgi  # type: ignore[attr-defined]
        api.include_router(identity_router)
        api.include_router(self.identity_web.router())

        @api.get("/healthz", operation_id="healthz", tags=["health"])
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @api.get("/readyz", operation_id="readyz", tags=["health"])
        async def readyz() -> Response:
            checks = {
                "policy": bool(self.engine.policy.bundle.name),
                "audit": self.audit.healthy,
                "keys": bool(self.keyring.algorithms),
                "directory": self._directory_ok(),
                # a pass-through gateway (benchmarks) must never look ready to a load balancer
                "security_pipeline": not self.settings.data_plane_passthrough,
            }
            if self.shared.distributed:  # rate limits and quotas fail closed without it
                checks["shared_state"] = await self._shared_state_ok()
            ok = all(checks.values())
            return ORJSONResponse({"status": "ready" if ok else "not_ready", "checks": checks},
                                  status_code=200 if ok else 503)

        @api.get("/metrics", operation_id="metrics", tags=["health"])
        async def metrics() -> Response:
            self.metrics.audit_queue.set(self.audit.depth)
            return Response(generate_latest(self.metrics.registry),
                            media_type=CONTENT_TYPE_LATEST)

        def _error(request: Request, status: int, code: str, message: str) -> ORJSONResponse:
            return ORJSONResponse(
                {"error": code, "message": message,
                 "request_id": request.scope.get("ztgw.request_id", "")},
                status_code=status,
            )

        @api.exception_handler(StarletteHTTPException)
        async def http_error(request: Request, exc: StarletteHTTPException) -> ORJSONResponse:
            codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthenticated",
                     403: "access_denied"}
            return _error(request, exc.status_code, codes.get(exc.status_code, "http_error"),
                          str(exc.detail))

        @api.exception_handler(RequestValidationError)
        async def validation_error(request: Request, exc: RequestValidationError) -> ORJSONResponse:
            return _error(request, 422, "invalid_request", "the request is not valid")

        @api.exception_handler(Exception)
        async def unexpected(request: Request, exc: Exception) -> ORJSONResponse:
            return _error(request, 500, "internal_error", "internal error")

        return api

    async def _shared_state_ok(self) -> bool:
        store = self.data_plane.limiter.store
        if not isinstance(store, RedisRateLimitStore):
            return True
        return await store.ping() or self.shared.fail_open

    def _directory_ok(self) -> bool:
        try:
            self.directory.get_client("")
            return True
        except Exception:
            return False

    # --- ASGI ----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets here
        rid = new_request_id()
        scope["ztgw.request_id"] = rid
        rid_header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), rid_header,
                                      (b"x-content-type-options", b"nosniff")]
            await send(message)

        raw = scope.get("raw_path") or scope["path"].encode()
        if raw.startswith(DATA_PLANE_ROOT) or self.data_plane.handles(raw):
            await self.data_plane(scope, receive, send_with_id)  # checks the blocklist itself
            return
        if raw not in HEALTH_PATHS and self._blocked(scope):
            # an address blocked by an automatic response: no sign-in, token, console or admin
            body = orjson.dumps({"error": "address_blocked", "request_id": rid,
                                 "message": "this address is temporarily blocked"})
            await send_with_id({"type": "http.response.start", "status": 403, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store")]})
            await send_with_id({"type": "http.response.body", "body": body})
            return
        if raw == TOKEN_PATH:
            await self.token_endpoint(scope, receive, send_with_id)
        else:
            await self.api(scope, receive, send_with_id)

    def _blocked(self, scope: Scope) -> bool:
        client = scope.get("client")
        xff = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"), None)
        ip = self.data_plane.addresses.client_ip(client[0] if client else None, xff)
        return self.blocklist.blocked_ip(ip)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if isinstance(self.audit, RemoteAuditLog):
                        await self.audit.start_async()
                    else:
                        self.audit.start()
                        if self.settings.detect_enabled:
                            self.detection.start()
                    self.pii_sampler.start()
                    await self.policy_runtime.start(self._emit)
                    if self.changes is not None:
                        self.changes.start()
                    self.identity_outbox.start()
                    await self.data_plane.start()
                    self.federation.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.identity_outbox.stop()
                await self.policy_runtime.stop()
                if self.changes is not None:
                    self.changes.close()
                await self.data_plane.stop()
                self.federation.stop()
                self.tracing.shutdown()
                self.detection.stop()
                self.pii_sampler.stop()
                if isinstance(self.audit, RemoteAuditLog):
                    await self.audit.close_async()
                else:
                    self.audit.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app() -> Gateway:
    """uvicorn factory: settings from the environment (``ZTGW_*``) and the config file."""
    return Gateway(Settings())
