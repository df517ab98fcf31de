"""HTTP endpoints of the OpenID provider: discovery (OIDC Discovery 1.0, RFC 8414), JWKS, the
token endpoint (RFC 6749 §3.2), introspection (RFC 7662), revocation (RFC 7009) and userinfo
(OIDC Core §5.3), over :mod:`.oauth`.  Browser pages are in :mod:`.web`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from authlib.common.security import is_secure_transport
from authlib.oauth2.rfc6749.errors import InsecureTransportError
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ztgw.audit.errors import AuditUnavailable
from ztgw.audit.events import auth_event

from ..http import JSONResponse as ORJSONResponse
from .keys import KeyRing
from .oauth import (
    CLAIMS_SUPPORTED,
    GRANT_TYPES_SUPPORTED,
    SCOPES_SUPPORTED,
    TOKEN_AUTH_METHODS,
    StarletteOAuth2Request,
    user_claims,
)
from .oauth import ZtgwAuthorizationServer as Server
from .tokens import TokenInvalid

MAX_FORM_BYTES = 16 * 1024
JWKS_CACHE = "public, max-age=300"


def discovery_document(issuer: str, keyring: KeyRing) -> dict[str, Any]:
    auth_methods = [*TOKEN_AUTH_METHODS, "none"]
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth2/authorize",
        "token_endpoint": f"{issuer}/oauth2/token",
        "userinfo_endpoint": f"{issuer}/oauth2/userinfo",
        "jwks_uri": f"{issuer}/oauth2/jwks",
        # SM2 public keys (JWK kty EC, crv SM2) are kept out of jwks_uri: generic JOSE
        # libraries refuse a whole set with a curve they do not know.  SM2 clients use this:
        "ztgw_sm2_jwks_uri": f"{issuer}/oauth2/jwks/all",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "end_session_endpoint": f"{issuer}/oauth2/logout",
        "grant_types_supported": list(GRANT_TYPES_SUPPORTED),
        "token_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": keyring.algorithms,
        "scopes_supported": list(SCOPES_SUPPORTED),
        "claims_supported": list(CLAIMS_SUPPORTED),
        "acr_values_supported": ["urn:ztgw:acr:pwd", "urn:ztgw:acr:mfa", "urn:ztgw:acr:cert"],
        "prompt_values_supported": ["none", "login", "consent"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
    }


def audit_unavailable() -> ORJSONResponse:
    """No audit, no access: a token is never released unrecorded (RFC 6749 §5.2 has no code
    for this; ``temporarily_unavailable`` is the closest registered one, RFC 6749 §4.1.2.1)."""
    return ORJSONResponse(
        {"error": "temporarily_unavailable",
         "error_description": "the audit trail is unavailable; no token is issued until it is back"},
        status_code=503, headers={"Cache-Control": "no-store", "Retry-After": "5"})


def build_router(server: Server, keyring: KeyRing, issuer: str,
                 emit: Callable[[dict[str, Any]], None],
                 audit_ready: Callable[[], bool] | None = None) -> APIRouter:
    """``emit`` raises :class:`AuditUnavailable` when the trail refuses an event: a token
    issuance is then withdrawn and answered 503; other events are best effort."""
    router = APIRouter(tags=["identity"])

    # authlib refuses OAuth over plain http off loopback (InsecureTransportError, judged on the
    # configured issuer): the fast lane never answers where the full path would refuse
    secure_transport = is_secure_transport(issuer + "/oauth2/token")

    def emit_best_effort(event: dict[str, Any]) -> None:
        # counted by the composition root; a failure event changes nothing for the caller
        with contextlib.suppress(AuditUnavailable):
            emit(event)

    def withdraw(payload: dict[str, Any]) -> None:
        """Revoke what a token response held that was never released (its audit failed)."""
        rt = payload.get("refresh_token")
        rec = server.store.get_refresh(rt) if isinstance(rt, str) else None
        if rec is not None:
            server.store.revoke_family(rec.family_id, "audit_unavailable")
        at = payload.get("access_token")
        view = server.access_view(at) if isinstance(at, str) else None
        if view is not None and view.jti:
            server.revocations_revoke(view.jti, view.exp)
    doc = discovery_document(issuer, keyring)

    @router.get("/.well-known/openid-configuration", operation_id="oidc_discovery")
    async def openid_configuration() -> ORJSONResponse:
        return ORJSONResponse(doc, headers={"Cache-Control": "public, max-age=300"})

    @router.get("/.well-known/oauth-authorization-server", operation_id="oauth_metadata")
    async def oauth_metadata() -> ORJSONResponse:
        return ORJSONResponse(doc, headers={"Cache-Control": "public, max-age=300"})

    @router.get("/oauth2/jwks", operation_id="jwks")
    async def jwks() -> ORJSONResponse:
        return ORJSONResponse(keyring.public_jwks(include_sm2=False),
                              headers={"Cache-Control": JWKS_CACHE})

    @router.get("/oauth2/jwks/all", operation_id="jwks_all")
    async def jwks_all() -> ORJSONResponse:
        return ORJSONResponse(keyring.public_jwks(include_sm2=True),
                              headers={"Cache-Control": JWKS_CACHE})

    async def read_oauth_form(request: Request) -> dict[str, list[str]] | ORJSONResponse:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await request.body()
        if ctype != "application/x-www-form-urlencoded" or len(body) > MAX_FORM_BYTES:
            return ORJSONResponse(
                {"error": "invalid_request",
                 "error_description": "send a form-encoded body (RFC 6749 §4.4.2)"},
                status_code=400, headers={"Cache-Control": "no-store"},
            )
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                            max_num_fields=32)
        except (UnicodeDecodeError, ValueError):
            form = {}
        if any(len(v) > 1 for v in form.values()):
            return ORJSONResponse(
                {"error": "invalid_request", "error_description": "repeated parameters"},
                status_code=400, headers={"Cache-Control": "no-store"},
            )
        return form

    async def oauth_form(request: Request, form: dict[str, list[str]] | None = None
                         ) -> StarletteOAuth2Request | ORJSONResponse:
        if form is None:
            parsed = await read_oauth_form(request)
            if isinstance(parsed, ORJSONResponse):
                return parsed
            form = parsed
        try:
            # the configured issuer, not the Host header: behind a TLS-terminating proxy the
            # socket sees http, and authlib refuses OAuth over http (except on loopback)
            return StarletteOAuth2Request(
                request.method, issuer + request.url.path, request.headers,  # type: ignore[arg-type]
                form, dict(request.query_params),
            )
        except InsecureTransportError:
            return ORJSONResponse(
                {"error": "invalid_request",
                 "error_description": "OAuth needs https: set ZTGW_ISSUER to the https URL"},
                status_code=400, headers={"Cache-Control": "no-store"},
            )

    def respond(status: int, payload: Any, headers: Any) -> ORJSONResponse:
        hdrs = dict(headers)
        hdrs["Cache-Control"] = "no-store"
        hdrs.pop("Content-Type", None)
        return ORJSONResponse(payload, status_code=status, headers=hdrs)

    @router.post("/oauth2/introspect", operation_id="introspect")
    async def introspect(request: Request) -> Response:
        req = await oauth_form(request)
        if isinstance(req, ORJSONResponse):
            return req
        status, payload, headers = await asyncio.to_thread(
            server.create_endpoint_response, "introspection", req)
        return respond(status, payload, headers)

    @router.post("/oauth2/revoke", operation_id="revoke")
    async def revoke(request: Request) -> Response:
        req = await oauth_form(request)
        if isinstance(req, ORJSONResponse):
            return req
        status, payload, headers = await asyncio.to_thread(
            server.create_endpoint_response, "revocation", req)
        emit_best_effort(auth_event(
            action="token-revoked" if status == 200 else "token-revocation-failed",
            outcome="success" if status == 200 else "failure",
            request_id=request.scope["ztgw.request_id"],
            client_id=req.client.get_client_id() if req.client else None,
            source_ip=request.client.host if request.client else None,
            reason=None if status == 200 else str(payload.get("error", "")),
        ))
        return respond(status, payload, headers)

    async def userinfo(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        challenge = 'Bearer realm="ztgw", error="invalid_token"'
        if scheme.lower() != "bearer" or not token.strip():
            return ORJSONResponse({"error": "invalid_token", "error_description": "send a bearer token"},
                                  status_code=401, headers={"WWW-Authenticate": 'Bearer realm="ztgw"',
                                                            "Cache-Control": "no-store"})
        verifier = server.verifier
        assert verifier is not None
        try:
            at = verifier.verify(token.strip())
        except TokenInvalid as exc:
            return ORJSONResponse({"error": "invalid_token", "error_description": str(exc)},
                                  status_code=401, headers={"WWW-Authenticate": challenge,
                                                            "Cache-Control": "no-store"})
        if "openid" not in at.scope or not at.subject.startswith("user:"):
            return ORJSONResponse(
                {"error": "insufficient_scope", "error_description": "userinfo needs an openid token"},
                status_code=403, headers={"WWW-Authenticate": 'Bearer realm="ztgw", '
                                          'error="insufficient_scope", scope="openid"',
                                          "Cache-Control": "no-store"})
        user = await asyncio.to_thread(server.directory.get_user, at.subject[5:])
        if user is None or not user.enabled:
            return ORJSONResponse({"error": "invalid_token", "error_description": "no such user"},
                                  status_code=401, headers={"WWW-Authenticate": challenge,
                                                            "Cache-Control": "no-store"})
        return ORJSONResponse(user_claims(user, " ".join(at.scope)),
                              headers={"Cache-Control": "no-store"})

    router.add_api_route("/oauth2/userinfo", userinfo, methods=["GET", "POST"],
                         operation_id="userinfo")

    @router.post("/oauth2/token", operation_id="token")
    async def token(request: Request) -> Response:
        rid = request.scope["ztgw.request_id"]
        form = await read_oauth_form(request)
        if isinstance(form, ORJSONResponse):
            return form
        if audit_ready is not None and not audit_ready():
            return audit_unavailable()  # before anything is consumed: a code stays redeemable
        fast = None
        if secure_transport and form.get("grant_type") == ["client_credentials"]:
            # CPU-only once the client is cached (1 s): no thread hop; the common well-formed
            # request skips authlib's request objects (same checks, oauth.client_credentials_fast)
            fast = server.client_credentials_fast(form, request.headers.get("authorization"))
        client_id: str | None
        if fast is not None:
            status, headers = 200, (("Pragma", "no-cache"),)
            client_id, payload = fast
        else:
            req = await oauth_form(request, form)
            if isinstance(req, ORJSONResponse):
                return req
            if form.get("grant_type") == ["client_credentials"]:
                status, payload, headers = server.create_token_response(req)
            else:  # code and refresh grants write to the database
                status, payload, headers = await asyncio.to_thread(server.create_token_response, req)
            client_id = (req.client.get_client_id() if req.client
                         else (form.get("client_id") or [None])[0])
        grant = (form.get("grant_type") or [None])[0]
        event = auth_event(
            action="token-issued" if status == 200 else "token-request-failed",
            outcome="success" if status == 200 else "failure",
            request_id=rid, client_id=client_id,
            source_ip=request.client.host if request.client else None,
            reason=None if status == 200 else str(payload.get("error", "")),
            grant_type=grant, scope=payload.get("scope") if status == 200 else None,
        )
        if status != 200:
            emit_best_effort(event)
            return respond(status, payload, headers)
        try:  # recorded before the token leaves (no audit, no access)
            emit(event)
        except AuditUnavailable:
            if grant != "client_credentials":  # those tokens exist in the database: kill them
                await asyncio.to_thread(withdraw, payload)
            return audit_unavailable()
        return respond(status, payload, headers)

    async def read_body(receive: Any) -> bytes | None:
        """The request body, at most ``MAX_FORM_BYTES`` + 1 bytes of it (None: disconnected)."""
        chunks: list[bytes] = []
        size, more = 0, True
        while more and size <= MAX_FORM_BYTES:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def fast_lane(scope: Any, body: bytes) -> tuple[str, dict[str, Any]] | None:
        """The well-formed client-credentials request, straight from the ASGI scope: same
        form rules as :func:`read_oauth_form`, same grant checks (``client_credentials_fast``).
        None sends the request down the full path, which answers every error."""
        ctype = authz = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype = value
            elif name == b"authorization":
                authz = value
        if (ctype is None or authz is None or len(body) > MAX_FORM_BYTES
                or ctype.split(b";")[0].strip().lower() != b"application/x-www-form-urlencoded"):
            return None
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=32)
            authorization = authz.decode("latin-1")
        except (UnicodeDecodeError, ValueError):
            return None
        # (no audit pre-check here: a client-credentials token lives nowhere but in the
        # response, so when the emit below refuses, nothing is left to withdraw)
        if not secure_transport or any(len(v) > 1 for v in form.values()):
            return None
        return server.client_credentials_fast(form, authorization)

    async def token_asgi(scope: Any, receive: Any, send: Any) -> None:
        """The token endpoint as a bare ASGI app: the composition root dispatches
        ``/oauth2/token`` here directly, skipping the framework's routing and middleware
        (the hottest endpoint of the provider).  A well-formed client-credentials request is
        answered here (``fast_lane``); everything else goes through :func:`token`."""
        rid = scope.get("ztgw.request_id", "")
        response: Response
        if scope["method"] != "POST":
            response = ORJSONResponse(
                {"error": "method_not_allowed", "message": "use POST", "request_id": rid},
                status_code=405, headers={"Allow": "POST"})
            await response(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return
        try:
            issued = fast_lane(scope, body)
            if issued is not None:
                client_id, payload = issued
                client = scope.get("client")
                try:  # recorded before the token leaves (no audit, no access)
                    emit(auth_event(
                        action="token-issued", outcome="success", request_id=rid,
                        client_id=client_id, source_ip=client[0] if client else None,
                        grant_type="client_credentials", scope=payload.get("scope")))
                except AuditUnavailable:
                    await audit_unavailable()(scope, receive, send)
                    return
                data = orjson.dumps(payload)
                await send({"type": "http.response.start", "status": 200, "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(data)).encode()),
                    (b"cache-control", b"no-store"), (b"pragma", b"no-cache")]})
                await send({"type": "http.response.body", "body": data})
                return

            async def replay() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            response = await token(Request(scope, replay))
        except Exception:
            response = ORJSONResponse(
                {"error": "internal_error", "message": "internal error", "request_id": rid},
                status_code=500)
        await response(scope, receive, send)

    router.token_asgi = token_asgi  # type: ignore[attr-defined]
    return router
