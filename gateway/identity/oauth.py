"""The OAuth 2.0 / OIDC authorization server on authlib, with a thin Starlette adapter.

Authlib has no Starlette *server* integration; this module is one of the same shape as its
Flask adapter (``integrations/flask_oauth2``): translate request and response, no protocol
logic.  Grants are authlib's; ztgw supplies the client model, the token generator (JWT access
tokens, RFC 9068; opaque rotating refresh tokens), persistence (:mod:`.store`) and the hooks:

- authorization code (RFC 6749 §4.1) with PKCE ``S256`` required for every client and
  ``plain`` refused (RFC 7636, RFC 9700 §2.1.1), ``state`` required, ``nonce`` required with
  ``openid`` (replay-checked), exact redirect-URI matching (RFC 9700 §2.1);
- codes are single-use; a replayed code revokes every token it produced (RFC 6749 §4.1.2);
- refresh tokens rotate on every use; presenting a used one revokes the whole family
  (RFC 9700 §4.14.2);
- client credentials (RFC 6749 §4.4), introspection (RFC 7662), revocation (RFC 7009).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import OpenIDCode
from authlib.oidc.core.util import create_half_hash

from .client_secrets import SecretHasher
from .directory import ClientRecord, Directory, UserRecord
from .keys import canonical_alg
from .store import CodeRecord, OAuthStore, RefreshRecord, digest
from .tokens import AccessTokenVerifier, TokenInvalid, TokenIssuer

GRANT_TYPES_SUPPORTED = ("authorization_code", "refresh_token", "client_credentials")
TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
CLIENT_CACHE_SECONDS = 1.0  # a disabled client or a new secret takes effect within this
CODE_TTL = 60  # seconds; RFC 6749 §4.1.2 recommends at most 10 minutes, we need far less
ID_TOKEN_TTL = 600
SCOPES_SUPPORTED = ("openid", "profile", "offline_access", "data.read", "ztgw.audit.read")
ACR_LEVELS = {  # acr value -> strength; a request's acr_values asks for at least this
    "urn:ztgw:acr:pwd": 1,
    "urn:ztgw:acr:mfa": 2,
    "urn:ztgw:acr:cert": 2,
    "urn:ztgw:acr:fed": 1,
}
CLAIMS_SUPPORTED = ("sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid",
                    "azp", "at_hash", "name", "preferred_username", "department", "clearance",
                    "groups")


class FormPayload(OAuth2Payload):
    def __init__(self, form: dict[str, list[str]]) -> None:
        self._datalist = defaultdict(list, form)
        # a repeated parameter is ambiguous; authlib rejects it, so keep the first here
        self._data = {k: v[0] for k, v in form.items() if v}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):
    def __init__(self, method: str, uri: str, headers: dict[str, str],
                 form: dict[str, list[str]], args: dict[str, str]) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self.payload = FormPayload(form)
        self._args = args
        self._form = {k: v[0] for k, v in form.items() if v}

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


def _basic_credentials(authorization: str | None) -> tuple[str | None, str | None]:
    """HTTP Basic client credentials, decoded exactly as authlib does
    (``authlib.oauth2.rfc6749.util.extract_basic_authorization``; RFC 6749 §2.3.1)."""
    if not authorization or " " not in authorization:
        return None, None
    kind, token = authorization.split(None, 1)
    if kind.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(token).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None, None
    if ":" not in decoded:
        return None, None
    user, password = decoded.split(":", 1)
    return unquote(user), unquote(password)


class OAuthClient(ClientMixin):  # type: ignore[misc]
    def __init__(self, record: ClientRecord, hasher: SecretHasher) -> None:
        self.record = record
        self._hasher = hasher

    @property
    def id_token_signed_response_alg(self) -> str:
        return self.record.id_token_alg

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.record.redirect_uris[0] if self.record.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return self.record.scope
        allowed = set(self.record.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.record.redirect_uris  # exact string match (RFC 9700 §2.1)

    def check_client_secret(self, client_secret: str) -> bool:
        return self._hasher.verify(client_secret, self.record.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.record.public:
            return method == "none"
        return method in TOKEN_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.record.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.record.grant_types


@dataclass
class EndUser:
    """The signed-in person behind an authorization: who, how and in which SSO session."""

    username: str
    auth_time: int
    acr: str
    amr: tuple[str, ...]
    sid: str | None
    record: UserRecord | None = None
    family_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def get_user_id(self) -> str:
        return self.username


class CodeObject:
    """What authlib reads from a stored authorization code."""

    def __init__(self, rec: CodeRecord) -> None:
        self.rec = rec
        self.code_challenge = rec.code_challenge
        self.code_challenge_method = rec.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.rec.redirect_uri

    def get_scope(self) -> str:
        return self.rec.scope

    def get_nonce(self) -> str | None:
        return self.rec.nonce

    def get_auth_time(self) -> int:
        return self.rec.auth_time

    def get_acr(self) -> str | None:
        return self.rec.acr

    def get_amr(self) -> list[str]:
        return list(self.rec.amr)


class RefreshObject:
    def __init__(self, rec: RefreshRecord) -> None:
        self.rec = rec

    def check_client(self, client: OAuthClient) -> bool:
        return self.rec.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.rec.scope


class S256Challenge(CodeChallenge):  # type: ignore[misc]
    """PKCE required on every authorization request, S256 only (RFC 9700 §2.1.1)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 - authlib's class attribute
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256 ('plain' is refused)")
        super().validate_code_challenge(grant, redirect_uri)


