"""The data-plane request pipeline, as a plain ASGI application (no framework on the hot path).

ingress (canonical path, limits) → identity (bearer JWT) → decision (policy engine) →
upstream (pooled aiohttp client) → obligations (mask) → audit → response.

Every failure becomes a JSON error and an audit event; nothing is forwarded that has not been
allowed, and no response leaves whose obligations could not be carried out.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode

import orjson
from opentelemetry.trace import SpanKind, Status, StatusCode

from ztgw.audit.errors import AuditUnavailable
from ztgw.audit.events import access_event
from ztgw.audit.log import AuditLog
from ztgw.crypto import sm3
from ztgw.policies.domain import Classification, Decision, Environment, Resource, Subject
from ztgw.policies.engine import PolicyEngine
from ztgw.scanners.response import Blocklist

from ..catalogue import Dataset
from ..errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    TooManyRequests,
    Unauthenticated,
    UpstreamError,
    error_body,
)
from ..identity.subjects import SubjectResolver
from ..identity.tokens import AccessToken, AccessTokenVerifier, TokenInvalid
from ..metrics import Metrics, status_class
from ..protection.keys import ProtectionKeys
from ..protection.streaming import ENCODINGS, BodyStream, StreamError
from ..protection.watermark import Watermarker
from .auditpath import mask_path, subject_ref
from .clientip import ClientAddressResolver
from .httpclient import ClientError, StreamedBody
from .identity_header import HEADER as IDENTITY_HEADER
from .identity_header import sign_identity
from .obligations import (
    DailyQuota,
    StepUpRequired,
    Unenforceable,
    apply_csv,
    apply_json,
    build_plan,
    finish_stream,
    rewrite_query,
    start_watermark,
    stream_pipeline,
)
from .paths import PathRejected, canonical_path
from .posture import HEADER as POSTURE_HEADER
from .posture import PostureInvalid, PostureVerifier
from .ratelimit import RateLimiter
from .routes import RouteMatch, RouteTable
from .signatures import SCHEME as SIGNATURE_SCHEME
from .signatures import SignatureRejected, SignatureVerifier
from .upstream import UpstreamPool

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

ACTIONS = {"GET": "read", "HEAD": "read"}  # the demo data APIs are read-only
REFUSED_METHODS = frozenset({"TRACE", "CONNECT", "TRACK"})
log = logging.getLogger("ztgw.dataplane")
FORWARDED_REQUEST_HEADERS = ("accept", "accept-language", "user-agent")
MAX_QUERY_BYTES = 4096


@dataclass
class Exchange:
    """What one request collected on its way through the pipeline (for the audit event)."""

    request_id: str
    method: str
    path: str
    started_ns: int
    source_ip: str | None
    user_agent: str | None
    query_keys: list[str] = field(default_factory=list)
    subject: Subject | None = None
    decision: Decision | None = None
    route: RouteMatch | None = None
    data: dict[str, Any] | None = None
    watermark_id: str | None = None
    token_fingerprint: str | None = None
    device: dict[str, str] | None = None  # the device posture statement's facts (or its error)
    status: int = 0
    error_code: str | None = None
    span: Any = None  # an OpenTelemetry span when tracing is on


class Entitlements(Protocol):
    """Adds the caller's active grant and consents as subject attributes (gateway/grants)."""

    def apply(self, subject: Subject, dataset: Dataset) -> Subject: ...


@dataclass(frozen=True, slots=True)
class DataPlaneConfig:
    max_request_body: int
    receive_timeout: float
    identity_key: bytes  # HMAC-SM3 key for the X-ZTGW-Identity header sent upstream
    passthrough: bool = False  # benchmarks only: no authentication, decision, masking or audit
    # 一般 datasets served even when the audit trail cannot take their event (never 重要/核心)
    fail_open: frozenset[str] = frozenset()
    # verified TLS client certificates (SHA-256, base64url) that identify a client (mTLS)
    cert_clients: dict[str, str] = field(default_factory=dict)
    # device-trust services whose signed posture statements fill the environment's device
    posture: PostureVerifier | None = None


CERT_IDENTITY_SECONDS = 60  # the "token" a certificate stands for lives as long as this


