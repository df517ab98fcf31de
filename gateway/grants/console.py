"""The web console at ``/console/``: data owners' approvals and grants, the catalogue, access
history, and citizens' consent — server-rendered Jinja2, Chinese UI, no JavaScript needed.

Protected by the SSO session (no session → ``/login``), the policy engine (the same admin areas
as the admin API, with the dataset's owner department on the resource) and the service's own
checks.  Every form carries a CSRF token (:class:`~..identity.sessions.CsrfGuard`, signed
double-submit); pages are ``no-store``, cannot be framed, and run under a CSP without scripts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ztgw.audit.query import AuditQuery
from ztgw.audit.store import AuditStore
from ztgw.policies.domain import Classification, Resource, Subject
from ztgw.policies.domain import Environment as PolicyEnvironment
from ztgw.policies.engine import PolicyEngine

from ..catalogue import PersonalInfo
from ..identity.directory import Directory
from ..identity.sessions import CSRF_COOKIE, SESSION_COOKIE, CsrfGuard, SessionManager
from ..identity.web import safe_next
from .proposals import propose
from .service import APPROVER_ROLE, CITIZEN_ROLE, GrantError, GrantService, mask_key

CONSOLE_CLIENT = "ztgw-console"
MAX_FORM_BYTES = 32 * 1024
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
STATUS_LABELS = {"pending": "待审批", "approved": "已批准", "rejected": "已拒绝",
                 "active": "生效中", "revoked": "已撤销", "expired": "已过期", "granted": "已授权",
                 "declined": "已拒绝"}
MSG_CSRF = "页面已过期或请求来源无法确认，请刷新页面后重试。"


def _when(t: int | float | None) -> str:
    if not t:
        return "-"
    return datetime.fromtimestamp(t, LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


def _duration(seconds: int | float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s} 秒"
    if s < 3600:
        return f"{s // 60} 分钟"
    if s < 86400:
        return f"{s / 3600:.1f} 小时"
    return f"{s / 86400:.1f} 天"


def _day(value: str) -> int | None:
    """A ``YYYY-MM-DD`` date from a form, as the end of that day in Beijing time."""
    value = value.strip()
    if not value:
        return None
    try:
        d = datetime.strptime(value, "%Y-%m-%d").replace(hour=23, minute=59, second=59,
                                                         tzinfo=LOCAL_TZ)
    except ValueError as exc:
        raise GrantError(400, "invalid_request", "日期格式应为 YYYY-MM-DD") from exc
    return int(d.timestamp())


class Console:
    def __init__(self, *, service: GrantService, sessions: SessionManager, csrf: CsrfGuard,
                 directory: Directory, engine: PolicyEngine,
                 audit_store: Callable[[], AuditStore],
                 pii_findings: Callable[[str], list[dict[str, Any]]] | None = None,
                 subject_ref: Callable[[str], str] | None = None) -> None:
        self.service, self.sessions, self.csrf = service, sessions, csrf
        # the data plane's keyed pseudonym of a record key (ztgw.data.subject of access
        # events): a citizen sees the reads of *their* record, not of other consenting citizens'
        self.subject_ref = subject_ref
        # what the gateway's PII sampler found in live answers (issue 10): classification
        # proposals the owner confirms on the catalogue page
        self.pii_findings = pii_findings
        self.directory, self.engine, self.audit_store = directory, engine, audit_store
        folder = str(files("ztgw.gateway.grants").joinpath("templates"))
        self.env = Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape(["html"]),
                               auto_reload=False)
        self.env.filters["when"] = _when
        self.env.filters["duration"] = _duration
        self.env.globals["status_label"] = lambda s: STATUS_LABELS.get(s, s)
        self.css = files("ztgw.gateway.grants").joinpath("static/console.css").read_text("utf-8")

    # --- plumbing ------------------------------------------------------------------------
    def subject(self, request: Request) -> Subject | None:
        s = self.sessions.current(request.cookies.get(SESSION_COOKIE))
        if s is None:
            return None
        u = self.directory.get_user(s.username)
        if u is None or not u.enabled:
            return None
        return Subject(id=f"user:{u.username}", kind="user", name=u.username,
                       client_id=CONSOLE_CLIENT, roles=frozenset(u.roles), department=u.department,
                       clearance=u.clearance,
                       attributes={**u.attributes, "display_name": u.display_name or u.username,
                                   "acr": s.acr})

    def allowed(self, request: Request, subject: Subject, area: str, action: str,
                owner: str | None = None) -> bool:
        resource = Resource(dataset=f"ztgw.admin.{area}", classification=Classification.CORE,
                            owner_department=owner)
        env = PolicyEnvironment(time=datetime.now(UTC),
                                source_ip=request.client.host if request.client else None,
                                acr=subject.attributes.get("acr"))
        return self.engine.decide(subject, resource, action, env).allowed

    def page(self, template: str, request: Request, subject: Subject | None, status: int = 200,
             **ctx: Any) -> HTMLResponse:
        cookie = request.cookies.get(CSRF_COOKIE)
        new_cookie = None
        if not cookie or len(cookie) > 128:
            cookie = new_cookie = self.csrf.new_cookie()
        nav = {
            "approver": subject is not None and APPROVER_ROLE in subject.roles,
            "citizen": subject is not None and CITIZEN_ROLE in subject.roles,
        }
        html = self.env.get_template(template).render(
            csrf_token=self.csrf.token_for(cookie), me=subject, nav=nav,
            display_name=(subject.attributes.get("display_name") if subject else None), **ctx)
        resp = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
        if new_cookie:
            resp.set_cookie(CSRF_COOKIE, new_cookie, httponly=True, samesite="lax",
                            secure=self.sessions.secure_cookies, path="/")
        return resp

    def message(self, request: Request, subject: Subject | None, heading: str, text: str,
                status: int) -> HTMLResponse:
        return self.page("message.html", request, subject, status=status, heading=heading,
                         text=text)

    @staticmethod
    def redirect(location: str) -> Response:
        return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})

    async def form(self, request: Request) -> dict[str, list[str]] | None:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return None
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return None
        try:
            return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=512)
        except (UnicodeDecodeError, ValueError):
            return None

    # --- pages ---------------------------------------------------------------------------
    def home(self, request: Request, me: Subject) -> Response:
        if APPROVER_ROLE in me.roles:
            return self.redirect("/console/requests")
        if CITIZEN_ROLE in me.roles:
            return self.redirect("/console/consent")
        return self.redirect("/console/mine")

    def requests_page(self, request: Request, me: Subject, status: str) -> Response:
        if not self.allowed(request, me, "grants", "read", me.department):
            return self.message(request, me, "无权访问", "只有数据所有方的审批人可以查看审批事项。", 403)
        owned = [d.dataset for d in self.service.owned_datasets(me)]
        items = self.service.store.list_requests(datasets=owned, status=status or None)
        return self.page("requests.html", request, me, items=items, current=status,
                         stats=self.service.approval_times(owned),
                         titles={d.dataset: d.title for d in self.service.catalogue.all()})

    def request_page(self, request: Request, me: Subject, request_id: str,
                     notice: str | None = None, error: str | None = None,
                     status: int = 200) -> Response:
        r = self.service.store.get_request(request_id)
        ds = self.service.catalogue.get(r.dataset) if r else None
        if r is None or ds is None or not self.allowed(request, me, "grants", "read",
                                                       ds.owner_department) \
                or not self.service.may_own(me, ds):
            return self.message(request, me, "没有这个申请", "申请不存在，或不属于您部门的数据集。", 404)
        voted = any(a.approver == me.id for a in r.approvals)
        return self.page("request.html", request, me, r=r, ds=ds, notice=notice, error=error,
                         voted=voted, own=me.id in (r.requested_by, r.grantee), status=status,
                         wait=(r.decided_at or int(time.time())) - r.created_at)

    async def decide(self, request: Request, request_id: str, how: str) -> Response:
        me = self.subject(request)
        if me is None:
            return self.redirect("/login")
        form = await self.form(request)
        if form is None or not self.csrf.check(request.cookies.get(CSRF_COOKIE),
                                               _one(form, "csrf_token")):
            return self.message(request, me, "操作失败", MSG_CSRF, 400)
        r = self.service.store.get_request(request_id)
        ds = self.service.catalogue.get(r.dataset) if r else None
        if r is None or ds is None or not self.allowed(request, me, "grants", "write",
                                                       ds.owner_department):
            return self.message(request, me, "无权操作", "您不能审批这个申请。", 403)
        fn = self.service.approve if how == "approve" else self.service.reject
        try:
            await asyncio.to_thread(fn, me, request_id, _one(form, "reason"))
        except GrantError as exc:
            return self.request_page(request, me, request_id, error=exc.message,
                                     status=exc.status)
        return self.request_page(request, me, request_id,
                                 notice="已批准。" if how == "approve" else "已拒绝。")

    def grants_page(self, request: Request, me: Subject) -> Response:
        if not self.allowed(request, me, "grants", "read", me.department):
            return self.message(request, me, "无权访问", "只有数据所有方的审批人可以查看授权。", 403)
        owned = [d.dataset for d in self.service.owned_datasets(me)]
        now = time.time()
        items = [(g, g.active_at(now) or (g.status == "active" and g.not_before > now))
                 for g in self.service.store.list_grants(datasets=owned)]
        return self.page("grants.html", request, me, items=items, now=now)

    def grant_page(self, request: Request, me: Subject, grant_id: str, notice: str | None = None,
                   error: str | None = None, status: int = 200) -> Response:
        g = self.service.store.get_grant(grant_id)
        ds = self.service.catalogue.get(g.dataset) if g else None
        if g is None or ds is None or not self.allowed(request, me, "grants", "read",
                                                       ds.owner_department) \
                or not self.service.may_own(me, ds):
            return self.message(request, me, "没有这个授权", "授权不存在，或不属于您部门的数据集。", 404)
        expires_day = datetime.fromtimestamp(g.expires_at, LOCAL_TZ).strftime("%Y-%m-%d")
        return self.page("grant.html", request, me, g=g, ds=ds, notice=notice, error=error,
                         status=status, active=g.active_at(time.time()), expires_day=expires_day)

    async def change_grant(self, request: Request, grant_id: str, how: str) -> Response:
        me = self.subject(request)
        if me is None:
            return self.redirect("/login")
        form = await self.form(request)
        if form is None or not self.csrf.check(request.cookies.get(CSRF_COOKIE),
                                               _one(form, "csrf_token")):
            return self.message(request, me, "操作失败", MSG_CSRF, 400)
        g = self.service.store.get_grant(grant_id)
        ds = self.service.catalogue.get(g.dataset) if g else None
        if g is None or ds is None or not self.allowed(request, me, "grants", "write",
                                                       ds.owner_department):
            return self.message(request, me, "无权操作", "您不能修改这个授权。", 403)
        try:
            if how == "revoke":
                await asyncio.to_thread(self.service.revoke, me, grant_id, _one(form, "reason"))
                notice = "已撤销：下一次请求起即被拒绝。"
            else:
                fields = form.get("fields")
                rows = _one(form, "row_values").replace("，", ",")
                kwargs: dict[str, Any] = {}
                if fields is not None and sorted(fields) != sorted(g.fields):
                    kwargs["fields"] = fields
                values = [v.strip() for v in rows.replace("\n", ",").split(",") if v.strip()]
                if values and sorted(values) != sorted(g.row_values):
                    kwargs["row_values"] = values
                    kwargs["row_field"] = _one(form, "row_field") or g.row_field
                quota = _one(form, "rows_per_day").strip()
                if quota and (g.rows_per_day is None or int(quota) != g.rows_per_day):
                    kwargs["rows_per_day"] = int(quota)
                day = _day(_one(form, "expires_on"))
                if day is not None and day < g.expires_at:
                    kwargs["expires_at"] = day
                await asyncio.to_thread(self.service.narrow, me, grant_id, _one(form, "reason"),
                                        **kwargs)
                notice = "已收窄授权范围。"
        except GrantError as exc:
            return self.grant_page(request, me, grant_id, error=exc.message, status=exc.status)
        except ValueError:
            return self.grant_page(request, me, grant_id, error="配额应为正整数。", status=400)
        return self.grant_page(request, me, grant_id, notice=notice)

    def datasets_page(self, request: Request, me: Subject, notice: str | None = None,
                      error: str | None = None, status: int = 200) -> Response:
        rows = []
        for d in self.service.catalogue.all():
            if not self.allowed(request, me, "catalogue", "read", d.owner_department):
                continue
            mine = self.service.may_own(me, d)
            rows.append({"d": d, "mine": mine,
                         "fields": [(k, v, d.pi.get(k, PersonalInfo.NONE)) for k, v in d.fields.items()],
                         "proposals": self._proposals(d) if mine else {}})
        if not rows and APPROVER_ROLE not in me.roles:
            return self.message(request, me, "无权访问", "只有数据所有方可以管理数据目录。", 403)
        return self.page("datasets.html", request, me, rows=rows, notice=notice, error=error,
                         status=status, levels=list(Classification), flags=list(PersonalInfo))

    def _proposals(self, d: Any) -> dict[str, dict[str, Any]]:
        if self.pii_findings is None:
            return {}
        try:
            found = self.pii_findings(d.dataset)
        except Exception:  # the sampler's store is an aid; the page works without it
            return {}
        out: dict[str, dict[str, Any]] = {}
        for entry in found:
            for p in propose(d, entry.get("fields", []), int(entry.get("rows") or 0)):
                out[p["field"]] = p
        return out

    async def confirm_field(self, request: Request, dataset: str, field: str) -> Response:
        me = self.subject(request)
        if me is None:
            return self.redirect("/login")
        form = await self.form(request)
        if form is None or not self.csrf.check(request.cookies.get(CSRF_COOKIE),
                                               _one(form, "csrf_token")):
            return self.message(request, me, "操作失败", MSG_CSRF, 400)
        ds = self.service.catalogue.get(dataset)
        if ds is None or not self.allowed(request, me, "catalogue", "write", ds.owner_department):
            return self.message(request, me, "无权操作", "您不能修改这个数据集。", 403)
        try:
            await asyncio.to_thread(self.service.confirm_field, me, dataset, field,
                                    _one(form, "classification"), _one(form, "pi"))
        except GrantError as exc:
            return self.datasets_page(request, me, error=exc.message, status=exc.status)
        return self.datasets_page(request, me, notice=f"已确认 {dataset}.{field} 的定级。")

    def history_page(self, request: Request, me: Subject) -> Response:
        if not self.allowed(request, me, "grants", "read", me.department):
            return self.message(request, me, "无权访问", "只有数据所有方可以查看访问记录。", 403)
        rows = []
        for d in self.service.owned_datasets(me):
            events = self.audit_store().search(AuditQuery(dataset=d.dataset, event_dataset="ztgw.access",
                                                          limit=50))
            rows.extend(_access_row(e, d.title) for e in events)
        rows.sort(key=lambda x: x["ts"], reverse=True)
        return self.page("history.html", request, me, rows=rows[:100])

    # --- requesters (any signed-in user may ask a data owner) ---------------------------
    def mine_page(self, request: Request, me: Subject, notice: str | None = None,
                  error: str | None = None, status: int = 200) -> Response:
        if not self.allowed(request, me, "requests", "read"):
            return self.message(request, me, "无权访问", "您不能提交用数申请。", 403)
        now = time.time()
        return self.page("mine.html", request, me, notice=notice, error=error, status=status,
                         requests=self.service.store.list_requests(requested_by=me.id),
                         grants=[(g, g.active_at(now))
                                 for g in self.service.store.list_grants(grantee=me.id)],
                         datasets=self.service.catalogue.all())

    def apply_page(self, request: Request, me: Subject, dataset: str, error: str | None = None,
                   status: int = 200) -> Response:
        ds = self.service.catalogue.get(dataset)
        if ds is None or not ds.enabled:
            return self.message(request, me, "没有这个数据集", "数据集不存在。", 404)
        if not self.allowed(request, me, "requests", "write", ds.owner_department):
            return self.message(request, me, "无权访问", "您不能提交用数申请。", 403)
        return self.page("apply.html", request, me, ds=ds, error=error, status=status,
                         flags={k: v.label for k, v in ds.pi.items()})

    async def apply_post(self, request: Request, dataset: str) -> Response:
        me = self.subject(request)
        if me is None:
            return self.redirect("/login")
        form = await self.form(request)
        if form is None or not self.csrf.check(request.cookies.get(CSRF_COOKIE),
                                               _one(form, "csrf_token")):
            return self.message(request, me, "操作失败", MSG_CSRF, 400)
        ds = self.service.catalogue.get(dataset)
        if ds is None or not self.allowed(request, me, "requests", "write", ds.owner_department):
            return self.message(request, me, "无权操作", "您不能提交用数申请。", 403)
        try:
            days = int(_one(form, "days") or "0")
            quota = _one(form, "rows_per_day").strip()
            rows = [v.strip() for v in _one(form, "row_values").replace("，", ",").split(",")
                    if v.strip()]
            r = await asyncio.to_thread(
                self.service.create_request, me, dataset=dataset, fields=form.get("fields") or [],
                purpose=_one(form, "purpose"), days=days,
                row_field=(_one(form, "row_field") or None) if rows else None,
                row_values=rows or None, rows_per_day=int(quota) if quota else None)
        except GrantError as exc:
            return self.apply_page(request, me, dataset, error=exc.message, status=exc.status)
        except ValueError:
            return self.apply_page(request, me, dataset, error="期限与配额应为正整数。", status=400)
        return self.mine_page(request, me, notice=f"已提交申请 {r.id}，等待数据所有方审批。")

    # --- citizens ------------------------------------------------------------------------
    def consent_page(self, request: Request, me: Subject, notice: str | None = None,
                     error: str | None = None, status: int = 200) -> Response:
        if not self.allowed(request, me, "consent", "read"):
            return self.message(request, me, "无权访问", "只有实名公民账号可以管理本人授权。", 403)
        now = time.time()
        pending = self.service.pending_consent_requests(me)
        mine = [(c, c.active_at(now)) for c in self.service.my_consents(me)]
        return self.page("consent.html", request, me, pending=pending, mine=mine, notice=notice,
                         error=error, status=status, apps=self._app_names(),
                         titles={d.dataset: d.title for d in self.service.catalogue.all()},
                         key=mask_key(str(me.attributes.get("id_number") or "")))

    def _app_names(self) -> dict[str, str]:
        return {c.client_id: c.name for c in self.directory.list_clients()}

    def consent_request_page(self, request: Request, me: Subject, request_id: str,
                             error: str | None = None, status: int = 200) -> Response:
        if not self.allowed(request, me, "consent", "read"):
            return self.message(request, me, "无权访问", "只有实名公民账号可以授权。", 403)
        try:
            r = self.service.consent_request_for(me, request_id)
        except GrantError:
            return self.message(request, me, "没有这个授权请求", "授权请求不存在或不是发给您的。", 404)
        ds = self.service.catalogue.get(r.dataset)
        return self.page("consent_request.html", request, me, r=r, ds=ds, error=error,
                         status=status, app=self._app_names().get(r.client_id, r.client_id),
                         key=mask_key(str(me.attributes.get("id_number") or "")))

    async def answer_consent(self, request: Request, request_id: str, how: str) -> Response:
        me = self.subject(request)
        if me is None:
            return self.redirect("/login")
        form = await self.form(request)
        if form is None or not self.csrf.check(request.cookies.get(CSRF_COOKIE),
                                               _one(form, "csrf_token")):
            return self.message(request, me, "操作失败", MSG_CSRF, 400)
        if not self.allowed(request, me, "consent", "write"):
            return self.message(request, me, "无权操作", "只有实名公民账号可以授权。", 403)
        try:
            if how == "give":
                days = _one(form, "days").strip()
                await asyncio.to_thread(self.service.give_consent, me, request_id,
                                        int(days) if days else None)
                return self.consent_page(request, me, notice="已授权，授权凭证已生成（SM2 签名）。")
            await asyncio.to_thread(self.service.decline_consent, me, request_id)
            return self.consent_page(request, me, notice="已拒绝该授权请求。")
        except GrantError as exc:
            return self.consent_request_page(request, me, request_id, error=exc.message,
                                             status=exc.status)
        except ValueError:
            return self.consent_request_page(request, me, request_id, error="期限应为天数。",
                                             status=400)

    async def revoke_consent(self, request: Request, consent_id: str) -> Response:
        me = self.subject(request)
        if me is None:
            return self.redirect("/login")
        form = await self.form(request)
        if form is None or not self.csrf.check(request.cookies.get(CSRF_COOKIE),
                                               _one(form, "csrf_token")):
            return self.message(request, me, "操作失败", MSG_CSRF, 400)
        if not self.allowed(request, me, "consent", "write"):
            return self.message(request, me, "无权操作", "只有实名公民账号可以撤销授权。", 403)
        try:
            await asyncio.to_thread(self.service.revoke_consent, me, consent_id)
        except GrantError as exc:
            return self.consent_page(request, me, error=exc.message, status=exc.status)
        return self.consent_page(request, me, notice="已撤销授权：该应用下一次请求起即不能读取您的数据。")

    def receipt(self, request: Request, me: Subject, consent_id: str) -> Response:
        if not self.allowed(request, me, "consent", "read"):
            return self.message(request, me, "无权访问", "只有实名公民账号可以下载授权凭证。", 403)
        c = self.service.store.get_consent(consent_id)
        if c is None or c.citizen != me.name:
            return self.message(request, me, "没有这个授权", "授权不存在。", 404)
        return Response(json.dumps(json.loads(c.receipt), ensure_ascii=False, indent=2),
                        media_type="application/json",
                        headers={**PAGE_HEADERS, "Content-Disposition":
                                 f'attachment; filename="consent-{c.id}.json"'})

    def my_data_page(self, request: Request, me: Subject) -> Response:
        """Accesses made under the citizen's consents (the apps, datasets and periods they
        authorised; decided by the consent rule)."""
        if not self.allowed(request, me, "consent", "read"):
            return self.message(request, me, "无权访问", "只有实名公民账号可以查看。", 403)
        rows = []
        titles = {d.dataset: d.title for d in self.service.catalogue.all()}
        apps = self._app_names()
        for c in self.service.my_consents(me):
            since = datetime.fromtimestamp(c.not_before, UTC).isoformat()
            until = datetime.fromtimestamp(min(c.revoked_at or c.expires_at, c.expires_at),
                                           UTC).isoformat()
            events = self.audit_store().search(AuditQuery(
                dataset=c.dataset, client=c.client_id, since=since, until=until,
                event_dataset="ztgw.access", limit=100))
            mine = self.subject_ref(c.subject_key) if self.subject_ref else None
            for e in events:
                subject = ((e.get("ztgw") or {}).get("data") or {}).get("subject")
                if mine is not None and subject is not None and subject != mine:
                    continue  # a record read of another citizen who consented to the same app
                rule = (e.get("rule") or {}).get("id")
                matched = (e.get("ztgw", {}).get("decision") or {}).get("matched_rules") or []
                if rule == "consent-read" or "consent-read" in matched:
                    row = _access_row(e, titles.get(c.dataset, c.dataset))
                    row["app"] = apps.get(c.client_id, c.client_id)
                    row["purpose"] = c.purpose
                    rows.append(row)
        rows.sort(key=lambda x: x["ts"], reverse=True)
        return self.page("mydata.html", request, me, rows=rows[:200])

    # --- routes --------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter(tags=["console"], include_in_schema=False)

        def signed_in(fn: Callable[..., Response]) -> Callable[..., Any]:
            async def handler(request: Request, **kw: Any) -> Response:
                me = await asyncio.to_thread(self.subject, request)
                if me is None:  # back to this page after signing in
                    path = request.url.path
                    return self.redirect(f"/login?next={path}" if safe_next(path) else "/login")
                return await asyncio.to_thread(fn, request, me, **kw)
            return handler

        @r.get("/console/static/console.css")
        async def css() -> Response:
            return Response(self.css, media_type="text/css",
                            headers={"Cache-Control": "public, max-age=3600"})

        @r.get("/console")
        async def root() -> Response:
            return self.redirect("/console/")

        @r.get("/console/")
        async def home(request: Request) -> Response:
            return await signed_in(self.home)(request)

        @r.get("/console/requests")
        async def requests(request: Request, status: str = "pending") -> Response:
            if status not in ("pending", "approved", "rejected", ""):
                status = "pending"
            return await signed_in(self.requests_page)(request, status=status)

        @r.get("/console/requests/{request_id}")
        async def request_detail(request: Request, request_id: str) -> Response:
            return await signed_in(self.request_page)(request, request_id=request_id)

        @r.post("/console/requests/{request_id}/approve")
        async def approve(request: Request, request_id: str) -> Response:
            return await self.decide(request, request_id, "approve")

        @r.post("/console/requests/{request_id}/reject")
        async def reject(request: Request, request_id: str) -> Response:
            return await self.decide(request, request_id, "reject")

        @r.get("/console/grants")
        async def grants(request: Request) -> Response:
            return await signed_in(self.grants_page)(request)

        @r.get("/console/grants/{grant_id}")
        async def grant_detail(request: Request, grant_id: str) -> Response:
            return await signed_in(self.grant_page)(request, grant_id=grant_id)

        @r.post("/console/grants/{grant_id}/narrow")
        async def narrow(request: Request, grant_id: str) -> Response:
            return await self.change_grant(request, grant_id, "narrow")

        @r.post("/console/grants/{grant_id}/revoke")
        async def revoke(request: Request, grant_id: str) -> Response:
            return await self.change_grant(request, grant_id, "revoke")

        @r.get("/console/datasets")
        async def datasets(request: Request) -> Response:
            return await signed_in(self.datasets_page)(request)

        @r.post("/console/datasets/{dataset}/fields/{field}")
        async def confirm(request: Request, dataset: str, field: str) -> Response:
            return await self.confirm_field(request, dataset, field)

        @r.get("/console/history")
        async def history(request: Request) -> Response:
            return await signed_in(self.history_page)(request)

        @r.get("/console/mine")
        async def mine(request: Request) -> Response:
            return await signed_in(self.mine_page)(request)

        @r.get("/console/apply/{dataset}")
        async def apply(request: Request, dataset: str) -> Response:
            return await signed_in(self.apply_page)(request, dataset=dataset)

        @r.post("/console/apply/{dataset}")
        async def apply_post(request: Request, dataset: str) -> Response:
            return await self.apply_post(request, dataset)

        @r.get("/console/consent")
        async def consent(request: Request) -> Response:
            return await signed_in(self.consent_page)(request)

        @r.get("/console/consent/requests/{request_id}")
        async def consent_request(request: Request, request_id: str) -> Response:
            return await signed_in(self.consent_request_page)(request, request_id=request_id)

        @r.post("/console/consent/requests/{request_id}/give")
        async def give(request: Request, request_id: str) -> Response:
            return await self.answer_consent(request, request_id, "give")

        @r.post("/console/consent/requests/{request_id}/decline")
        async def decline(request: Request, request_id: str) -> Response:
            return await self.answer_consent(request, request_id, "decline")

        @r.post("/console/consents/{consent_id}/revoke")
        async def consent_revoke(request: Request, consent_id: str) -> Response:
            return await self.revoke_consent(request, consent_id)

        @r.get("/console/consents/{consent_id}/receipt")
        async def receipt(request: Request, consent_id: str) -> Response:
            return await signed_in(self.receipt)(request, consent_id=consent_id)

        @r.get("/console/my-data")
        async def my_data(request: Request) -> Response:
            return await signed_in(self.my_data_page)(request)

        return r


def _one(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[0]


def _access_row(e: dict[str, Any], title: str) -> dict[str, Any]:
    data = e.get("ztgw", {}).get("data") or {}
    decision = e.get("ztgw", {}).get("decision") or {}
    ts = str(e.get("@timestamp", ""))
    try:
        when = datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(LOCAL_TZ)
        shown = when.strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        shown = ts
    return {
        "ts": ts, "when": shown, "dataset": title,
        "app": (e.get("ztgw", {}).get("oidc") or {}).get("client_id") or "-",
        "user": (e.get("user") or {}).get("name") or "-",
        # an allow that failed later (e.g. a row-filter violation, upstream error) read nothing
        "effect": ("allow" if decision.get("effect") == "allow"
                   and (e.get("event") or {}).get("outcome") == "success" else "deny"),
        "records": data.get("records"),
        "masked": data.get("masked_fields") or [],
        "obligations": data.get("obligations_applied") or decision.get("obligations") or [],
        "rule": (e.get("rule") or {}).get("id") or "-",
    }