def require_state(grant: Any, redirect_uri: str) -> None:
    """``state`` protects the client's callback from CSRF (RFC 6749 §10.12); we insist on it."""
    if not grant.request.payload.state:
        raise InvalidRequestError("Missing 'state' in request.")


class ZtgwCodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

    def __init__(self, request: Any, server: Any) -> None:
        super().__init__(request, server)
        self.register_hook("after_validate_authorization_request_payload", require_state)

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        user: EndUser = request.user
        server: ZtgwAuthorizationServer = self.server
        data = request.payload.data
        server.store.save_code(code, CodeRecord(
            client_id=request.client.get_client_id(), username=user.username,
            redirect_uri=request.payload.redirect_uri or request.client.get_default_redirect_uri(),
            scope=request.scope or "", nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            auth_time=user.auth_time, acr=user.acr, amr=user.amr, sid=user.sid,
            family_id=secrets.token_urlsafe(18), expires_at=int(time.time()) + CODE_TTL,
        ))

    def query_authorization_code(self, code: str, client: OAuthClient) -> CodeObject | None:
        rec = self.server.store.consume_code(code, client.get_client_id())
        return CodeObject(rec) if rec else None

    def delete_authorization_code(self, authorization_code: CodeObject) -> None:
        return None  # consumed atomically in query_authorization_code

    def authenticate_user(self, authorization_code: CodeObject) -> EndUser | None:
        rec = authorization_code.rec
        user = self.server.directory.get_user(rec.username)
        if user is None or not user.enabled:
            return None
        self.server.store.create_family(rec.family_id, rec.client_id, rec.username, rec.sid)
        return EndUser(username=rec.username, auth_time=rec.auth_time, acr=rec.acr or "",
                       amr=rec.amr, sid=rec.sid, record=user, family_id=rec.family_id)


