"""The browser side of the provider: authorization endpoint, login, consent, logout, account.

Plain HTML forms that work without JavaScript (INTERFACES.md), Chinese labels.  Every form is
CSRF-protected (:class:`.sessions.CsrfGuard`); every page is ``no-store``, cannot be framed, and
sends no referrer (an authorization code in a URL must not leak through ``Referer``).
The login form posts back the original authorization request (``authz``) and is redirected
to ``/oauth2/authorize?<that query>`` — always our own path, never a caller-supplied URL.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc6749.errors import InsecureTransportError
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from joserfc import jwt
from joserfc.errors import JoseError

from . import totp
from .auditing import AuditRefused
from .authn import ACR_MFA, ACR_PWD, Authenticator
from .oauth import ACR_LEVELS, EndUser, StarletteOAuth2Request, ZtgwAuthorizationServer
from .sessions import CSRF_COOKIE, SESSION_COOKIE, CsrfGuard, SessionManager
from .store import SessionRecord

MAX_FORM_BYTES = 16 * 1024
MFA_TICKET_SECONDS = 300
# where a sign-in may return to (`/login?next=…`): this gateway's own pages only — never a
# scheme, host, `//`, backslash or dot segment (no open redirect, ASVS 5 V3 / CWE-601)
_NEXT = re.compile(r"^/(?:console(?:/[A-Za-z0-9_\-]+)*/?|account)$")


def safe_next(value: str | None) -> str | None:
    """``value`` when it is one of the gateway's own console/account paths, else None."""
    if value and len(value) <= 256 and _NEXT.match(value):
        return value
    return None

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
MSG_BAD_LOGIN = "用户名或密码错误。"
MSG_LOCKED = "登录失败次数过多，请于 {n} 秒后再试。"
MSG_BAD_OTP = "动态验证码错误或已使用，请重新输入。"
MSG_CSRF = "页面已过期或请求来源无法确认，请重新打开登录页面。"


def _templates() -> Environment:
    folder = str(files("ztgw.gateway.identity").joinpath("templates"))
    return Environment(loader=FileSystemLoader(folder), autoescape=select_autoescape(["html"]),
                       auto_reload=False)