def certificate_identity(client_id: str, x5t: str) -> AccessToken:
    """A verified client certificate mapped to a client acts as that client (RFC 8705's
    ``tls_client_auth`` idea, without a token): roles from the directory as for any client."""
    return AccessToken(subject=f"client:{client_id}", client_id=client_id, scope=frozenset(),
                       expires_at=int(time.time()) + CERT_IDENTITY_SECONDS,
                       jti=f"mtls:{x5t[:32]}", claims={"cnf": {"x5t#S256": x5t}, "amr": ["mtls"]})


STREAM_FORMATS = (("application/json", "json"), ("application/x-ndjson", "ndjson"),
                  ("application/ndjson", "ndjson"), ("text/csv", "csv"))
STREAM_ENCODINGS = frozenset(ENCODINGS)


class StreamAborted(Exception):
    """A streamed answer failed half-way: the connection is dropped (never a cut body that
    looks whole)."""


@dataclass(slots=True)
class Streaming:
    upstream: StreamedBody
    body: BodyStream | None  # None: no obligation, chunks pass as they are
    plan: Any
    subject_id: str
    dataset: Dataset


def end_span(ex: Exchange) -> None:
    """Close the request's span with what the audit event says — no personal data: the route
    template, not the path (a record path holds an ID number), the application, not the user."""
    span = ex.span
    attrs: dict[str, Any] = {"http.response.status_code": ex.status}
    if ex.route is not None:
        ds = ex.route.dataset
        attrs["http.route"] = ds.route_prefix + ("/{id}" if ex.route.record_id else "")
        attrs["ztgw.dataset"] = ds.dataset
        attrs["ztgw.classification"] = ds.classification.label
        span.update_name(f"{ex.method} {attrs['http.route']}")
    if ex.subject is not None:
        attrs["ztgw.client_id"] = ex.subject.client_id
    if ex.decision is not None:
        attrs["ztgw.decision"] = ex.decision.effect
        if ex.decision.rule_id:
            attrs["ztgw.rule_id"] = ex.decision.rule_id
    if ex.data is not None:
        attrs["ztgw.records"] = int(ex.data.get("records") or 0)
    if ex.error_code:
        attrs["error.type"] = ex.error_code
    span.set_attributes(attrs)
    if ex.status >= 500:
        span.set_status(Status(StatusCode.ERROR, ex.error_code or str(ex.status)))
    span.end()


def fail_open_datasets(names: list[str], routes: RouteTable) -> frozenset[str]:
    """Validate ``fail_open_datasets``: each must be a catalogued dataset classified 一般."""
    known = {d.dataset: d for d in routes.datasets}
    for name in names:
        ds = known.get(name)
        if ds is None:
            raise ValueError(f"fail_open_datasets: {name!r} is not a catalogued dataset")
        if ds.classification != Classification.GENERAL:
            raise ValueError(f"fail_open_datasets: {name!r} is classified "
                             f"{ds.classification.label}; only 一般 data may fail open")
    return frozenset(names)


