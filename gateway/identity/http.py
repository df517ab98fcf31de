"""HTTP endpoints of the OpenID provider: discovery (OIDC Discovery 1.0, RFC 8414), JWKS and
the token endpoint (RFC 6749 §3.2), over :mod:`.oauth`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ztgw.audit.events import auth_event

from ..http import JSONResponse as ORJSONResponse
from .keys import KeyRing
from .oauth import GRANT_TYPES_SUPPORTED, TOKEN_AUTH_METHODS, StarletteOAuth2Request
from .oauth import ZtgwAuthorizationServer as Server

MAX_FORM_BYTES = 16 * 1024
JWKS_CACHE = "public, max-age=300"


def discovery_document(issuer: str, keyring: KeyRing) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth2/token",
        "jwks_uri": f"{issuer}/oauth2/jwks",
        "grant_types_supported": list(GRANT_TYPES_SUPPORTED),
        "token_endpoint_auth_methods_supported": list(TOKEN_AUTH_METHODS),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": keyring.algorithms,
        "scopes_supported": ["openid", "data.read", "ztgw.audit.read"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
    }


def build_router(server: Server, keyring: KeyRing, issuer: str,
                 emit: Callable[[dict[str, Any]], None]) -> APIRouter:
    router = APIRouter(tags=["identity"])
    doc = discovery_document(issuer, keyring)

    @router.get("/.well-known/openid-configuration", operation_id="oidc_discovery")
    async def openid_configuration() -> ORJSONResponse:
        return ORJSONResponse(doc, headers={"Cache-Control": "public, max-age=300"})

    @router.get("/.well-known/oauth-authorization-server", operation_id="oauth_metadata")
    async def oauth_metadata() -> ORJSONResponse:
        return ORJSONResponse(doc, headers={"Cache-Control": "public, max-age=300"})

    @router.get("/oauth2/jwks", operation_id="jwks")
    async def jwks() -> ORJSONResponse:
        return ORJSONResponse(keyring.public_jwks(), headers={"Cache-Control": JWKS_CACHE})

    @router.post("/oauth2/token", operation_id="token")
    async def token(request: Request) -> Response:
        rid = request.scope["ztgw.request_id"]
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
        req = StarletteOAuth2Request(
            request.method, str(request.url), request.headers, form,  # type: ignore[arg-type]
            dict(request.query_params),
        )
        status, payload, headers = server.create_token_response(req)
        client_id = req.client.get_client_id() if req.client else (form.get("client_id") or [None])[0]
        grant = (form.get("grant_type") or [None])[0]
        emit(auth_event(
            action="token-issued" if status == 200 else "token-request-failed",
            outcome="success" if status == 200 else "failure",
            request_id=rid, client_id=client_id,
            source_ip=request.client.host if request.client else None,
            reason=None if status == 200 else str(payload.get("error", "")),
            grant_type=grant, scope=payload.get("scope") if status == 200 else None,
        ))
        hdrs = dict(headers)
        hdrs["Cache-Control"] = "no-store"
        return ORJSONResponse(payload, status_code=status, headers=hdrs)

    return router
