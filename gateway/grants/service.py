"""The rules of access requests, approvals, grants and consent — one place for API, console
and CLI.

The callers (admin API, console) first ask the policy engine whether the actor may use the
admin area (``ztgw.admin.grants`` with the dataset's owner department, ``ztgw.admin.requests``,
``ztgw.admin.consent``); the service checks the same facts again (defence in depth):

* only a user holding :data:`APPROVER_ROLE` in the dataset's owner department approves, rejects,
  narrows or revokes; nobody approves a request they filed themselves;
* a request touching a 核心 field needs :data:`CORE_APPROVALS` distinct approvers;
* narrowing never widens: fields, rows, quota and period may only shrink;
* a citizen consents only for themselves and revokes only their own consents.

Every change is an audit event (``event.dataset: ztgw.admin``: who, what, why) and bumps the
change counter every replica watches (:mod:`.index`).
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from ztgw.policies.domain import Classification, Subject

from ..catalogue import Catalogue, Dataset, PersonalInfo
from ..identity.directory import Directory
from .receipts import ReceiptSigner
from .store import (
    AccessRequest,
    Consent,
    ConsentRequest,
    Grant,
    GrantStore,
    new_id,
    now,
)

APPROVER_ROLE = "data-approver"  # a data owner's staff who may decide on their datasets
CITIZEN_ROLE = "citizen"
CORE_APPROVALS = 2  # 核心 data: two distinct approvers (four-eyes)
MAX_PERIOD_DAYS = 366  # a grant or consent longer than a year must be asked for again
MAX_PURPOSE = 500
MAX_REASON = 500
MAX_ROW_VALUES = 1024
MAX_QUOTA = 10_000_000
SUBJECT_KEY_ATTRIBUTE = "id_number"  # the user attribute naming a citizen's own records

Emit = Callable[[dict[str, Any]], None]


class GrantError(Exception):
    """A request the service refuses; ``status`` is the HTTP status it maps to."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _nfkc(value: str | None) -> str:
    return unicodedata.normalize("NFKC", value or "")


def _text(value: str, what: str, limit: int) -> str:
    text = " ".join((value or "").split())
    if not text:
        raise GrantError(400, "invalid_request", f"{what} is required")
    if len(text) > limit:
        raise GrantError(400, "invalid_request", f"{what} is longer than {limit} characters")
    return text


def mask_key(value: str) -> str:
    """What a receipt and a page show of an id number: the first 6 and last 4 characters."""
    return value[:6] + "*" * max(0, len(value) - 10) + value[-4:] if len(value) > 10 else "*" * len(value)