async def read_form(request: Request) -> dict[str, list[str]] | None:
    """A form-encoded body, or None if it is not one (too large, wrong type, bad encoding)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return None
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        return None


def single(form: dict[str, list[str]], name: str) -> str:
    v = form.get(name) or [""]
    return v[0]


def acr_level(acr: str | None) -> int:
    return ACR_LEVELS.get(acr or "", 0)


def required_level(args: dict[str, str]) -> int:
    """The strongest level among the requested ``acr_values`` we know (OIDC Core §3.1.2.1)."""
    wanted = [ACR_LEVELS[v] for v in args.get("acr_values", "").split() if v in ACR_LEVELS]
    return max(wanted, default=0)


class IdentityWeb:
    def __init__(self, server: ZtgwAuthorizationServer, sessions: SessionManager,
                 authn: Authenticator, csrf: CsrfGuard, issuer: str,
                 emit: Callable[[str, dict[str, Any]], None],
                 extra_login_links: Callable[[], dict[str, Any]] | None = None) -> None:
        self.server, self.sessions, self.authn, self.csrf = server, sessions, authn, csrf
        self.store = server.store
        self.directory = server.directory
        self.issuer = issuer
        self.emit = emit
        self.env = _templates()
        self.extra_login_links = extra_login_links or self._extension_links
        self.cert_login: Any = None  # certlogin.CertificateLogin, attached by extensions.py
        self.federations: list[Any] = []  # federation.Federation

    def _extension_links(self) -> dict[str, Any]:
        return {"certificate": self.cert_login is not None,
                "federation": [{"name": f.config.name, "title": f.config.title}
                               for f in self.federations]}

    # --- helpers ---------------------------------------------------------------------------
    def page(self, template: str, request: Request, status: int = 200, **ctx: Any) -> HTMLResponse:
        cookie = request.cookies.get(CSRF_COOKIE)
        new_cookie = None
        if not cookie or len(cookie) > 128:
            cookie = new_cookie = self.csrf.new_cookie()
        html = self.env.get_template(template).render(csrf_token=self.csrf.token_for(cookie), **ctx)
        resp = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
        if new_cookie:
            resp.set_cookie(CSRF_COOKIE, new_cookie, httponly=True, samesite="lax",
                            secure=self.sessions.secure_cookies, path="/")
        return resp

    def message(self, request: Request, heading: str, message: str, status: int = 400,
                code: str | None = None, is_error: bool = True) -> HTMLResponse:
        return self.page("message.html", request, status=status, heading=heading, message=message,
                         code=code, is_error=is_error, link=None, link_text=None)

    def audit_refused(self, request: Request) -> HTMLResponse:
        return self.message(request, "暂时无法登录",
                            "安全审计服务暂时不可用，为保证每次登录都有记录，系统暂停登录。请稍后再试。",
                            status=503, code="temporarily_unavailable")

    def csrf_ok(self, request: Request, form: dict[str, list[str]]) -> bool:
        return self.csrf.check(request.cookies.get(CSRF_COOKIE), single(form, "csrf_token"))

    def redirect(self, location: str, status: int = 303) -> Response:
        return RedirectResponse(location, status_code=status, headers=PAGE_HEADERS)

    def with_iss(self, location: str) -> str:
        return add_params_to_uri(location, [("iss", self.issuer)])  # RFC 9207

    def oauth_error(self, request: Request, error: OAuth2Error) -> Response:
        if error.redirect_uri:
            params = [("error", error.error)]
            if error.description:
                params.append(("error_description", error.description))
            if getattr(error, "state", None):
                params.append(("state", error.state))
            params.append(("iss", self.issuer))
            return self.redirect(add_params_to_uri(error.redirect_uri, params), 302)
        # no verified redirect URI: never redirect (RFC 6749 §4.1.2.1), tell the user
        return self.message(request, "无法完成登录请求",
                            "应用发起的登录请求无效（应用未登记或回调地址不匹配），请联系应用管理员。",
                            code=f"{error.error}: {error.description or ''}")

    def oauth_request(self, request: Request, args: dict[str, str]) -> StarletteOAuth2Request:
        # the configured issuer (https in production), not what the socket saw behind a proxy;
        # an http issuer off loopback makes authlib refuse: fail closed, see authorize()
        return StarletteOAuth2Request("GET", self.issuer + request.url.path, dict(request.headers),
                                      {k: [v] for k, v in args.items()}, args)

    @staticmethod
    def end_user(s: SessionRecord) -> EndUser:
        return EndUser(username=s.username, auth_time=s.auth_time, acr=s.acr, amr=s.amr, sid=s.sid)

    def set_session_cookie(self, resp: Response, secret: str) -> None:
        resp.set_cookie(SESSION_COOKIE, secret, httponly=True, samesite="lax",
                        secure=self.sessions.secure_cookies, path="/", max_age=self.sessions.max_age)

    def login_page(self, request: Request, authz: str, status: int = 200, error: str | None = None,
                   username: str = "", mfa_ticket: str | None = None, step_up: bool = False
                   ) -> HTMLResponse:
        args = dict(parse_qsl(authz))
        client = self.directory.get_client(args.get("client_id", "")) if args else None
        links = self.extra_login_links()
        return self.page("login.html", request, status=status, error=error, username=username,
                         authz=authz, authz_q=urlencode({"a": authz})[2:],
                         next_path=getattr(request.state, "ztgw_next", None),
                         client_name=client.name if client else None, mfa_ticket=mfa_ticket,
                         step_up=step_up, ask_otp=False,
                         cert_login=links.get("certificate", False),
                         federation=links.get("federation", []))

    # --- the authorization endpoint ---------------------------------------------------------
    def authorize(self, request: Request, args: dict[str, str]) -> Response:
        if not args.get("redirect_uri"):
            return self.message(request, "无法完成登录请求", "登录请求缺少回调地址（redirect_uri）。",
                                code="invalid_request")
        session = self.sessions.current(request.cookies.get(SESSION_COOKIE))
        prompts = args.get("prompt", "").split()
        needs_login = session is None or "login" in prompts
        step_up = False
        if session is not None and args.get("max_age", "").isdigit() \
                and time.time() - session.auth_time > int(args["max_age"]):
            needs_login = True
        need = max(required_level(args), acr_level(self.store.client_min_acr(args.get("client_id", ""))))
        if session is not None and acr_level(session.acr) < need:
            needs_login, step_up = True, True
        try:
            req = self.oauth_request(request, args)
        except InsecureTransportError:
            return self.message(request, "无法完成登录请求", "统一身份认证必须通过 HTTPS 访问。",
                                code="insecure_transport")
        try:
            grant = self.server.get_consent_grant(
                req, end_user=None if needs_login else self.end_user(session))  # type: ignore[arg-type]
        except OAuth2Error as error:
            return self.oauth_error(request, error)
        if needs_login:
            if "none" in prompts:
                err = OAuth2Error(error="login_required", description="Login is required",
                                  redirect_uri=grant.redirect_uri)
                err.state = args.get("state")
                return self.oauth_error(request, err)
            authz = urlencode({k: v for k, v in args.items() if k not in ("prompt", "max_age")})
            return self.login_page(request, authz, step_up=step_up)
        assert session is not None
        client_id = args["client_id"]
        _bc, _post, first_party = self.store.client_logout(client_id)
        wanted = set((req.scope or "").split())
        if not first_party and not wanted <= self.store.consented_scope(session.username, client_id):
            if "none" in prompts:
                err = OAuth2Error(error="consent_required", description="Consent is required",
                                  redirect_uri=grant.redirect_uri)
                err.state = args.get("state")
                return self.oauth_error(request, err)
            client = self.directory.get_client(client_id)
            return self.page("consent.html", request, client_name=client.name if client else client_id,
                             username=session.username, scopes=sorted(wanted), authz=urlencode(args))
        return self.issue_code(request, req, grant, session)

    def issue_code(self, request: Request, req: StarletteOAuth2Request, grant: Any,
                   session: SessionRecord | None) -> Response:
        user = self.end_user(session) if session is not None else None
        status, _body, headers = self.server.create_authorization_response(req, grant_user=user,
                                                                           grant=grant)
        location = dict(headers).get("Location")
        if status != 302 or not location:
            return self.message(request, "无法完成登录请求", "授权请求无效。", code=str(_body))
        if session is not None:
            try:  # the code (stored only as a hash) is useless unless this redirect carries it
                self.emit("authorization-code-issued", {"client_id": req.payload.client_id,
                                                        "username": session.username,
                                                        "sid": session.sid})
            except AuditRefused:
                return self.audit_refused(request)
            self.store.add_session_client(session.sid, req.payload.client_id)
        return self.redirect(self.with_iss(location), 302)

    # --- login ------------------------------------------------------------------------------
    async def login_post(self, request: Request) -> Response:
        form = await read_form(request)
        if form is None:
            return self.message(request, "登录失败", "请求格式不正确。", code="invalid_request")
        authz = urlencode(parse_qsl(single(form, "authz")))  # re-encoded: only our own query
        request.state.ztgw_next = None if authz else safe_next(single(form, "next"))
        if not self.csrf_ok(request, form):
            return self.login_page(request, authz, status=400, error=MSG_CSRF)
        username = single(form, "username").strip()[:128]
        ip = request.client.host if request.client else None
        args = dict(parse_qsl(authz))
        need = max(required_level(args),
                   acr_level(self.store.client_min_acr(args.get("client_id", ""))))
        ticket = single(form, "mfa_ticket")
        if ticket:
            if not self.csrf.verify_signed("mfa", username, ticket):
                return self.login_page(request, authz, status=400, error=MSG_CSRF)
            wait = self.authn.locked_for(username, ip)
            if wait:
                return self.login_page(request, authz, status=429, error=MSG_LOCKED.format(n=wait))
            if not await asyncio.to_thread(self.authn.check_totp, username, single(form, "otp"), ip):
                self.emit("login-failed", {"username": username, "source_ip": ip, "reason": "otp"})
                return self.login_page(request, authz, status=401, error=MSG_BAD_OTP,
                                       username=username, mfa_ticket=ticket)
            return self.signed_in(request, username, ACR_MFA, ("pwd", "otp", "mfa"), authz)
        result = await asyncio.to_thread(self.authn.check_password, username,
                                         single(form, "password")[:4096], ip)
        if not result.ok:
            # a mistyped password can land in the name field: only known names reach the audit
            known = username if self.directory.get_user(username) is not None else "(unknown)"
            self.emit("login-failed", {"username": known, "source_ip": ip,
                                       "reason": result.reason})
            if result.reason == "locked":
                return self.login_page(request, authz, status=429, username=username,
                                       error=MSG_LOCKED.format(n=result.retry_after))
            return self.login_page(request, authz, status=401, error=MSG_BAD_LOGIN,
                                   username=username)
        assert result.user is not None
        name = result.user.username
        enrolled = await asyncio.to_thread(self.authn.totp_enrolled, name)
        if need >= ACR_LEVELS[ACR_MFA] and not enrolled:
            return self.message(request, "需要更高的认证强度",
                                "该应用要求动态验证码（多因素认证），但您的账号尚未开启。"
                                "请先登录“我的账号”页面开启动态验证码。", status=403,
                                code="mfa_not_enrolled")
        if enrolled:
            otp = single(form, "otp")
            if otp:
                if not await asyncio.to_thread(self.authn.check_totp, name, otp, ip):
                    return self.login_page(request, authz, status=401, error=MSG_BAD_OTP,
                                           username=name,
                                           mfa_ticket=self.csrf.sign("mfa", name, MFA_TICKET_SECONDS))
                return self.signed_in(request, name, ACR_MFA, ("pwd", "otp", "mfa"), authz)
            return self.login_page(request, authz, username=name,
                                   mfa_ticket=self.csrf.sign("mfa", name, MFA_TICKET_SECONDS))
        return self.signed_in(request, name, ACR_PWD, ("pwd",), authz)

    def signed_in(self, request: Request, username: str, acr: str, amr: tuple[str, ...],
                  authz: str) -> Response:
        ip = request.client.host if request.client else None
        try:  # recorded before any session or cookie exists (no audit, no access)
            self.emit("login-succeeded", {"username": username, "source_ip": ip, "acr": acr})
        except AuditRefused:
            return self.audit_refused(request)
        self.authn.login_succeeded(username, ip)
        old = self.sessions.current(request.cookies.get(SESSION_COOKIE))
        if old is not None and old.username == username:
            # step-up or re-authentication in the same session: stronger factors, new secret
            import secrets as _secrets

            secret = _secrets.token_urlsafe(32)
            self.store.rekey_session(old.sid, secret)
            if acr_level(acr) >= acr_level(old.acr):
                self.store.step_up_session(old.sid, acr, amr)
        else:
            if old is not None:
                self.sessions.end(old.sid, reason="replaced")
            secret, _sid = self.sessions.create(username, acr, amr, ip,
                                               request.headers.get("user-agent"))
        target = (f"/oauth2/authorize?{authz}" if authz
                  else getattr(request.state, "ztgw_next", None) or "/account")
        resp = self.redirect(target)
        self.set_session_cookie(resp, secret)
        return resp

    # --- consent ----------------------------------------------------------------------------
    async def consent_post(self, request: Request) -> Response:
        form = await read_form(request)
        if form is None or not self.csrf_ok(request, form):
            return self.message(request, "授权失败", MSG_CSRF, code="csrf")
        session = self.sessions.current(request.cookies.get(SESSION_COOKIE))
        args = dict(parse_qsl(single(form, "authz")))
        if session is None:
            return self.login_page(request, urlencode(args))
        try:
            req = self.oauth_request(request, args)
            grant = self.server.get_consent_grant(req, end_user=self.end_user(session))
        except InsecureTransportError:
            return self.message(request, "授权失败", "统一身份认证必须通过 HTTPS 访问。",
                                code="insecure_transport")
        except OAuth2Error as error:
            return self.oauth_error(request, error)
        if single(form, "decision") != "allow":
            self.emit("consent-denied", {"client_id": args.get("client_id"),
                                         "username": session.username})
            return self.issue_code(request, req, grant, None)
        self.store.save_consent(session.username, args.get("client_id", ""),
                                set((req.scope or "").split()))
        self.emit("consent-granted", {"client_id": args.get("client_id"), "username": session.username})
        return self.issue_code(request, req, grant, session)

    # --- logout (OIDC RP-Initiated Logout 1.0) -----------------------------------------------
    def _hint(self, token: str) -> dict[str, Any] | None:
        verifier = self.server.verifier
        if not token or verifier is None or len(token) > 8192:
            return None
        try:
            dec = jwt.decode(token, verifier.keyset, algorithms=["ES256", "RS256", "SM2SM3"])
        except (JoseError, ValueError, TypeError, KeyError):
            return None
        if dec.header.get("typ") == "at+jwt" or dec.claims.get("iss") != self.issuer:
            return None  # only our ID tokens (expired ones are fine: §2)
        return dict(dec.claims)

    def _post_logout_target(self, params: dict[str, str], hint: dict[str, Any] | None) -> str | None:
        uri = params.get("post_logout_redirect_uri")
        if not uri:
            return None
        client_id = params.get("client_id") or (hint or {}).get("aud")
        if isinstance(client_id, list):
            client_id = client_id[0] if len(client_id) == 1 else None
        if not isinstance(client_id, str):
            return None
        _bc, registered, _fp = self.store.client_logout(client_id)
        if uri not in registered:  # exact match, like redirect URIs
            return None
        return add_params_to_uri(uri, [("state", params["state"])]) if params.get("state") else uri

    def logout_done(self, request: Request, params: dict[str, str],
                    hint: dict[str, Any] | None) -> Response:
        session = self.sessions.current(request.cookies.get(SESSION_COOKIE))
        if session is not None:
            self.sessions.end(session.sid, reason="rp_logout" if hint else "user_logout")
        target = self._post_logout_target(params, hint)
        resp: Response = self.redirect(target) if target else self.page(
            "message.html", request, status=200, heading="已退出登录",
            message="您已退出统一身份认证，通过本次登录进入的应用也已通知退出。",
            code=None, is_error=False, link="/login", link_text="重新登录")
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    def logout_get(self, request: Request) -> Response:
        params = dict(request.query_params)
        hint = self._hint(params.get("id_token_hint", ""))
        session = self.sessions.current(request.cookies.get(SESSION_COOKIE))
        if session is not None and hint is not None and hint.get("sub") == session.username \
                and hint.get("sid") in (None, session.sid):
            return self.logout_done(request, params, hint)
        if session is None:
            return self.logout_done(request, params, hint)
        keep = [(k, v) for k, v in params.items()
                if k in ("id_token_hint", "post_logout_redirect_uri", "state", "client_id")]
        return self.page("logout.html", request, params=keep)

    async def logout_post(self, request: Request) -> Response:
        form = await read_form(request)
        if form is None or not self.csrf_ok(request, form):
            return self.message(request, "退出失败", MSG_CSRF, code="csrf")
        params = {k: v[0] for k, v in form.items() if v and k in (
            "id_token_hint", "post_logout_redirect_uri", "state", "client_id")}
        return self.logout_done(request, params, self._hint(params.get("id_token_hint", "")))

    # --- the user's own account -------------------------------------------------------------
    def account(self, request: Request, notice: str | None = None, totp_secret: str | None = None
                ) -> Response:
        session = self.sessions.current(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return self.redirect("/login")
        rows = [{
            "sid": s.sid, "current": s.sid == session.sid,
            "when": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.auth_time)),
            "ip": s.source_ip or "-", "amr": "+".join(s.amr), "clients": "、".join(s.clients) or "-",
        } for s in self.store.list_sessions(session.username) if self.sessions.is_live(s)]
        return self.page("account.html", request, username=session.username, sessions=rows,
                         notice=notice, totp_secret=totp_secret,
                         totp_uri=totp.provisioning_uri(totp_secret, session.username)
                         if totp_secret else None,
                         totp_enrolled=self.authn.totp_enrolled(session.username),
                         federation=self._extension_links()["federation"])

    async def account_post(self, request: Request, action: str) -> Response:
        form = await read_form(request)
        if form is None or not self.csrf_ok(request, form):
            return self.message(request, "操作失败", MSG_CSRF, code="csrf")
        session = self.sessions.current(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return self.redirect("/login")
        if action == "end":
            target = self.store.session_by_sid(single(form, "sid"))
            if target is None or target.username != session.username:
                return self.message(request, "操作失败", "没有这个会话。", status=404, code="not_found")
            self.sessions.end(target.sid, reason="user_ended")
            if target.sid == session.sid:
                return self.logout_done(request, {}, None)
            return self.account(request, notice="已结束该会话。")
        if action == "totp-enrol":
            if self.authn.totp_enrolled(session.username):
                return self.account(request, notice="动态验证码已开启。")
            return self.account(request, totp_secret=self.authn.enrol_totp(session.username))
        if action == "totp-confirm":
            ip = request.client.host if request.client else None
            ok = await asyncio.to_thread(self.authn.confirm_totp, session.username,
                                         single(form, "otp"), ip)
            if ok:
                self.emit("totp-enrolled", {"username": session.username})
            return self.account(request, notice="动态验证码已开启。" if ok else "验证码不正确，请重新开启。")
        return self.message(request, "操作失败", "未知操作。", status=404, code="not_found")

    # --- routes -----------------------------------------------------------------------------
    def router(self) -> APIRouter:
        r = APIRouter(tags=["identity-web"], include_in_schema=False)
        css = files("ztgw.gateway.identity").joinpath("templates/ztgw.css").read_text("utf-8")
        if self.cert_login is not None:
            r.include_router(self.cert_login.router())
        for fed in self.federations:
            r.include_router(fed.router())

        @r.get("/identity/static/ztgw.css")
        async def stylesheet() -> Response:
            return Response(css, media_type="text/css",
                            headers={"Cache-Control": "public, max-age=3600"})

        @r.get("/oauth2/authorize")
        async def authorize(request: Request) -> Response:
            try:
                raw = parse_qs(request.url.query, keep_blank_values=True, max_num_fields=64)
            except ValueError:
                raw = {"": ["", ""]}  # too many fields: refused below like a repeat
            if any(len(v) > 1 for v in raw.values()):
                return self.message(request, "无法完成登录请求", "请求参数重复。", code="invalid_request")
            args = {k: v[0] for k, v in raw.items()}
            return await asyncio.to_thread(self.authorize, request, args)

        @r.post("/oauth2/authorize")
        async def authorize_post(request: Request) -> Response:
            """OIDC Core §3.1.2.1: the same request form-serialised in a POST body, with the
            same checks.  The parameters come from the body only; a query string as well is
            refused as ambiguous.  (With a SameSite=Lax session cookie a cross-site POST
            does not carry the SSO session, so the user is asked to sign in: fail safe.)"""
            form = await read_form(request)
            if form is None or request.url.query:
                return self.message(request, "无法完成登录请求",
                                    "请求格式不正确（参数须以表单编码放在请求体中）。",
                                    code="invalid_request")
            if any(len(v) > 1 for v in form.values()):
                return self.message(request, "无法完成登录请求", "请求参数重复。", code="invalid_request")
            args = {k: v[0] for k, v in form.items()}
            return await asyncio.to_thread(self.authorize, request, args)

        @r.get("/login")
        async def login_get(request: Request) -> Response:
            request.state.ztgw_next = safe_next(request.query_params.get("next"))
            return self.login_page(request, urlencode(parse_qsl(request.query_params.get("authz", ""))))

        @r.post("/login")
        async def login_post(request: Request) -> Response:
            return await self.login_post(request)

        @r.post("/oauth2/consent")
        async def consent(request: Request) -> Response:
            return await self.consent_post(request)

        @r.get("/oauth2/logout")
        async def logout_get(request: Request) -> Response:
            return await asyncio.to_thread(self.logout_get, request)

        @r.post("/oauth2/logout")
        async def logout_post(request: Request) -> Response:
            return await self.logout_post(request)

        @r.get("/account")
        async def account(request: Request) -> Response:
            return await asyncio.to_thread(self.account, request)

        @r.post("/account/sessions/end")
        async def account_end(request: Request) -> Response:
            return await self.account_post(request, "end")

        @r.post("/account/totp/enrol")
        async def totp_enrol(request: Request) -> Response:
            return await self.account_post(request, "totp-enrol")

        @r.post("/account/totp/confirm")
        async def totp_confirm(request: Request) -> Response:
            return await self.account_post(request, "totp-confirm")

        return r
