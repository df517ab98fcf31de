"""Admin API routes for the catalogue, access requests, grants and consent (``/admin/v1/…``).

Authentication is a bearer access token from ztgw (as for every admin route); authorisation is
the policy engine's decision on the admin area, with the target dataset's owner department on
the resource so a bundle rule can say ``same_department: true``:

=============================== ============================================ =================
area (resource)                 who (demo bundle)                            actions
=============================== ============================================ =================
``ztgw.admin.requests``         any application or user: file a request,     read, write
                                ask citizens for consent
``ztgw.admin.grants``           approvers of the owner department            read, write
``ztgw.admin.catalogue``        approvers of the owner department (confirm   read, write
                                classification / PI flags), register
``ztgw.admin.consent``          citizens (their own consents)                read, write
=============================== ============================================ =================

The service re-checks the owner department and role itself.  Every call is an audit event.
"""


import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from ztgw.policies.domain import Classification, Environment, Resource, Subject
from ztgw.policies.engine import PolicyEngine

from ..admin.api import AdminError
from ..catalogue import CatalogueError, Dataset, PersonalInfo
from ..identity.subjects import SubjectResolver
from ..identity.tokens import AccessTokenVerifier, TokenInvalid
from .service import GrantError, GrantService

Emit = Callable[[dict[str, Any]], None]


class AccessRequestIn(BaseModel):
    dataset: str = Field(max_length=128)
    fields: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=256)
    purpose: str = Field(min_length=1, max_length=500)
    days: int | None = Field(None, ge=1, le=366)
    not_before: int | None = None
    expires_at: int | None = None
    row_field: str | None = Field(None, max_length=64)
    row_values: list[Annotated[str, Field(max_length=128)]] | None = Field(None, max_length=1024)
    rows_per_day: int | None = Field(None, ge=1)
    rows_per_request: int | None = Field(None, ge=1)


class DecisionIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class NarrowIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    fields: list[Annotated[str, Field(max_length=64)]] | None = Field(None, max_length=256)
    row_field: str | None = Field(None, max_length=64)
    row_values: list[Annotated[str, Field(max_length=128)]] | None = Field(None, max_length=1024)
    rows_per_day: int | None = Field(None, ge=1)
    rows_per_request: int | None = Field(None, ge=1)
    expires_at: int | None = None


class ConsentRequestIn(BaseModel):
    dataset: str = Field(max_length=128)
    purpose: str = Field(min_length=1, max_length=500)
    days: int = Field(ge=1, le=366)
    fields: list[Annotated[str, Field(max_length=64)]] | None = Field(None, max_length=256)
    citizen: str | None = Field(None, max_length=128)


class ConsentIn(BaseModel):
    days: int | None = Field(None, ge=1, le=366)


class FieldIn(BaseModel):
    classification: str = Field(max_length=16)
    pi: Literal["none", "personal", "sensitive"] = "none"


class DatasetIn(BaseModel):
    dataset: str = Field(max_length=128)
    title: str = Field(min_length=1, max_length=256)
    route_prefix: str = Field(max_length=256)
    upstream_url: str = Field(max_length=512)
    owner_department: str = Field(min_length=1, max_length=256)
    fields: dict[str, FieldIn] = Field(min_length=1, max_length=256)
    key_field: str | None = None
    subject_field: str | None = None
    filter_fields: list[str] = Field(default_factory=list, max_length=64)


def dataset_dict(d: Dataset) -> dict[str, Any]:
    return {"dataset": d.dataset, "title": d.title, "route_prefix": d.route_prefix,
            "owner_department": d.owner_department, "classification": d.classification.label,
            "key_field": d.key_field, "subject_field": d.subject_field,
            "fields": {k: {"classification": v.label,
                           "pi": d.pi.get(k, PersonalInfo.NONE).value} for k, v in d.fields.items()},
            "enabled": d.enabled}