class GrantService:
    def __init__(self, store: GrantStore, catalogue: Catalogue, directory: Directory,
                 signer: ReceiptSigner, emit: Emit,
                 observe_approval: Callable[[str, float], None] | None = None,
                 on_change: Callable[[], None] | None = None) -> None:
        self.store, self.catalogue, self.directory = store, catalogue, directory
        self.signer, self.emit = signer, emit
        self.observe_approval = observe_approval
        self.on_change = on_change

    # --- helpers -------------------------------------------------------------------------
    def dataset(self, dataset_id: str) -> Dataset:
        ds = self.catalogue.get(dataset_id)
        if ds is None or not ds.enabled:
            raise GrantError(404, "not_found", f"no dataset {dataset_id!r}")
        return ds

    @staticmethod
    def may_own(actor: Subject, ds: Dataset) -> bool:
        """The service's own check: an approver of the dataset's owner department."""
        return (actor.kind == "user" and APPROVER_ROLE in actor.roles
                and bool(ds.owner_department) and bool(actor.department)
                and _nfkc(actor.department) == _nfkc(ds.owner_department))

    def _require_owner(self, actor: Subject, ds: Dataset) -> None:
        if not self.may_own(actor, ds):
            raise GrantError(403, "access_denied",
                             "only an approver of the dataset's owner department may do this")

    def owned_datasets(self, actor: Subject) -> list[Dataset]:
        return [d for d in self.catalogue.all() if self.may_own(actor, d)]

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _audit(self, actor: Subject | str, action: str, what: dict[str, Any],
               reason: str | None = None, outcome: str = "success") -> None:
        from ztgw.audit.events import iso_now, new_event_id

        if isinstance(actor, Subject):
            user = {"id": actor.id, "name": actor.name, "domain": actor.department}
            client = actor.client_id
        else:
            user, client = {"id": actor, "name": actor}, None
        self.emit({
            "@timestamp": iso_now(),
            "ecs": {"version": "9.4.0"},
            "event": {"id": new_event_id(), "kind": "event", "category": ["iam", "configuration"],
                      "type": ["change"], "action": action, "outcome": outcome,
                      "dataset": "ztgw.admin", "module": "ztgw", "provider": "grants",
                      **({"reason": reason} if reason else {})},
            "data_stream": {"type": "logs", "dataset": "ztgw.admin", "namespace": "default"},
            "user": user,
            "ztgw": {"oidc": {"client_id": client}, "grants": what},
        })

    @staticmethod
    def _period(not_before: int | None, expires_at: int | None, days: int | None) -> tuple[int, int]:
        t = now()
        start = t if not_before is None else int(not_before)
        if expires_at is None:
            if not days:
                raise GrantError(400, "invalid_request", "give expires_at or days")
            expires_at = start + int(days) * 86400
        end = int(expires_at)
        if start < t - 300:
            raise GrantError(400, "invalid_request", "not_before lies in the past")
        if end <= max(start, t):
            raise GrantError(400, "invalid_request", "the period ends before it begins")
        if end - start > MAX_PERIOD_DAYS * 86400:
            raise GrantError(400, "invalid_request", f"a period is at most {MAX_PERIOD_DAYS} days")
        return start, end

    # --- catalogue -----------------------------------------------------------------------
    def confirm_field(self, actor: Subject, dataset: str, field: str, classification: str,
                      pi: str) -> Dataset:
        """The owner confirms (or corrects) a field's classification and PI flag — e.g. a
        proposal from ``ztgw scan pii``."""
        ds = self.dataset(dataset)
        self._require_owner(actor, ds)
        if field not in ds.fields:
            raise GrantError(404, "not_found", f"no field {field!r} in {ds.dataset}")
        try:
            level, flag = Classification.parse(classification), PersonalInfo.parse(pi)
        except ValueError as exc:
            raise GrantError(400, "invalid_request", str(exc)) from exc
        new = replace(ds, fields={**ds.fields, field: level}, pi={**ds.pi, field: flag})
        self.catalogue.register(new)
        self._audit(actor, "dataset-field-confirmed",
                    {"dataset": ds.dataset, "field": field, "classification": level.label,
                     "pi": flag.value, "was": ds.fields[field].label})
        return new

    # --- access requests -----------------------------------------------------------------
    def create_request(self, requester: Subject, *, dataset: str, fields: list[str], purpose: str,
                       not_before: int | None = None, expires_at: int | None = None,
                       days: int | None = None, row_field: str | None = None,
                       row_values: list[str] | None = None, rows_per_day: int | None = None,
                       rows_per_request: int | None = None) -> AccessRequest:
        ds = self.dataset(dataset)
        wanted = sorted(set(fields))
        if not wanted:
            raise GrantError(400, "invalid_request", "name the fields you need")
        unknown = [f for f in wanted if f not in ds.fields]
        if unknown:
            raise GrantError(400, "invalid_request", f"fields not in {ds.dataset}: {unknown}")
        values = sorted({str(v) for v in row_values or []})
        if row_field is not None:
            if row_field not in ds.fields:
                raise GrantError(400, "invalid_request", f"row field {row_field!r} is not in the dataset")
            if not values or len(values) > MAX_ROW_VALUES:
                raise GrantError(400, "invalid_request",
                                 f"a row scope lists 1..{MAX_ROW_VALUES} values")
        elif values:
            raise GrantError(400, "invalid_request", "row values need a row field")
        for name, q in (("rows_per_day", rows_per_day), ("rows_per_request", rows_per_request)):
            if q is not None and not 0 < q <= MAX_QUOTA:
                raise GrantError(400, "invalid_request", f"{name} is 1..{MAX_QUOTA}")
        start, end = self._period(not_before, expires_at, days)
        core = any(ds.fields[f] >= Classification.CORE for f in wanted)
        req = AccessRequest(
            id=new_id("req"), dataset=ds.dataset, requested_by=requester.id, grantee=requester.id,
            fields=tuple(wanted), purpose=_text(purpose, "purpose", MAX_PURPOSE),
            not_before=start, expires_at=end, row_field=row_field, row_values=tuple(values),
            rows_per_day=rows_per_day, rows_per_request=rows_per_request,
            required_approvals=CORE_APPROVALS if core else 1, status="pending",
            created_at=now(), decided_at=None, decision_reason=None, grant_id=None)
        self.store.add_request(req)
        self._audit(requester, "grant-request-created",
                    {"request_id": req.id, "dataset": req.dataset, "fields": list(req.fields),
                     "purpose": req.purpose, "required_approvals": req.required_approvals})
        return req

    def get_request(self, request_id: str) -> AccessRequest:
        r = self.store.get_request(request_id)
        if r is None:
            raise GrantError(404, "not_found", "no such request")
        return r

    def approve(self, actor: Subject, request_id: str, reason: str) -> AccessRequest:
        reason = _text(reason, "reason", MAX_REASON)
        r = self.get_request(request_id)
        ds = self.dataset(r.dataset)
        self._require_owner(actor, ds)
        if actor.id in (r.requested_by, r.grantee):
            raise GrantError(403, "self_approval", "nobody approves their own request")
        if r.status != "pending":
            raise GrantError(409, "not_pending", f"the request is already {r.status}")
        if any(a.approver == actor.id for a in r.approvals):
            raise GrantError(409, "already_approved",
                             "you have approved this request; a second approver must decide")
        if not self.store.record_approval(r.id, actor.id, "approve", reason):
            raise GrantError(409, "not_pending", "the request changed meanwhile; reload it")
        self._audit(actor, "grant-request-approved",
                    {"request_id": r.id, "dataset": r.dataset,
                     "approvals": len(r.approvals) + 1, "required": r.required_approvals}, reason)
        r = self.get_request(r.id)
        approvers = {a.approver for a in r.approvals if a.decision == "approve"}
        if len(approvers) < r.required_approvals:
            return r
        grant = Grant(
            id=new_id("grant"), request_id=r.id, dataset=r.dataset, grantee=r.grantee,
            fields=r.fields, purpose=r.purpose, not_before=r.not_before, expires_at=r.expires_at,
            row_field=r.row_field, row_values=r.row_values, rows_per_day=r.rows_per_day,
            rows_per_request=r.rows_per_request, status="active", created_at=now(),
            revoked_at=None, revoked_by=None, revoke_reason=None, version=1)
        if not self.store.decide_request(r.id, "approved", reason, grant):
            raise GrantError(409, "not_pending", "the request changed meanwhile; reload it")
        self._decided(r, "approved")
        self._audit(actor, "grant-created",
                    {"request_id": r.id, "grant_id": grant.id, "dataset": grant.dataset,
                     "grantee": grant.grantee, "fields": list(grant.fields),
                     "expires_at": grant.expires_at, "approvers": sorted(approvers)}, reason)
        self._changed()
        return self.get_request(r.id)

    def reject(self, actor: Subject, request_id: str, reason: str) -> AccessRequest:
        reason = _text(reason, "reason", MAX_REASON)
        r = self.get_request(request_id)
        self._require_owner(actor, self.dataset(r.dataset))
        if actor.id in (r.requested_by, r.grantee):
            raise GrantError(403, "self_approval", "nobody decides on their own request")
        if r.status != "pending":
            raise GrantError(409, "not_pending", f"the request is already {r.status}")
        if not self.store.record_approval(r.id, actor.id, "reject", reason) or \
                not self.store.decide_request(r.id, "rejected", reason):
            raise GrantError(409, "not_pending", "the request changed meanwhile; reload it")
        self._decided(r, "rejected")
        self._audit(actor, "grant-request-rejected", {"request_id": r.id, "dataset": r.dataset},
                    reason)
        self._changed()
        return self.get_request(r.id)

    def _decided(self, r: AccessRequest, outcome: str) -> None:
        if self.observe_approval is not None:
            self.observe_approval(outcome, max(0.0, time.time() - r.created_at))

    # --- grants --------------------------------------------------------------------------
    def get_grant(self, grant_id: str) -> Grant:
        g = self.store.get_grant(grant_id)
        if g is None:
            raise GrantError(404, "not_found", "no such grant")
        return g

    def narrow(self, actor: Subject, grant_id: str, reason: str, *, fields: list[str] | None = None,
               row_field: str | None = None, row_values: list[str] | None = None,
               rows_per_day: int | None = None, rows_per_request: int | None = None,
               expires_at: int | None = None) -> Grant:
        reason = _text(reason, "reason", MAX_REASON)
        g = self.get_grant(grant_id)
        self._require_owner(actor, self.dataset(g.dataset))
        if g.status != "active":
            raise GrantError(409, "not_active", "the grant is no longer active")
        new = g
        if fields is not None:
            wider = set(fields) - set(g.fields)
            if wider or not fields:
                raise GrantError(400, "would_widen",
                                 f"narrowing keeps a non-empty subset of {list(g.fields)}")
            new = replace(new, fields=tuple(sorted(set(fields))))
        if row_values is not None:
            field = row_field or g.row_field
            values = {str(v) for v in row_values}
            if field is None or not values or len(values) > MAX_ROW_VALUES:
                raise GrantError(400, "invalid_request", "a row scope is a field and 1.. values")
            if g.row_field is not None and (field != g.row_field or values - set(g.row_values)):
                raise GrantError(400, "would_widen", "rows may only be removed from the scope")
            if field not in self.dataset(g.dataset).fields:
                raise GrantError(400, "invalid_request", f"row field {field!r} is not in the dataset")
            new = replace(new, row_field=field, row_values=tuple(sorted(values)))
        for name, q in (("rows_per_day", rows_per_day), ("rows_per_request", rows_per_request)):
            if q is None:
                continue
            old = getattr(g, name)
            if not 0 < q <= MAX_QUOTA or (old is not None and q > old):
                raise GrantError(400, "would_widen", f"{name} may only decrease")
            new = replace(new, **{name: q})
        if expires_at is not None:
            if expires_at > g.expires_at:
                raise GrantError(400, "would_widen", "the period may only be shortened")
            new = replace(new, expires_at=max(int(expires_at), now()))
        if new == g:
            raise GrantError(400, "invalid_request", "nothing to narrow")
        if not self.store.update_grant(new, expected_version=g.version):
            raise GrantError(409, "conflict", "the grant changed meanwhile; reload it")
        self._audit(actor, "grant-narrowed",
                    {"grant_id": g.id, "dataset": g.dataset, "fields": list(new.fields),
                     "row_field": new.row_field, "row_values": len(new.row_values),
                     "rows_per_day": new.rows_per_day, "expires_at": new.expires_at}, reason)
        self._changed()
        return self.get_grant(g.id)

    def revoke(self, actor: Subject, grant_id: str, reason: str) -> Grant:
        reason = _text(reason, "reason", MAX_REASON)
        g = self.get_grant(grant_id)
        self._require_owner(actor, self.dataset(g.dataset))
        if not self.store.revoke_grant(g.id, actor.id, reason):
            raise GrantError(409, "not_active", "the grant is no longer active")
        self._changed()
        self._audit(actor, "grant-revoked", {"grant_id": g.id, "dataset": g.dataset,
                                             "grantee": g.grantee}, reason)
        return self.get_grant(g.id)

    def approval_times(self, datasets: list[str] | None = None) -> dict[str, Any]:
        """Request → decision times of decided requests (seconds): count, median, p90, max."""
        rs = [r for r in self.store.list_requests(datasets=datasets, limit=1000)
              if r.decided_at is not None]
        times = sorted(r.decided_at - r.created_at for r in rs if r.decided_at is not None)
        if not times:
            return {"count": 0, "median": None, "p90": None, "max": None}
        return {"count": len(times), "median": times[len(times) // 2],
                "p90": times[min(len(times) - 1, int(len(times) * 0.9))], "max": times[-1]}

    # --- consent -------------------------------------------------------------------------
    def request_consent(self, app: Subject, *, dataset: str, purpose: str, days: int,
                        fields: list[str] | None = None, citizen: str | None = None
                        ) -> ConsentRequest:
        if app.kind != "client":
            raise GrantError(403, "access_denied", "only an application asks citizens for consent")
        ds = self.dataset(dataset)
        if not ds.subject_field:
            raise GrantError(400, "invalid_request",
                             f"{ds.dataset} has no data-subject field; consent cannot apply to it")
        if not 0 < days <= MAX_PERIOD_DAYS:
            raise GrantError(400, "invalid_request", f"days is 1..{MAX_PERIOD_DAYS}")
        wanted = sorted(set(fields or ds.fields))
        if [f for f in wanted if f not in ds.fields]:
            raise GrantError(400, "invalid_request", "fields must be the dataset's fields")
        # no "no such user" answer: an application must not learn who has an account here
        r = ConsentRequest(id=new_id("creq"), client_id=app.client_id, dataset=ds.dataset,
                           fields=tuple(wanted), purpose=_text(purpose, "purpose", MAX_PURPOSE),
                           period_days=days, citizen=citizen, status="pending", created_at=now(),
                           answered_at=None, answered_by=None)
        self.store.add_consent_request(r)
        self._audit(app, "consent-requested", {"consent_request_id": r.id, "dataset": r.dataset,
                                               "client_id": r.client_id, "purpose": r.purpose})
        return r

    def consent_request_for(self, citizen: Subject, request_id: str) -> ConsentRequest:
        r = self.store.get_consent_request(request_id)
        if r is None or (r.citizen is not None and r.citizen != citizen.name):
            raise GrantError(404, "not_found", "no such consent request")
        return r

    def subject_key(self, citizen: Subject) -> str:
        if citizen.kind != "user" or CITIZEN_ROLE not in citizen.roles:
            raise GrantError(403, "access_denied", "only a signed-in citizen may do this")
        key = citizen.attributes.get(SUBJECT_KEY_ATTRIBUTE)
        if not isinstance(key, str) or not key:
            raise GrantError(403, "access_denied", "your account has no verified id number")
        return key

    def give_consent(self, citizen: Subject, request_id: str, days: int | None = None) -> Consent:
        key = self.subject_key(citizen)
        r = self.consent_request_for(citizen, request_id)
        if r.status != "pending":
            raise GrantError(409, "not_pending", f"the request is already {r.status}")
        period = r.period_days if days is None else days
        if not 0 < period <= r.period_days:
            raise GrantError(400, "invalid_request",
                             f"the period is 1..{r.period_days} days (what the app asked)")
        client = self.directory.get_client(r.client_id)
        t = now()
        consent_id = new_id("consent")
        statement = {
            "type": "ztgw-consent-receipt", "version": 1, "consent_id": consent_id,
            "citizen": citizen.name, "data_subject": mask_key(key),
            "client_id": r.client_id, "client_name": client.name if client else r.client_id,
            "dataset": r.dataset, "fields": list(r.fields), "purpose": r.purpose,
            "not_before": _iso(t), "expires_at": _iso(t + period * 86400), "issued_at": _iso(t),
        }
        consent = Consent(id=consent_id, request_id=r.id, citizen=citizen.name, subject_key=key,
                          client_id=r.client_id, dataset=r.dataset, purpose=r.purpose,
                          not_before=t, expires_at=t + period * 86400, status="active",
                          issued_at=t, revoked_at=None, receipt=self.signer.sign(statement))
        if not self.store.answer_consent_request(r.id, "granted", citizen.name, consent):
            raise GrantError(409, "not_pending", "the request changed meanwhile")
        self._audit(citizen, "consent-given",
                    {"consent_id": consent.id, "client_id": r.client_id, "dataset": r.dataset,
                     "purpose": r.purpose, "expires_at": consent.expires_at})
        self._changed()
        return consent

    def decline_consent(self, citizen: Subject, request_id: str) -> ConsentRequest:
        self.subject_key(citizen)
        r = self.consent_request_for(citizen, request_id)
        if not self.store.answer_consent_request(r.id, "declined", citizen.name):
            raise GrantError(409, "not_pending", f"the request is already {r.status}")
        self._audit(citizen, "consent-declined", {"consent_request_id": r.id,
                                                  "client_id": r.client_id, "dataset": r.dataset})
        return self.consent_request_for(citizen, r.id)

    def revoke_consent(self, citizen: Subject, consent_id: str) -> Consent:
        self.subject_key(citizen)
        c = self.store.get_consent(consent_id)
        if c is None or c.citizen != citizen.name:
            raise GrantError(404, "not_found", "no such consent")
        if not self.store.revoke_consent(c.id, citizen.name):
            raise GrantError(409, "not_active", "the consent is no longer active")
        self._changed()
        self._audit(citizen, "consent-revoked", {"consent_id": c.id, "client_id": c.client_id,
                                                 "dataset": c.dataset})
        c2 = self.store.get_consent(c.id)
        assert c2 is not None
        return c2

    def my_consents(self, citizen: Subject) -> list[Consent]:
        return self.store.list_consents(citizen=citizen.name)

    def pending_consent_requests(self, citizen: Subject) -> list[ConsentRequest]:
        return [r for r in self.store.list_consent_requests(citizen=citizen.name, status="pending")]


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
