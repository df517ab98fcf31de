"""The admin API: ``/admin/v1/…``, described by ``/admin/v1/openapi.json``.

Every call is authenticated with a bearer access token from ztgw and authorised by the policy
engine itself: an admin area is a resource ``ztgw.admin.<area>`` (classified 核心) and the call
an action on it, so who may search the audit trail or read the catalogue is written in the same
reviewable bundle as data access (GB/T 22239 8.1.4.2 d: separation of admin duties).  Each
admin call is an audit event too.
"""


from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ztgw.audit.errors import QueryError
from ztgw.audit.query import FIELDS, AuditQuery, parse_time
from ztgw.audit.store import AuditStore
from ztgw.policies.domain import Classification, Environment, Resource, Subject
from ztgw.policies.engine import PolicyEngine

from ..catalogue import Catalogue
from ..http import JSONResponse
from ..identity.directory import Directory
from ..identity.subjects import SubjectResolver
from ..identity.tokens import AccessTokenVerifier, TokenInvalid

Emit = Callable[[dict[str, Any]], None]


class AdminError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def build_admin_api(*, verifier: AccessTokenVerifier, subjects: SubjectResolver,
                    engine: PolicyEngine, audit_store: Callable[[], AuditStore],
                    catalogue: Catalogue, directory: Directory, emit: Emit,
                    version: str) -> FastAPI:
    api = FastAPI(
        title="ztgw admin API", version=version, openapi_url="/openapi.json", docs_url=None,
        redoc_url=None, default_response_class=JSONResponse,
        generate_unique_id_function=lambda route: route.name,
    )

    def guard(area: str | None, action: Literal["read", "write"] = "read"
              ) -> Callable[[Request], Awaitable[Subject]]:
        async def check(request: Request) -> Subject:
            value = request.headers.get("authorization", "")
            scheme, _, token = value.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AdminError(401, "missing_token", "a bearer token is required",
                                 {"WWW-Authenticate": 'Bearer realm="ztgw-admin"'})
            try:
                at = verifier.verify(token.strip())
            except TokenInvalid as exc:
                raise AdminError(401, "invalid_token", str(exc),
                                 {"WWW-Authenticate": 'Bearer realm="ztgw-admin"'}) from exc
            subject = subjects.resolve(at)
            if subject is None:
                raise AdminError(401, "invalid_token", "unknown or disabled principal")
            if area is None:
                return subject
            resource = Resource(dataset=f"ztgw.admin.{area}", classification=Classification.CORE)
            env = Environment(time=datetime.now(UTC),
                              source_ip=request.client.host if request.client else None,
                              acr=at.claims.get("acr"))
            decision = engine.decide(subject, resource, action, env)
            emit_admin(request, subject, area, action, decision.effect, decision.rule_id)
            if not decision.allowed:
                raise AdminError(403, "access_denied", "this admin function is not permitted")
            return subject

        return check

    def emit_admin(request: Request, subject: Subject, area: str, action: str, effect: str,
                   rule: str | None) -> None:
        from ztgw.audit.events import iso_now, new_event_id

        emit({
            "@timestamp": iso_now(),
            "ecs": {"version": "9.4.0"},
            "event": {"id": new_event_id(), "kind": "event", "category": ["iam", "configuration"],
                      "type": ["access", "allowed" if effect == "allow" else "denied"],
                      "action": f"admin-{area}-{action}",
                      "outcome": "success" if effect == "allow" else "failure",
                      "dataset": "ztgw.admin", "module": "ztgw", "provider": "admin-api"},
            "data_stream": {"type": "logs", "dataset": "ztgw.admin", "namespace": "default"},
            "user": {"id": subject.id, "name": subject.name},
            "http": {"request": {"id": request.scope.get("ztgw.request_id", ""),
                                 "method": request.method}},
            "url": {"path": request.url.path},
            "source": {"ip": request.client.host} if request.client else {},
            "rule": {"id": rule} if rule else {},
            "ztgw": {"oidc": {"client_id": subject.client_id},
                     "decision": {"effect": effect}},
        })

    @api.exception_handler(AdminError)
    async def admin_error(request: Request, exc: AdminError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "message": exc.message,
                             "request_id": request.scope.get("ztgw.request_id", "")},
                            status_code=exc.status, headers=exc.headers)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": "not_found" if exc.status_code == 404 else "http_error",
                             "message": str(exc.detail),
                             "request_id": request.scope.get("ztgw.request_id", "")},
                            status_code=exc.status_code)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()[:5])
        return JSONResponse({"error": "invalid_request", "message": f"invalid parameters: {where}",
                             "request_id": request.scope.get("ztgw.request_id", "")},
                            status_code=400)

    AuditReader = Annotated[Subject, Depends(guard("audit", "read"))]
    CatalogueReader = Annotated[Subject, Depends(guard("catalogue", "read"))]
    DirectoryReader = Annotated[Subject, Depends(guard("directory", "read"))]
    Authenticated = Annotated[Subject, Depends(guard(None))]

    def _query(since: str | None, until: str | None, user: str | None, client: str | None,
               ip: str | None, dataset: str | None, decision: str | None, outcome: str | None,
               request_id: str | None, q: str | None, limit: int) -> AuditQuery:
        try:
            return AuditQuery(
                since=parse_time(since) if since else None,
                until=parse_time(until) if until else None, user=user, client=client,
                source_ip=ip, dataset=dataset, decision=decision, outcome=outcome,
                request_id=request_id, text=q, limit=limit)
        except QueryError as exc:
            raise AdminError(400, "invalid_query", str(exc)) from exc

    @api.get("/audit/events", tags=["audit"], summary="Search the audit trail (newest first)")
    async def audit_events(
        _: AuditReader,
        since: str | None = None, until: str | None = None, user: str | None = None,
        client: str | None = None, ip: str | None = None, dataset: str | None = None,
        decision: Literal["allow", "deny"] | None = None,
        outcome: Literal["success", "failure"] | None = None,
        request_id: str | None = None, q: Annotated[str | None, Query(max_length=256)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        query = _query(since, until, user, client, ip, dataset, decision, outcome, request_id,
                       q, limit)
        store = audit_store()
        return {"total": store.count(query), "events": store.search(query)}

    @api.get("/audit/top", tags=["audit"], summary="Most frequent values of a field")
    async def audit_top(
        _: AuditReader,
        field: Annotated[str, Query(description=f"one of {sorted(FIELDS)}")],
        since: str | None = None, until: str | None = None,
        decision: Literal["allow", "deny"] | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> dict[str, Any]:
        if field not in FIELDS:
            raise AdminError(400, "invalid_query", f"field must be one of {sorted(FIELDS)}")
        query = _query(since, until, None, None, None, None, decision, None, None, None, 100)
        buckets = audit_store().top(query, field, n=limit)
        return {"field": field, "buckets": [{"value": v, "count": c} for v, c in buckets]}

    @api.get("/datasets", tags=["catalogue"], summary="The dataset catalogue")
    async def datasets(_: CatalogueReader) -> dict[str, Any]:
        return {"datasets": [
            {"dataset": d.dataset, "title": d.title, "route_prefix": d.route_prefix,
             "owner_department": d.owner_department, "classification": d.classification.label,
             "fields": {k: v.label for k, v in d.fields.items()}, "enabled": d.enabled}
            for d in catalogue.all()
        ]}

    @api.get("/clients", tags=["directory"], summary="Registered applications (no secrets)")
    async def clients(_: DirectoryReader) -> dict[str, Any]:
        return {"clients": [
            {"client_id": c.client_id, "name": c.name, "public": c.public,
             "roles": list(c.roles), "department": c.department,
             "grant_types": list(c.grant_types), "enabled": c.enabled}
            for c in directory.list_clients()
        ]}

    @api.get("/whoami", tags=["session"], summary="The caller as the policy engine sees it")
    async def whoami(subject: Authenticated) -> dict[str, Any]:
        return {"id": subject.id, "kind": subject.kind, "client_id": subject.client_id,
                "roles": sorted(subject.roles), "department": subject.department,
                "clearance": subject.clearance.label}

    return api