def build_grants_router(*, service: GrantService, verifier: AccessTokenVerifier,
                        subjects: SubjectResolver, engine: PolicyEngine, emit: Emit) -> APIRouter:
    r = APIRouter()

    async def caller(request: Request) -> tuple[Subject, str | None]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
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
        return subject, at.claims.get("acr")

    Caller = Annotated[tuple[Subject, str | None], Depends(caller)]

    def authorise(request: Request, who: tuple[Subject, str | None], area: str,
                  action: Literal["read", "write"], owner: str | None = None) -> Subject:
        subject, acr = who
        resource = Resource(dataset=f"ztgw.admin.{area}", classification=Classification.CORE,
                            owner_department=owner)
        env = Environment(time=datetime.now(UTC),
                          source_ip=request.client.host if request.client else None, acr=acr)
        decision = engine.decide(subject, resource, action, env)
        from ztgw.audit.events import iso_now, new_event_id

        emit({
            "@timestamp": iso_now(), "ecs": {"version": "9.4.0"},
            "event": {"id": new_event_id(), "kind": "event", "category": ["iam", "configuration"],
                      "type": ["access", "allowed" if decision.allowed else "denied"],
                      "action": f"admin-{area}-{action}",
                      "outcome": "success" if decision.allowed else "failure",
                      "dataset": "ztgw.admin", "module": "ztgw", "provider": "admin-api"},
            "data_stream": {"type": "logs", "dataset": "ztgw.admin", "namespace": "default"},
            "user": {"id": subject.id, "name": subject.name},
            "http": {"request": {"id": request.scope.get("ztgw.request_id", ""),
                                 "method": request.method}},
            "url": {"path": request.url.path},
            "source": {"ip": request.client.host} if request.client else {},
            "rule": {"id": decision.rule_id} if decision.rule_id else {},
            "ztgw": {"oidc": {"client_id": subject.client_id},
                     "decision": {"effect": decision.effect}},
        })
        if not decision.allowed:
            raise AdminError(403, "access_denied", "this admin function is not permitted")
        return subject

    async def run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except GrantError as exc:
            raise AdminError(exc.status, exc.code, exc.message) from exc

    def owner_of(dataset: str) -> str | None:
        ds = service.catalogue.get(dataset)
        if ds is None:
            raise AdminError(404, "not_found", f"no dataset {dataset!r}")
        return ds.owner_department

    # --- catalogue -----------------------------------------------------------------------
    @r.get("/datasets/{dataset}", tags=["catalogue"], summary="One dataset with classification "
           "and personal-information flag per field")
    async def dataset_get(request: Request, who: Caller, dataset: str) -> dict[str, Any]:
        authorise(request, who, "catalogue", "read", owner_of(dataset))
        return dataset_dict(service.dataset(dataset))

    @r.put("/datasets/{dataset}", tags=["catalogue"], summary="Register or replace a dataset")
    async def dataset_put(request: Request, who: Caller, dataset: str, body: DatasetIn
                          ) -> dict[str, Any]:
        existing = service.catalogue.get(dataset)
        # a replacement is the current owner's call; a new dataset the new owner's
        authorise(request, who, "catalogue", "write",
                  existing.owner_department if existing else body.owner_department)
        if body.dataset != dataset:
            raise AdminError(400, "invalid_request", "the body names another dataset")
        try:
            d = Dataset(dataset=dataset, title=body.title, route_prefix=body.route_prefix,
                        upstream_url=body.upstream_url, owner_department=body.owner_department,
                        fields={k: Classification.parse(v.classification)
                                for k, v in body.fields.items()},
                        pi={k: PersonalInfo(v.pi) for k, v in body.fields.items()},
                        key_field=body.key_field, subject_field=body.subject_field,
                        filter_fields=frozenset(body.filter_fields))
            await asyncio.to_thread(service.catalogue.register, d)
        except (CatalogueError, ValueError) as exc:
            raise AdminError(400, "invalid_request", str(exc)) from exc
        service._audit(who[0], "dataset-registered", {"dataset": d.dataset,
                                                      "owner_department": d.owner_department})
        return dataset_dict(d)

    @r.put("/datasets/{dataset}/fields/{field}", tags=["catalogue"],
           summary="Confirm a field's classification and personal-information flag")
    async def field_put(request: Request, who: Caller, dataset: str, field: str, body: FieldIn
                        ) -> dict[str, Any]:
        actor = authorise(request, who, "catalogue", "write", owner_of(dataset))
        d = await run(service.confirm_field, actor, dataset, field, body.classification, body.pi)
        return dataset_dict(d)

    # --- access requests -----------------------------------------------------------------
    @r.post("/access-requests", tags=["grants"], status_code=201,
            summary="Ask a data owner for a dataset (fields, purpose, period, rows, quota)")
    async def request_create(request: Request, who: Caller, body: AccessRequestIn) -> dict[str, Any]:
        actor = authorise(request, who, "requests", "write", owner_of(body.dataset))
        req = await run(service.create_request, actor, **body.model_dump())
        return dict(req.as_dict())

    @r.get("/access-requests", tags=["grants"],
           summary="Requests: mine, or (approvers) those for my department's datasets")
    async def request_list(request: Request, who: Caller,
                           status: Literal["pending", "approved", "rejected"] | None = None,
                           mine: bool = False) -> dict[str, Any]:
        subject = who[0]
        if mine:
            authorise(request, who, "requests", "read", None)
            items = service.store.list_requests(requested_by=subject.id, status=status)
        else:
            authorise(request, who, "grants", "read", subject.department)
            owned = [d.dataset for d in service.owned_datasets(subject)]
            items = service.store.list_requests(datasets=owned, status=status)
        return {"requests": [x.as_dict() for x in items]}

    @r.get("/access-requests/{request_id}", tags=["grants"], summary="One request")
    async def request_get(request: Request, who: Caller, request_id: str) -> dict[str, Any]:
        req = await run(service.get_request, request_id)
        if req.requested_by != who[0].id:
            authorise(request, who, "grants", "read", owner_of(req.dataset))
            if not service.may_own(who[0], service.dataset(req.dataset)):
                raise AdminError(403, "access_denied", "not your department's dataset")
        return dict(req.as_dict())

    async def _decide(request: Request, who: Caller, request_id: str, body: DecisionIn,
                      how: Literal["approve", "reject"]) -> dict[str, Any]:
        req = await run(service.get_request, request_id)
        actor = authorise(request, who, "grants", "write", owner_of(req.dataset))
        fn = service.approve if how == "approve" else service.reject
        return dict((await run(fn, actor, request_id, body.reason)).as_dict())

    @r.post("/access-requests/{request_id}/approve", tags=["grants"],
            summary="Approve (核心 data needs two distinct approvers)")
    async def request_approve(request: Request, who: Caller, request_id: str, body: DecisionIn
                              ) -> dict[str, Any]:
        return await _decide(request, who, request_id, body, "approve")

    @r.post("/access-requests/{request_id}/reject", tags=["grants"], summary="Reject with a reason")
    async def request_reject(request: Request, who: Caller, request_id: str, body: DecisionIn
                             ) -> dict[str, Any]:
        return await _decide(request, who, request_id, body, "reject")

    # --- grants --------------------------------------------------------------------------
    @r.get("/grants", tags=["grants"], summary="Grants of my department's datasets, or mine")
    async def grant_list(request: Request, who: Caller, mine: bool = False,
                         status: Literal["active", "revoked"] | None = None) -> dict[str, Any]:
        subject = who[0]
        if mine:
            authorise(request, who, "requests", "read", None)
            items = service.store.list_grants(grantee=subject.id, status=status)
        else:
            authorise(request, who, "grants", "read", subject.department)
            owned = [d.dataset for d in service.owned_datasets(subject)]
            items = service.store.list_grants(datasets=owned, status=status)
        return {"grants": [g.as_dict() for g in items],
                "approval_time_seconds": service.approval_times(
                    None if mine else [d.dataset for d in service.owned_datasets(subject)])}

    @r.get("/grants/{grant_id}", tags=["grants"], summary="One grant")
    async def grant_get(request: Request, who: Caller, grant_id: str) -> dict[str, Any]:
        g = await run(service.get_grant, grant_id)
        if g.grantee != who[0].id:
            authorise(request, who, "grants", "read", owner_of(g.dataset))
            if not service.may_own(who[0], service.dataset(g.dataset)):
                raise AdminError(403, "access_denied", "not your department's dataset")
        return g.as_dict()

    @r.post("/grants/{grant_id}/narrow", tags=["grants"],
            summary="Narrow a grant (fields, rows, quota, period may only shrink)")
    async def grant_narrow(request: Request, who: Caller, grant_id: str, body: NarrowIn
                           ) -> dict[str, Any]:
        g = await run(service.get_grant, grant_id)
        actor = authorise(request, who, "grants", "write", owner_of(g.dataset))
        params = body.model_dump()
        reason = params.pop("reason")
        return (await run(service.narrow, actor, grant_id, reason, **params)).as_dict()

    @r.post("/grants/{grant_id}/revoke", tags=["grants"],
            summary="Revoke a grant (enforced on the next request, every replica within 1 s)")
    async def grant_revoke(request: Request, who: Caller, grant_id: str, body: DecisionIn
                           ) -> dict[str, Any]:
        g = await run(service.get_grant, grant_id)
        actor = authorise(request, who, "grants", "write", owner_of(g.dataset))
        return (await run(service.revoke, actor, grant_id, body.reason)).as_dict()

    # --- consent -------------------------------------------------------------------------
    @r.post("/consent-requests", tags=["consent"], status_code=201,
            summary="An application asks citizens for consent to read their own records")
    async def consent_request_create(request: Request, who: Caller, body: ConsentRequestIn
                                     ) -> dict[str, Any]:
        actor = authorise(request, who, "requests", "write", owner_of(body.dataset))
        cr = await run(service.request_consent, actor, **body.model_dump())
        return {**cr.as_dict(), "consent_url": f"/console/consent/requests/{cr.id}"}

    @r.get("/consent-requests/{request_id}", tags=["consent"], summary="One consent request")
    async def consent_request_get(request: Request, who: Caller, request_id: str) -> dict[str, Any]:
        cr = service.store.get_consent_request(request_id)
        me = who[0]
        mine = (cr is not None and ((me.kind == "client" and cr.client_id == me.client_id)
                                    or (me.kind == "user" and cr.citizen == me.name)))
        if cr is None or not mine:
            raise AdminError(404, "not_found", "no such consent request")
        return cr.as_dict()

    @r.get("/consents", tags=["consent"], summary="My consents (citizen)")
    async def consent_list(request: Request, who: Caller) -> dict[str, Any]:
        citizen = authorise(request, who, "consent", "read")
        return {"consents": [c.as_dict() for c in service.my_consents(citizen)]}

    @r.post("/consent-requests/{request_id}/consent", tags=["consent"], status_code=201,
            summary="Give consent (citizen); returns the SM2-signed receipt")
    async def consent_give(request: Request, who: Caller, request_id: str, body: ConsentIn
                           ) -> dict[str, Any]:
        citizen = authorise(request, who, "consent", "write")
        c = await run(service.give_consent, citizen, request_id, body.days)
        return {**c.as_dict(), "receipt": c.receipt}

    @r.post("/consents/{consent_id}/revoke", tags=["consent"], summary="Revoke my consent")
    async def consent_revoke(request: Request, who: Caller, consent_id: str) -> dict[str, Any]:
        citizen = authorise(request, who, "consent", "write")
        return (await run(service.revoke_consent, citizen, consent_id)).as_dict()

    @r.get("/consents/{consent_id}/receipt", tags=["consent"], summary="The signed receipt")
    async def consent_receipt(request: Request, who: Caller, consent_id: str) -> Any:
        citizen = authorise(request, who, "consent", "read")
        c = service.store.get_consent(consent_id)
        if c is None or c.citizen != citizen.name:
            raise AdminError(404, "not_found", "no such consent")
        import json

        return json.loads(c.receipt)

    return r
