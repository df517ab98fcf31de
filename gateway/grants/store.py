"""Persistence of access requests, approvals, grants, consent requests and consents.

SQLAlchemy Core tables in the directory's shared ``metadata`` (SQLite by default, PostgreSQL
with ``ZTGW_DIRECTORY_URL``): portable types only — strings, integers, text holding JSON.
Times are integer Unix seconds (UTC).  Every change bumps one row, ``grants_changes.counter``,
in the same transaction; every gateway replica polls it and reloads its in-memory index when it
moves (:mod:`.index`), which is how a revocation reaches every replica within a second.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..identity.directory import metadata

access_requests = sa.Table(
    "access_requests", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("dataset", sa.String(128), nullable=False, index=True),
    sa.Column("requested_by", sa.String(200), nullable=False),  # subject id of the requester
    sa.Column("grantee", sa.String(200), nullable=False),  # subject id the grant is for
    sa.Column("fields", sa.Text, nullable=False),  # JSON list
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("not_before", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("row_field", sa.String(64)),
    sa.Column("row_values", sa.Text, nullable=False, default="[]"),  # JSON list
    sa.Column("rows_per_day", sa.Integer),
    sa.Column("rows_per_request", sa.Integer),
    sa.Column("required_approvals", sa.Integer, nullable=False, default=1),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # pending/approved/rejected
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("decided_at", sa.BigInteger),
    sa.Column("decision_reason", sa.Text),
    sa.Column("grant_id", sa.String(40)),
)

request_approvals = sa.Table(
    "access_request_approvals", metadata,
    sa.Column("request_id", sa.String(40), primary_key=True),
    sa.Column("approver", sa.String(200), primary_key=True),  # subject id
    sa.Column("decision", sa.String(16), nullable=False),  # approve / reject
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
)

grants = sa.Table(
    "grants", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("request_id", sa.String(40), nullable=False),
    sa.Column("dataset", sa.String(128), nullable=False, index=True),
    sa.Column("grantee", sa.String(200), nullable=False, index=True),
    sa.Column("fields", sa.Text, nullable=False),
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("not_before", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("row_field", sa.String(64)),
    sa.Column("row_values", sa.Text, nullable=False, default="[]"),
    sa.Column("rows_per_day", sa.Integer),
    sa.Column("rows_per_request", sa.Integer),
    sa.Column("status", sa.String(16), nullable=False, index=True),  # active / revoked
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger),
    sa.Column("revoked_by", sa.String(200)),
    sa.Column("revoke_reason", sa.Text),
    sa.Column("version", sa.Integer, nullable=False, default=1),  # bumped by every narrowing
)

consent_requests = sa.Table(
    "consent_requests", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("client_id", sa.String(128), nullable=False),
    sa.Column("dataset", sa.String(128), nullable=False),
    sa.Column("fields", sa.Text, nullable=False),  # what the app says it will read (shown)
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("period_days", sa.Integer, nullable=False),
    sa.Column("citizen", sa.String(128)),  # the addressed user, or NULL: whoever opens it
    sa.Column("status", sa.String(16), nullable=False),  # pending / granted / declined
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("answered_at", sa.BigInteger),
    sa.Column("answered_by", sa.String(128)),
)

consents = sa.Table(
    "consents", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("request_id", sa.String(40)),
    sa.Column("citizen", sa.String(128), nullable=False, index=True),  # username
    sa.Column("subject_key", sa.String(128), nullable=False),  # e.g. the citizen's id_number
    sa.Column("client_id", sa.String(128), nullable=False, index=True),
    sa.Column("dataset", sa.String(128), nullable=False),
    sa.Column("purpose", sa.Text, nullable=False),
    sa.Column("not_before", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active / revoked
    sa.Column("issued_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger),
    sa.Column("receipt", sa.Text, nullable=False),  # the SM2-signed receipt (JSON)
)

changes = sa.Table(
    "grants_changes", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("counter", sa.BigInteger, nullable=False),
)

TABLES = ("access_requests", "access_request_approvals", "grants", "consent_requests",
          "consents", "grants_changes")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def now() -> int:
    return int(time.time())


@dataclass(frozen=True, slots=True)
class Approval:
    approver: str
    decision: str
    reason: str
    at: int


@dataclass(frozen=True, slots=True)
class AccessRequest:
    id: str
    dataset: str
    requested_by: str
    grantee: str
    fields: tuple[str, ...]
    purpose: str
    not_before: int
    expires_at: int
    row_field: str | None
    row_values: tuple[str, ...]
    rows_per_day: int | None
    rows_per_request: int | None
    required_approvals: int
    status: str
    created_at: int
    decided_at: int | None
    decision_reason: str | None
    grant_id: str | None
    approvals: tuple[Approval, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__ if k != "approvals"}
        d["fields"], d["row_values"] = list(self.fields), list(self.row_values)
        d["approvals"] = [{"approver": a.approver, "decision": a.decision, "reason": a.reason,
                           "at": a.at} for a in self.approvals]
        return d


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    request_id: str
    dataset: str
    grantee: str
    fields: tuple[str, ...]
    purpose: str
    not_before: int
    expires_at: int
    row_field: str | None
    row_values: tuple[str, ...]
    rows_per_day: int | None
    rows_per_request: int | None
    status: str
    created_at: int
    revoked_at: int | None
    revoked_by: str | None
    revoke_reason: str | None
    version: int

    def active_at(self, t: float) -> bool:
        return self.status == "active" and self.not_before <= t < self.expires_at

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["fields"], d["row_values"] = list(self.fields), list(self.row_values)
        d["active"] = self.active_at(time.time())
        return d


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    id: str
    client_id: str
    dataset: str
    fields: tuple[str, ...]
    purpose: str
    period_days: int
    citizen: str | None
    status: str
    created_at: int
    answered_at: int | None
    answered_by: str | None

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["fields"] = list(self.fields)
        return d


@dataclass(frozen=True, slots=True)
class Consent:
    id: str
    request_id: str | None
    citizen: str
    subject_key: str
    client_id: str
    dataset: str
    purpose: str
    not_before: int
    expires_at: int
    status: str
    issued_at: int
    revoked_at: int | None
    receipt: str

    def active_at(self, t: float) -> bool:
        return self.status == "active" and self.not_before <= t < self.expires_at

    def as_dict(self, *, with_key: bool = False) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__ if k not in ("receipt", "subject_key")}
        if with_key:
            d["subject_key"] = self.subject_key
        d["active"] = self.active_at(time.time())
        return d


def _list(text: str | None) -> tuple[str, ...]:
    return tuple(json.loads(text or "[]"))


def _dump(values: Iterable[str]) -> str:
    return json.dumps(list(values), ensure_ascii=False)


class GrantStore:
    """Rows in, typed records out; every write bumps the change counter in its transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[metadata.tables[t] for t in TABLES])
        with engine.begin() as conn:
            if conn.execute(sa.select(changes.c.counter).where(changes.c.id == 1)).first() is None:
                conn.execute(changes.insert().values(id=1, counter=0))

    # --- the change counter --------------------------------------------------------------
    @staticmethod
    def _bump(conn: sa.Connection) -> None:
        conn.execute(changes.update().where(changes.c.id == 1)
                     .values(counter=changes.c.counter + 1))

    def counter(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(changes.c.counter).where(changes.c.id == 1)).scalar()
        return int(value or 0)

    # --- access requests -----------------------------------------------------------------
    def add_request(self, r: AccessRequest) -> None:
        row = r.as_dict()
        row.pop("approvals")
        row["fields"], row["row_values"] = _dump(r.fields), _dump(r.row_values)
        with self.engine.begin() as conn:
            conn.execute(access_requests.insert().values(**row))
            self._bump(conn)

    def _request(self, conn: sa.Connection, row: Mapping[str, Any]) -> AccessRequest:
        approvals = tuple(
            Approval(a["approver"], a["decision"], a["reason"], a["at"])
            for a in conn.execute(sa.select(request_approvals)
                                  .where(request_approvals.c.request_id == row["id"])
                                  .order_by(request_approvals.c.at)).mappings())
        return AccessRequest(
            id=row["id"], dataset=row["dataset"], requested_by=row["requested_by"],
            grantee=row["grantee"], fields=_list(row["fields"]), purpose=row["purpose"],
            not_before=row["not_before"], expires_at=row["expires_at"], row_field=row["row_field"],
            row_values=_list(row["row_values"]), rows_per_day=row["rows_per_day"],
            rows_per_request=row["rows_per_request"], required_approvals=row["required_approvals"],
            status=row["status"], created_at=row["created_at"], decided_at=row["decided_at"],
            decision_reason=row["decision_reason"], grant_id=row["grant_id"], approvals=approvals)

    def get_request(self, request_id: str) -> AccessRequest | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(access_requests)
                               .where(access_requests.c.id == request_id)).mappings().first()
            return None if row is None else self._request(conn, row)

    def list_requests(self, *, datasets: Iterable[str] | None = None, status: str | None = None,
                      requested_by: str | None = None, limit: int = 200) -> list[AccessRequest]:
        q = sa.select(access_requests).order_by(access_requests.c.created_at.desc()).limit(limit)
        if datasets is not None:
            q = q.where(access_requests.c.dataset.in_(list(datasets)))
        if status:
            q = q.where(access_requests.c.status == status)
        if requested_by:
            q = q.where(access_requests.c.requested_by == requested_by)
        with self.engine.connect() as conn:
            return [self._request(conn, r) for r in conn.execute(q).mappings().all()]

    def record_approval(self, request_id: str, approver: str, decision: str, reason: str,
                        expected_status: str = "pending") -> bool:
        """Record one approver's vote; False if the request is no longer pending or the approver
        already voted (the primary key makes a second vote impossible, even in a race)."""
        with self.engine.begin() as conn:
            status = conn.execute(sa.select(access_requests.c.status)
                                  .where(access_requests.c.id == request_id)).scalar()
            if status != expected_status:
                return False
            try:
                with conn.begin_nested():
                    conn.execute(request_approvals.insert().values(
                        request_id=request_id, approver=approver, decision=decision,
                        reason=reason, at=now()))
            except sa.exc.IntegrityError:
                return False
            self._bump(conn)
        return True

    def decide_request(self, request_id: str, status: str, reason: str,
                       grant: Grant | None = None) -> bool:
        """Close a pending request (and create its grant) in one transaction."""
        with self.engine.begin() as conn:
            done = conn.execute(
                access_requests.update()
                .where(access_requests.c.id == request_id, access_requests.c.status == "pending")
                .values(status=status, decided_at=now(), decision_reason=reason,
                        grant_id=grant.id if grant else None)).rowcount
            if done != 1:
                return False
            if grant is not None:
                row = grant.as_dict()
                row.pop("active")
                row["fields"], row["row_values"] = _dump(grant.fields), _dump(grant.row_values)
                conn.execute(grants.insert().values(**row))
            self._bump(conn)
        return True

    # --- grants --------------------------------------------------------------------------
    @staticmethod
    def _grant(row: Mapping[str, Any]) -> Grant:
        return Grant(
            id=row["id"], request_id=row["request_id"], dataset=row["dataset"],
            grantee=row["grantee"], fields=_list(row["fields"]), purpose=row["purpose"],
            not_before=row["not_before"], expires_at=row["expires_at"], row_field=row["row_field"],
            row_values=_list(row["row_values"]), rows_per_day=row["rows_per_day"],
            rows_per_request=row["rows_per_request"], status=row["status"],
            created_at=row["created_at"], revoked_at=row["revoked_at"],
            revoked_by=row["revoked_by"], revoke_reason=row["revoke_reason"],
            version=row["version"])

    def get_grant(self, grant_id: str) -> Grant | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(grants).where(grants.c.id == grant_id)).mappings().first()
        return None if row is None else self._grant(row)

    def list_grants(self, *, datasets: Iterable[str] | None = None, grantee: str | None = None,
                    status: str | None = None, limit: int = 500) -> list[Grant]:
        q = sa.select(grants).order_by(grants.c.created_at.desc()).limit(limit)
        if datasets is not None:
            q = q.where(grants.c.dataset.in_(list(datasets)))
        if grantee:
            q = q.where(grants.c.grantee == grantee)
        if status:
            q = q.where(grants.c.status == status)
        with self.engine.connect() as conn:
            return [self._grant(r) for r in conn.execute(q).mappings().all()]

    def active_grants(self, at: int) -> list[Grant]:
        q = sa.select(grants).where(grants.c.status == "active", grants.c.expires_at > at)
        with self.engine.connect() as conn:
            return [self._grant(r) for r in conn.execute(q).mappings().all()]

    def update_grant(self, g: Grant, *, expected_version: int) -> bool:
        """Replace a grant's scope (narrowing) if nobody changed it meanwhile."""
        with self.engine.begin() as conn:
            done = conn.execute(
                grants.update().where(grants.c.id == g.id, grants.c.version == expected_version,
                                      grants.c.status == "active")
                .values(fields=_dump(g.fields), row_field=g.row_field,
                        row_values=_dump(g.row_values), rows_per_day=g.rows_per_day,
                        rows_per_request=g.rows_per_request, expires_at=g.expires_at,
                        version=expected_version + 1)).rowcount
            if done == 1:
                self._bump(conn)
        return done == 1

    def revoke_grant(self, grant_id: str, by: str, reason: str) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(
                grants.update().where(grants.c.id == grant_id, grants.c.status == "active")
                .values(status="revoked", revoked_at=now(), revoked_by=by, revoke_reason=reason,
                        version=grants.c.version + 1)).rowcount
            if done == 1:
                self._bump(conn)
        return done == 1

    # --- consent -------------------------------------------------------------------------
    def add_consent_request(self, r: ConsentRequest) -> None:
        row = r.as_dict()
        row["fields"] = _dump(r.fields)
        with self.engine.begin() as conn:
            conn.execute(consent_requests.insert().values(**row))
            self._bump(conn)

    @staticmethod
    def _consent_request(row: Mapping[str, Any]) -> ConsentRequest:
        return ConsentRequest(
            id=row["id"], client_id=row["client_id"], dataset=row["dataset"],
            fields=_list(row["fields"]), purpose=row["purpose"], period_days=row["period_days"],
            citizen=row["citizen"], status=row["status"], created_at=row["created_at"],
            answered_at=row["answered_at"], answered_by=row["answered_by"])

    def get_consent_request(self, request_id: str) -> ConsentRequest | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(consent_requests)
                               .where(consent_requests.c.id == request_id)).mappings().first()
        return None if row is None else self._consent_request(row)

    def list_consent_requests(self, *, citizen: str | None = None, client_id: str | None = None,
                              status: str | None = None, limit: int = 200) -> list[ConsentRequest]:
        q = sa.select(consent_requests).order_by(consent_requests.c.created_at.desc()).limit(limit)
        if citizen is not None:
            q = q.where(consent_requests.c.citizen == citizen)
        if client_id is not None:
            q = q.where(consent_requests.c.client_id == client_id)
        if status:
            q = q.where(consent_requests.c.status == status)
        with self.engine.connect() as conn:
            return [self._consent_request(r) for r in conn.execute(q).mappings().all()]

    def answer_consent_request(self, request_id: str, status: str, by: str,
                               consent: Consent | None = None) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(
                consent_requests.update()
                .where(consent_requests.c.id == request_id, consent_requests.c.status == "pending")
                .values(status=status, answered_at=now(), answered_by=by)).rowcount
            if done != 1:
                return False
            if consent is not None:
                conn.execute(consents.insert().values(
                    **{k: getattr(consent, k) for k in Consent.__slots__}))
            self._bump(conn)
        return True

    @staticmethod
    def _consent(row: Mapping[str, Any]) -> Consent:
        return Consent(**{k: row[k] for k in Consent.__slots__})

    def get_consent(self, consent_id: str) -> Consent | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(consents)
                               .where(consents.c.id == consent_id)).mappings().first()
        return None if row is None else self._consent(row)

    def list_consents(self, *, citizen: str | None = None, client_id: str | None = None,
                      limit: int = 500) -> list[Consent]:
        q = sa.select(consents).order_by(consents.c.issued_at.desc()).limit(limit)
        if citizen is not None:
            q = q.where(consents.c.citizen == citizen)
        if client_id is not None:
            q = q.where(consents.c.client_id == client_id)
        with self.engine.connect() as conn:
            return [self._consent(r) for r in conn.execute(q).mappings().all()]

    def active_consents(self, at: int) -> list[Consent]:
        q = sa.select(consents).where(consents.c.status == "active", consents.c.expires_at > at)
        with self.engine.connect() as conn:
            return [self._consent(r) for r in conn.execute(q).mappings().all()]

    def revoke_consent(self, consent_id: str, citizen: str) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(
                consents.update().where(consents.c.id == consent_id, consents.c.citizen == citizen,
                                        consents.c.status == "active")
                .values(status="revoked", revoked_at=now())).rowcount
            if done == 1:
                self._bump(conn)
        return done == 1