class ZtgwRefreshGrant(RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshObject | None:
        server: ZtgwAuthorizationServer = self.server
        rec = server.store.get_refresh(refresh_token)
        if rec is None or rec.family_revoked:
            return None
        # claim it first, atomically: two uses (a replay, or a race) cannot both succeed
        if rec.rotated or not server.store.rotate_refresh(rec.token_hash):
            server.store.revoke_family(rec.family_id, "refresh_reuse")
            server.refresh_revocations()
            server.signal("refresh-token-reuse", client_id=rec.client_id, username=rec.username)
            return None
        if rec.expires_at < time.time():
            return None
        return RefreshObject(rec)

    def authenticate_user(self, refresh_token: RefreshObject) -> EndUser | None:
        rec = refresh_token.rec
        user = self.server.directory.get_user(rec.username)
        if user is None or not user.enabled:
            return None
        return EndUser(username=rec.username, auth_time=rec.auth_time, acr=rec.acr or "",
                       amr=rec.amr, sid=rec.sid, record=user, family_id=rec.family_id)

    def revoke_old_credential(self, refresh_token: RefreshObject) -> None:
        return None  # rotated atomically in authenticate_refresh_token


def half_hash(value: str, alg: str) -> str:
    """``at_hash``: the left half of the hash the signature algorithm uses (OIDC Core
    §3.1.3.6); SM3 for SM2SM3."""
    if canonical_alg(alg) == "SM2SM3":
        d = hashlib.new("sm3", value.encode("ascii")).digest()
        return base64.urlsafe_b64encode(d[:16]).rstrip(b"=").decode("ascii")
    half = create_half_hash(value, alg)
    if half is None:
        raise ValueError(f"no half-hash for {alg}")
    return half.decode("ascii")


def user_claims(user: UserRecord, scope: str) -> dict[str, Any]:
    """Claims about the user released for ``scope`` (OIDC Core §5.4)."""
    scopes = set(scope.split())
    claims: dict[str, Any] = {"sub": user.username}
    if "profile" in scopes:
        claims["name"] = user.display_name or user.username
        claims["preferred_username"] = user.username
        if user.department:
            claims["department"] = user.department
        claims["clearance"] = user.clearance.label
        groups = user.attributes.get("groups")
        if isinstance(groups, list) and all(isinstance(g, str) for g in groups):
            claims["groups"] = groups
    return claims


class ZtgwOpenIDCode(OpenIDCode):  # type: ignore[misc]
    """ID tokens signed with the client's algorithm from ztgw's key ring (OIDC Core §3.1.3.7)."""

    def __init__(self, server: ZtgwAuthorizationServer) -> None:
        super().__init__(require_nonce=True)
        self.server = server

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return self.server.store.nonce_used(request.payload.client_id, nonce)

    def generate_user_info(self, user: EndUser, scope: str) -> dict[str, Any]:
        assert user.record is not None
        return user_claims(user.record, scope)

    def encode_id_token(self, token: dict[str, Any], request: OAuth2Request) -> str:
        client: OAuthClient = request.client
        user: EndUser = request.user
        alg = client.record.id_token_alg
        claims: dict[str, Any] = {"auth_time": user.auth_time}
        code: CodeObject | None = request.authorization_code
        if code is not None and code.get_nonce():
            claims["nonce"] = code.get_nonce()
        if user.acr:
            claims["acr"] = user.acr
        if user.amr:
            claims["amr"] = list(user.amr)
        if user.sid:
            claims["sid"] = user.sid
        claims["at_hash"] = half_hash(token["access_token"], alg)
        claims.update(self.generate_user_info(user, token.get("scope", "")))
        return self.server.token_issuer.issue_id_token(
            client_id=client.get_client_id(), alg=alg, claims=claims, ttl=ID_TOKEN_TTL)


class TokenView:
    """A token as the RFC 7009 / 7662 endpoints see it: a JWT access token or a refresh token."""

    def __init__(self, kind: str, client_id: str, active: bool, payload: dict[str, Any],
                 jti: str | None = None, exp: int = 0, family_id: str | None = None) -> None:
        self.kind, self.client_id, self.active, self.payload = kind, client_id, active, payload
        self.jti, self.exp, self.family_id = jti, exp, family_id

    def check_client(self, client: OAuthClient) -> bool:
        return self.client_id == client.get_client_id()

    def is_expired(self) -> bool:
        return not self.active

    def is_revoked(self) -> bool:
        return not self.active


def _lookup(server: ZtgwAuthorizationServer, token: str, hint: str | None) -> TokenView | None:
    order = ["refresh_token", "access_token"] if hint == "refresh_token" else \
        ["access_token", "refresh_token"]
    for kind in order:
        if kind == "access_token" and token.count(".") == 2:
            view = server.access_view(token)
            if view is not None:
                return view
        if kind == "refresh_token" and token.count(".") == 0:
            rec = server.store.get_refresh(token)
            if rec is not None:
                active = (not rec.rotated and not rec.family_revoked
                          and rec.expires_at > time.time())
                return TokenView("refresh_token", rec.client_id, active, {
                    "scope": rec.scope, "client_id": rec.client_id, "username": rec.username,
                    "sub": rec.username, "exp": rec.expires_at, "iat": rec.issued_at,
                    "token_type": "refresh_token",
                }, exp=rec.expires_at, family_id=rec.family_id)
    return None


class ZtgwRevocation(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009: access tokens go on the jti list, refresh tokens take their family with them."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | None:
        return _lookup(self.server, token_string, token_type_hint)

    def revoke_token(self, token: TokenView, request: OAuth2Request) -> None:
        server: ZtgwAuthorizationServer = self.server
        if token.kind == "access_token" and token.jti:
            server.revocations_revoke(token.jti, token.exp)
        elif token.family_id:
            server.store.revoke_family(token.family_id, "revoked_by_client")
            server.refresh_revocations()
        server.signal("token-revoked", client_id=token.client_id, token_type=token.kind)


class ZtgwIntrospection(IntrospectionEndpoint):  # type: ignore[misc]
    """RFC 7662.  A client may introspect its own tokens; a resource server registered with the
    ``token-introspector`` role may introspect any token.  Anything else is ``active: false``."""

    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | None:
        return _lookup(self.server, token_string, token_type_hint)

    def check_permission(self, token: TokenView, client: OAuthClient, request: OAuth2Request) -> bool:
        return token.check_client(client) or "token-introspector" in client.record.roles

    def introspect_token(self, token: TokenView) -> dict[str, Any]:
        return {"active": True, **token.payload}


class ZtgwAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, directory: Directory, hasher: SecretHasher, issuer: TokenIssuer,
                 on_token: Callable[[dict[str, Any]], None] | None = None,
                 store: OAuthStore | None = None, verifier: AccessTokenVerifier | None = None,
                 refresh_ttl: int = 8 * 3600,
                 on_signal: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        super().__init__(scopes_supported=None)
        self.directory, self.hasher, self.token_issuer = directory, hasher, issuer
        self.store = store if store is not None else OAuthStore(directory.engine)
        self.verifier = verifier
        self.refresh_ttl = refresh_ttl
        self._on_token = on_token
        self._on_signal = on_signal
        self._clients: dict[str, tuple[float, ClientRecord | None]] = {}
        self.register_token_generator("default", self._generate_token)
        self.register_grant(ClientCredentialsGrant)
        self.register_grant(ZtgwCodeGrant, [S256Challenge(required=True), ZtgwOpenIDCode(self)])
        self.register_grant(ZtgwRefreshGrant)
        self.register_endpoint(ZtgwRevocation)
        self.register_endpoint(ZtgwIntrospection)

    # --- hooks ---------------------------------------------------------------------------------
    def signal(self, name: str, **fields: Any) -> None:
        if self._on_signal is not None:
            self._on_signal(name, fields)

    def refresh_revocations(self) -> None:
        if self.verifier is not None and self.verifier.revocations is not None:
            self.verifier.revocations.refresh(force=True)

    def revocations_revoke(self, jti: str, exp: int) -> None:
        if self.verifier is not None and self.verifier.revocations is not None:
            self.verifier.revocations.revoke(jti, exp)
        else:
            self.store.revoke_jti(jti, exp)

    def access_view(self, token: str) -> TokenView | None:
        """Introspect one of our JWT access tokens (signature, type, issuer, expiry, revocation)."""
        if self.verifier is None:
            return None
        try:
            at = self.verifier.verify(token)
        except TokenInvalid as exc:
            if exc.reason in ("revoked", "expired"):
                # ours but dead: still identify the owner so revocation stays idempotent
                return self._dead_view(token)
            return None
        if self.store.is_jti_revoked(at.jti):  # introspection is exact, not 0.5 s behind
            return self._dead_view(token)
        c = at.claims
        payload = {"scope": " ".join(sorted(at.scope)), "client_id": at.client_id,
                   "sub": at.subject, "exp": at.expires_at, "iat": c.get("iat"),
                   "nbf": c.get("nbf"), "iss": c.get("iss"), "aud": c.get("aud"), "jti": at.jti,
                   "token_type": "Bearer"}
        if at.subject.startswith("user:"):
            payload["username"] = at.subject[5:]
        for k in ("acr", "auth_time"):
            if k in c:
                payload[k] = c[k]
        return TokenView("access_token", at.client_id, True, payload, jti=at.jti, exp=at.expires_at)

    def _dead_view(self, token: str) -> TokenView | None:
        from joserfc import jwt
        from joserfc.errors import JoseError

        assert self.verifier is not None
        try:
            claims = jwt.decode(token, self.verifier.keyset, algorithms=self.verifier.algorithms).claims
        except (JoseError, ValueError, TypeError, KeyError):
            return None
        if claims.get("iss") != self.verifier.issuer or not isinstance(claims.get("client_id"), str):
            return None
        return TokenView("access_token", claims["client_id"], False, {}, jti=str(claims.get("jti")),
                         exp=int(claims.get("exp", 0)))

    def _generate_token(self, grant_type: str, client: OAuthClient, user: EndUser | None = None,
                        scope: str | None = None, expires_in: int | None = None,
                        include_refresh_token: bool = True) -> dict[str, Any]:
        cid = client.get_client_id()
        scope = scope or ""
        if user is None:
            # RFC 6749 §3.3: never more than the client is registered for (the code flow is
            # narrowed the same way by authlib); nothing requested means the registered scope
            scope = client.get_allowed_scope(scope) or ""
            at, _jti, _exp = self.token_issuer.issue_access_token_with_id(
                subject=f"client:{cid}", client_id=cid, scope=scope)
            return {"token_type": "Bearer", "access_token": at,
                    "expires_in": self.token_issuer.ttl, "scope": scope}
        extra: dict[str, Any] = {"auth_time": user.auth_time}
        if user.acr:
            extra["acr"] = user.acr
        if user.sid:
            extra["sid"] = user.sid
        at, jti, exp = self.token_issuer.issue_access_token_with_id(
            subject=f"user:{user.username}", client_id=cid, scope=scope, extra=extra)
        assert user.family_id is not None
        self.store.record_access(jti, user.family_id, exp)
        token: dict[str, Any] = {"token_type": "Bearer", "access_token": at,
                                 "expires_in": self.token_issuer.ttl, "scope": scope}
        if include_refresh_token:
            rt = secrets.token_urlsafe(32)
            now = int(time.time())
            self.store.save_refresh(rt, RefreshRecord(
                token_hash=digest(rt), family_id=user.family_id, client_id=cid,
                username=user.username, scope=scope, auth_time=user.auth_time, acr=user.acr,
                amr=user.amr, sid=user.sid, issued_at=now, expires_at=now + self.refresh_ttl,
                rotated=False, family_revoked=False))
            token["refresh_token"] = rt
        return token

    def client_credentials_fast(self, form: dict[str, list[str]], authorization: str | None
                                ) -> tuple[str, dict[str, Any]] | None:
        """The client-credentials grant (RFC 6749 §4.4) for the one shape a well-behaved service
        account sends — ``grant_type`` and optional ``scope`` in the body, ``client_secret_basic``
        (§2.3.1) — without authlib's request machinery: the same client methods decide
        (``check_endpoint_auth_method``, ``check_client_secret`` in constant time,
        ``check_grant_type``, ``get_allowed_scope``).  Anything else, and every failure,
        returns None so that authlib answers with its exact error."""
        if form.get("grant_type") != ["client_credentials"] or not set(form) <= {"grant_type", "scope"}:
            return None
        client_id, secret = _basic_credentials(authorization)
        if not client_id or not secret:
            return None
        client = self.query_client(client_id)
        if (client is None or not client.check_endpoint_auth_method("client_secret_basic", "token")
                or not client.check_grant_type("client_credentials")
                or not client.check_client_secret(secret)):
            return None
        scope = (form.get("scope") or [""])[0]
        return client_id, self._generate_token("client_credentials", client, scope=scope,
                                               include_refresh_token=False)

    def query_client(self, client_id: str) -> OAuthClient | None:
        if not client_id or len(client_id) > 128:
            return None
        now = time.monotonic()
        hit = self._clients.get(client_id)
        if hit is not None and hit[0] > now:
            record = hit[1]
        else:
            record = self.directory.get_client(client_id)
            if len(self._clients) > 10_000:
                self._clients.clear()
            self._clients[client_id] = (now + CLIENT_CACHE_SECONDS, record)
        if record is None or not record.enabled:
            return None
        return OAuthClient(record, self.hasher)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        # JWT access tokens are self-contained; refresh tokens were stored by the generator
        if self._on_token is not None:
            self._on_token({
                "client_id": request.client.get_client_id() if request.client else None,
                "grant_type": request.payload.grant_type,
                "scope": token.get("scope", ""),
            })

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def create_json_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, Any]:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None