class DataPlane:
    def __init__(self, *, config: DataPlaneConfig, routes: RouteTable, verifier: AccessTokenVerifier,
                 subjects: SubjectResolver, engine: PolicyEngine, audit: AuditLog,
                 metrics: Metrics, upstream: UpstreamPool, addresses: ClientAddressResolver,
                 limiter: RateLimiter, keys: ProtectionKeys, watermarker: Watermarker,
                 signatures: SignatureVerifier | None = None,
                 blocklist: Blocklist | None = None, quota: DailyQuota | None = None,
                 entitlements: Entitlements | None = None, tracer: Any = None,
                 pii_sampler: Any = None) -> None:
        self.config, self.routes, self.verifier = config, routes, verifier
        self.pii_sampler = pii_sampler  # `ztgw scan pii --sampled` (gateway/pii_sampler.py)
        self.tracer = tracer  # OpenTelemetry tracer, or None (gateway/tracing.py)
        self.subjects, self.engine, self.audit, self.metrics = subjects, engine, audit, metrics
        self.upstream, self.addresses, self.limiter = upstream, addresses, limiter
        self.keys, self.watermarker = keys, watermarker
        self.subject_key = keys.audit_subject
        self.quota = quota or DailyQuota()  # shared in Redis when scaled out (ztgw.gateway.state)
        self.signatures = signatures
        self.blocklist = blocklist  # automatic responses of the detection engine (issue 10)
        self.entitlements = entitlements  # active grants and consents (issue 6, grants/index.py)

    async def start(self) -> None:
        await self.upstream.start()

    async def stop(self) -> None:
        await self.upstream.stop()

    def handles(self, raw_path: bytes) -> bool:
        return raw_path.startswith(self.routes.raw_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        ex = Exchange(
            request_id=scope["ztgw.request_id"],
            method=scope["method"],
            path=scope.get("raw_path", b"").decode("latin-1")[:512] or scope["path"],
            started_ns=time.time_ns(),
            source_ip=self.addresses.client_ip(client[0] if client else None,
                                               headers.get("x-forwarded-for")),
            user_agent=headers.get("user-agent"),
        )
        if self.config.passthrough:
            await self._passthrough(scope, headers, ex, send)
            return
        if self.tracer is None:
            await self._serve(scope, receive, send, headers, ex)
            return
        ex.span = self.tracer.start_span("data-api", kind=SpanKind.SERVER, attributes={
            "http.request.method": ex.method, "ztgw.request_id": ex.request_id})
        try:
            await self._serve(scope, receive, send, headers, ex)
        finally:
            end_span(ex)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str],
                     ex: Exchange) -> None:
        try:
            status, out_headers, body, durable = await self._handle(scope, receive, headers, ex)
        except GatewayError as err:
            await self._fail(err, ex, send)
            return
        except Exception:  # last-resort handler (ASVS 16.5.4): generic error, event kept
            await self._fail(GatewayError("internal error"), ex, send)
            raise
        try:
            waiter = self._audit(ex, status, "success" if status < 400 else "failure", None,
                                 wait=durable)
            if waiter is not None:
                # 重要/核心 data: the event is on disk before a byte of data leaves
                await waiter
        except AuditUnavailable:
            ds = ex.route.dataset if ex.route is not None else None
            if (ds is None or durable or ds.dataset not in self.config.fail_open
                    or ds.classification != Classification.GENERAL):
                await self._send(send, 503, [], error_body(
                    "audit_unavailable", "the audit trail is unavailable; access refused",
                    ex.request_id), ex)
                return
            # fail-open route (一般 only, configured): served, and counted where operators look
            self.metrics.audit_events.labels("fail_open_unaudited").inc()
            log.warning("audit trail unavailable: served a fail-open 一般 request unaudited",
                        extra={"dataset": ds.dataset, "request_id": ex.request_id})
        if isinstance(body, Streaming):
            await self._send_stream(send, status, out_headers, body, ex)
            return
        await self._send(send, status, out_headers, body, ex)

    async def _passthrough(self, scope: Scope, headers: dict[str, str], ex: Exchange,
                           send: Send) -> None:
        """The proxy alone, to measure what the security pipeline costs (bench/)."""
        try:
            route = self.routes.match(canonical_path(scope.get("raw_path") or b""))
            if route is None:
                raise NotFound("no data API at this path")
            query = scope.get("query_string", b"").decode("ascii")
            up = await self.upstream.fetch(
                route.dataset.upstream_url, route.upstream_path + ("?" + query if query else ""),
                scope["method"], {"accept": headers.get("accept", "*/*")}, route.dataset.dataset)
        except (GatewayError, PathRejected) as err:
            await self._send(send, 502, [], error_body("passthrough", str(err), ex.request_id), ex)
            return
        ctype = up.headers.get("content-type", "application/octet-stream").encode("latin-1")
        await self._send(send, up.status, [(b"content-type", ctype)], up.body, ex)

    # --- pipeline ------------------------------------------------------------------------
    async def _handle(self, scope: Scope, receive: Receive, headers: dict[str, str],
                      ex: Exchange) -> tuple[int, list[tuple[bytes, bytes]], bytes, bool]:
        method = scope["method"]
        if method in REFUSED_METHODS:
            raise MethodNotAllowed(f"{method} is not allowed")
        try:
            path = canonical_path(scope.get("raw_path") or scope["path"].encode())
        except PathRejected as exc:
            raise BadRequest(str(exc), code="invalid_path") from exc
        ex.path = path
        query = scope.get("query_string", b"")
        if len(query) > MAX_QUERY_BYTES:
            raise BadRequest("the query string is too long", code="invalid_query")
        try:
            params = parse_qsl(query.decode("utf-8", "strict"), keep_blank_values=True,
                               strict_parsing=False, max_num_fields=64)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadRequest("the query string is malformed", code="invalid_query") from exc
        ex.query_keys = sorted({k for k, _ in params})
        if self.blocklist is not None and self.blocklist.blocked_ip(ex.source_ip):
            raise Forbidden("this address is temporarily blocked", code="address_blocked")
        route = self.routes.match(path)
        if route is None:
            raise NotFound("no data API at this path")
        ex.route = route
        action = ACTIONS.get(method)
        if action is None:
            raise MethodNotAllowed(f"{method} is not allowed on this data API")
        body_in = await self._drain_body(scope, receive, headers)

        authorization = headers.get("authorization", "")
        peer_cert = scope.get("ztgw.peer_cert_sha256")
        if authorization.startswith(SIGNATURE_SCHEME + " "):
            at = self._signed_request(authorization, method, path, params, body_in)
        elif not authorization and peer_cert is not None and peer_cert in self.config.cert_clients:
            at = certificate_identity(self.config.cert_clients[peer_cert], peer_cert)
        else:
            token = self._bearer(headers, params)
            try:
                at = self.verifier.verify(token)
            except TokenInvalid as exc:
                self.metrics.authn_failures.labels(exc.reason).inc()
                raise Unauthenticated(str(exc), code="invalid_token") from exc
            cnf = at.claims.get("cnf")
            bound = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
            if bound is not None and not hmac.compare_digest(str(bound), peer_cert or ""):
                # RFC 8705 §3: a certificate-bound token is used with that certificate only
                self.metrics.authn_failures.labels("certificate_mismatch").inc()
                raise Unauthenticated("the token is bound to another client certificate",
                                      code="invalid_token")
        if at.jti:
            # SM3 of the token id: lets detection follow one token without logging the token
            ex.token_fingerprint = sm3.digest(at.jti.encode()).hex()[:32]
        subject = self.subjects.resolve(at)
        if subject is None:
            self.metrics.authn_failures.labels("unknown_client").inc()
            raise Unauthenticated("the token's application is unknown or disabled",
                                  code="invalid_token")
        ex.subject = subject
        risk = 0
        if self.blocklist is not None:
            if self.blocklist.token_revoked(ex.token_fingerprint):
                raise Unauthenticated("the token has been revoked", code="invalid_token")
            if subject.kind == "user" and self.blocklist.account_locked(subject.name):
                raise Forbidden("the account is temporarily locked", code="account_locked")
            risk = int(self.blocklist.risk(subject.name))

        ds = route.dataset
        resource = Resource(
            dataset=ds.dataset, classification=ds.classification,
            owner_department=ds.owner_department, record_id=route.record_id, fields=ds.fields,
        )
        env = Environment(time=datetime.now(UTC), source_ip=ex.source_ip,
                          zone=self.addresses.zone_of(ex.source_ip), acr=at.claims.get("acr"),
                          risk_score=risk, device=self._device(headers, at, ex))
        if self.entitlements is not None:  # an in-memory look-up: the caller's grant/consents
            subject = self.entitlements.apply(subject, ds)
        decision = self.engine.decide(subject, resource, action, env)
        ex.decision = decision
        self.metrics.decisions.labels(decision.effect, decision.ruleset or "").inc()
        if not decision.allowed:
            raise Forbidden("access to this data is not permitted", code="access_denied")
        try:  # refuse before fetching if an obligation cannot be carried out
            plan = build_plan(decision, self.keys)
        except StepUpRequired as exc:
            acr = " ".join(exc.acr_values)
            raise GatewayError(
                "a stronger authentication is required for this data", status=401,
                code="insufficient_user_authentication",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_user_authentication", '
                                             f'acr_values="{acr}"'},
            ) from exc
        except Unenforceable as exc:
            raise Forbidden(str(exc), code="obligation_unenforceable") from exc
        wait = await self.limiter.acquire(subject.client_id, ds.dataset)
        if wait > 0:
            raise TooManyRequests("too many requests for this dataset; slow down",
                                  headers={"Retry-After": str(max(1, round(wait)))})
        limit = plan.max_rows
        if plan.daily_limit is not None:
            remaining = await self.quota.remaining(subject.id, ds.dataset, plan.daily_limit)
            if remaining <= 0:
                raise TooManyRequests("the daily record quota for this dataset is used up",
                                      code="quota_exceeded")
            limit = remaining if limit is None else min(limit, remaining)
        forwarded = rewrite_query(plan, params, ds.filter_fields)
        if forwarded is None:
            raise Forbidden("the requested records are outside what you may read",
                            code="row_filter_violation")
        query_text = urlencode(forwarded) if forwarded != params else query.decode("ascii")
        start_watermark(plan, self.watermarker, subject.client_id, ex.request_id, ds.dataset)

        up = await self.upstream.fetch(
            ds.upstream_url, route.upstream_path + ("?" + query_text if query_text else ""),
            method, self._forward_headers(headers, ex, subject, decision), ds.dataset,
            # large list answers stream through the obligations (bounded memory); a record
            # answer stays buffered: a withheld record must still become a 404
            stream=method == "GET" and route.record_id is None,
        )
        status, up_headers, body = up.status, up.headers, up.body
        content_type = up_headers.get("content-type", "")
        if up.stream is not None:
            return self._start_stream(up, content_type, plan, limit, ds, subject, ex)
        if status == 200 and self.pii_sampler is not None:
            # what the upstream really sends, before masking: findings only, off the loop
            self.pii_sampler.offer(ds.dataset, content_type, body)
        if status == 200 and not plan.empty and body:
            try:
                if content_type.startswith("application/json"):
                    body = apply_json(plan, body, limit)
                elif content_type.startswith("text/csv"):
                    body = apply_csv(plan, body, limit)
                else:
                    raise UpstreamError("the upstream answered in a format that cannot be masked",
                                        code="unmaskable_response")
            except LookupError as exc:
                raise NotFound("no such record") from exc
            except (orjson.JSONDecodeError, UnicodeDecodeError, ValueError, csv.Error) as exc:
                raise UpstreamError("the upstream answer is malformed",
                                    code="upstream_malformed") from exc
            if plan.daily_limit is not None:
                await self.quota.consume(subject.id, ds.dataset, plan.records)
        for name in plan.touched:
            level = ds.fields.get(name, Classification.GENERAL)
            self.metrics.masked_fields.labels(level.label).inc()
        ex.data = {
            "dataset": ds.dataset,
            "classification": ds.classification.label,
            "records": plan.records,
            "masked_fields": sorted(plan.touched),
            "obligations_applied": plan.applied(),
            "bytes": len(body),
        }
        if plan.watermark_plan is not None:
            ex.watermark_id = plan.watermark_plan.watermark_id
        out = [
            (b"content-type", content_type.encode("latin-1") or b"application/octet-stream"),
            (b"cache-control", b"no-store"),
        ]
        durable = ds.classification >= Classification.IMPORTANT
        return status, out, body if method != "HEAD" else b"", durable

    def _start_stream(self, up: Any, content_type: str, plan: Any, limit: int | None, ds: Dataset,
                      subject: Subject, ex: Exchange
                      ) -> tuple[int, list[tuple[bytes, bytes]], Any, bool]:
        encoding = (up.headers.get("content-encoding") or "identity").strip().lower()
        fmt = next((f for prefix, f in STREAM_FORMATS if content_type.startswith(prefix)), None)
        try:
            if encoding not in STREAM_ENCODINGS:
                raise UpstreamError("the upstream used an unsupported content encoding",
                                    code="upstream_malformed")
            if plan.empty:
                body_stream = None
            elif fmt is None:
                raise UpstreamError("the upstream answered in a format that cannot be masked",
                                    code="unmaskable_response")
            else:
                pipe = stream_pipeline(plan, limit)
                body_stream = BodyStream(pipe, fmt, encoding,
                                         max_output=self.upstream.config.max_streamed_body)
        except BaseException:
            up.stream.abort()
            raise
        ex.data = {"dataset": ds.dataset, "classification": ds.classification.label,
                   "obligations_applied": plan.applied(), "streamed": True}
        if plan.watermark_plan is not None:
            ex.watermark_id = plan.watermark_plan.watermark_id
        out = [(b"content-type", content_type.encode("latin-1") or b"application/octet-stream"),
               (b"cache-control", b"no-store")]
        if encoding != "identity":
            out.append((b"content-encoding", encoding.encode()))
        streaming = Streaming(up.stream, body_stream, plan, subject.id, ds)
        return 200, out, streaming, ds.classification >= Classification.IMPORTANT

    async def _send_stream(self, send: Send, status: int, headers: list[tuple[bytes, bytes]],
                           st: Streaming, ex: Exchange) -> None:
        """Send a streamed answer: head, then protected chunks as whole records arrive.  A
        failure half-way aborts the connection (no terminating chunk), so a client never
        mistakes a cut answer for a whole one; the completion event says what happened."""
        ex.status = status
        await send({"type": "http.response.start", "status": status, "headers": headers})
        sent = 0
        error: dict[str, str] | None = None
        try:
            async for chunk in st.upstream:
                out = st.body.feed(chunk) if st.body is not None else chunk
                if out:
                    sent += len(out)
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            tail = st.body.close() if st.body is not None else b""
            sent += len(tail)
            await send({"type": "http.response.body", "body": tail})
        except (StreamError, ClientError, OSError) as exc:
            st.upstream.abort()
            error = {"code": "stream_aborted", "message": f"the answer was cut: {type(exc).__name__}"}
            raise StreamAborted(str(exc)) from exc
        finally:
            if st.body is not None:
                finish_stream(st.plan, st.body.pipeline)
            plan = st.plan
            if plan.daily_limit is not None and plan.records:
                await self.quota.consume(st.subject_id, st.dataset.dataset, plan.records)
            ex.data = {**(ex.data or {}), "records": plan.records,
                       "masked_fields": sorted(plan.touched), "bytes": sent}
            with contextlib.suppress(AuditUnavailable):
                # the decision event went out (durably) before the first byte; this one says
                # how the stream ended: records, bytes, masked fields
                self._audit(ex, status, "failure" if error else "success", error,
                            action="data-api-stream-completed")
            self.metrics.requests.labels("data", ex.method, status_class(status)).inc()
            self.metrics.duration.labels("data").observe((time.time_ns() - ex.started_ns) / 1e9)

    def _signed_request(self, header: str, method: str, path: str,
                        params: list[tuple[str, str]], body: bytes) -> AccessToken:
        if self.signatures is None:
            raise Unauthenticated("request signatures are not enabled", code="invalid_request")
        try:
            key = self.signatures.verify(header, method, path, params, body)
        except SignatureRejected as exc:
            self.metrics.authn_failures.labels(f"signature_{exc.reason}").inc()
            raise Unauthenticated(str(exc), code="invalid_signature") from exc
        # the signed request stands for the key's application, like a client-credentials token
        return AccessToken(subject=f"client:{key.client_id}", client_id=key.client_id,
                           scope=frozenset(), expires_at=int(time.time()) + 60, jti="",
                           claims={"acr": "urn:ztgw:acr:sm2-request-signature",
                                   "ztgw_key_id": key.key_id})

    @staticmethod
    def _bearer(headers: dict[str, str], params: list[tuple[str, str]]) -> str:
        if any(k == "access_token" for k, _ in params):
            # RFC 9700 §4.3.2 / RFC 6750 §2.3: never in the URL (logs, referrers, history)
            raise Unauthenticated("tokens go in the Authorization header only",
                                  code="invalid_request")
        value = headers.get("authorization")
        if not value:
            raise Unauthenticated("a bearer token is required", code="missing_token")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("use the Bearer authorization scheme", code="invalid_request")
        return token.strip()

    async def _drain_body(self, scope: Scope, receive: Receive, headers: dict[str, str]) -> bytes:
        declared = headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise BadRequest("bad Content-Length", code="invalid_request")
            if int(declared) > self.config.max_request_body:
                raise PayloadTooLarge("the request body is too large")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.config.receive_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        break
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.config.max_request_body:
                        raise PayloadTooLarge("the request body is too large")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError as exc:
            raise RequestTimeout("the request was not received in time") from exc
        return b"".join(chunks)

    def _device(self, headers: dict[str, str], at: AccessToken, ex: Exchange) -> str | None:
        """The device posture a configured attester signed for this caller, else None (rules
        with ``device_in`` then do not match); the access event says which or why not."""
        value = headers.get(POSTURE_HEADER)
        verifier = self.config.posture
        if value is None or verifier is None:
            return None
        try:
            p = verifier.verify(value, bound_to=(at.client_id, at.subject))
        except PostureInvalid as exc:
            ex.device = {"error": str(exc)}
            self.metrics.authn_failures.labels("device_posture").inc()
            return None
        ex.device = {"id": p.device, "posture": p.posture, "attester": p.attester}
        return p.posture

    def _forward_headers(self, headers: dict[str, str], ex: Exchange, subject: Subject,
                         decision: Decision) -> dict[str, str]:
        # an allow-list: Authorization, cookies, method overrides and forged forwarding or
        # identity headers never reach the upstream
        fwd = {h: headers[h] for h in FORWARDED_REQUEST_HEADERS if h in headers}
        fwd["x-request-id"] = ex.request_id
        if ex.source_ip:
            fwd["x-forwarded-for"] = ex.source_ip
        fwd["x-forwarded-proto"] = "http"
        if ex.span is not None:  # W3C trace context: the upstream's spans hang under ours
            ctx = ex.span.get_span_context()
            fwd["traceparent"] = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
        fwd[IDENTITY_HEADER] = sign_identity(self.config.identity_key, {
            "sub": subject.id, "client_id": subject.client_id, "department": subject.department,
            "rid": ex.request_id, "rule": decision.rule_id,
        })
        return fwd

    # --- output --------------------------------------------------------------------------
    def _audit(self, ex: Exchange, status: int, outcome: str,
               error: dict[str, str] | None, *, wait: bool = False, action: str | None = None) -> Any:
        subject = None
        if ex.subject is not None:
            s = ex.subject
            subject = {
                "id": s.id, "name": s.name, "roles": sorted(s.roles), "client_id": s.client_id,
                "domain": s.department, "organization": s.attributes.get("organization"),
            }
        decision = None
        if ex.decision is not None:
            d = ex.decision
            decision = {
                "effect": d.effect, "reason": d.reason, "rule_id": d.rule_id,
                "ruleset": d.ruleset, "ruleset_version": d.ruleset_version,
                "matched_rules": d.matched_rules,
                "obligations": [o.type for o in d.obligations],
            }
        event = access_event(
            request_id=ex.request_id, method=ex.method, path=mask_path(ex.path),
            query_keys=ex.query_keys,
            status=status, outcome=outcome, source_ip=ex.source_ip, user_agent=ex.user_agent,
            started_ns=ex.started_ns, ended_ns=time.time_ns(), subject=subject,
            decision=decision, data=ex.data, error=error,
            upstream=ex.route.dataset.upstream_url if ex.route else None,
        )
        if ex.decision is not None and "rule" not in event:
            # a default deny has no deciding rule, but the ruleset that decided is evidence too
            event["rule"] = {"ruleset": ex.decision.ruleset, "version": ex.decision.ruleset_version}
        if action is not None:
            event["event"]["action"] = action
        if ex.watermark_id:
            event["ztgw"]["watermark"] = {"id": ex.watermark_id}
        if ex.device is not None:
            event["ztgw"]["device"] = ex.device
        if ex.token_fingerprint:
            # not "token": the audit sanitiser (rightly) replaces any field of that name
            event["ztgw"]["credential"] = {"kind": "access_token",
                                           "fingerprint": ex.token_fingerprint}
        if ex.data is None and ex.route is not None:
            event["ztgw"]["data"] = {
                "dataset": ex.route.dataset.dataset,
                "classification": ex.route.dataset.classification.label,
            }
        if ex.route is not None and ex.route.record_id:
            # the record key, pseudonymised: "who read this record" is answerable without the
            # ID number in the trail (auditpath.py); when the key names the data subject it
            # is also the subject ("who used my data", the citizen's console page)
            ds = ex.route.dataset
            ref = subject_ref(self.subject_key, ex.route.record_id)
            data = {**(event["ztgw"].get("data") or {}), "record": ref}
            if ds.key_field is not None and ds.key_field == ds.subject_field:
                data["subject"] = ref
            event["ztgw"]["data"] = data
        self.metrics.audit_events.labels("ztgw.access").inc()
        return self.audit.emit_async(event, wait=wait)

    async def _fail(self, err: GatewayError, ex: Exchange, send: Send) -> None:
        ex.error_code = err.code
        # the answer is already a refusal, so a full audit queue cannot serve data unaudited
        with contextlib.suppress(AuditUnavailable):
            self._audit(ex, err.status, "failure", {"code": err.code, "message": err.message})
        extra = [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
        await self._send(send, err.status, extra, error_body(err.code, err.message, ex.request_id),
                         ex, content_type=b"application/json")

    async def _send(self, send: Send, status: int, headers: list[tuple[bytes, bytes]],
                    body: bytes, ex: Exchange, content_type: bytes | None = None) -> None:
        ex.status = status
        hdrs = list(headers)
        if content_type is not None or not any(k == b"content-type" for k, _ in hdrs):
            hdrs.append((b"content-type", content_type or b"application/json"))
        hdrs.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": body})
        self.metrics.requests.labels("data", ex.method if ex.method in ACTIONS else "other",
                                     status_class(status)).inc()
        self.metrics.duration.labels("data").observe((time.time_ns() - ex.started_ns) / 1e9)
