"""The OAuth 2.0 / OIDC authorization server on authlib, with a thin Starlette adapter.

Authlib has no Starlette *server* integration; this module is one of the same shape as its
Flask adapter (``integrations/flask_oauth2``): translate request and response, no protocol
logic.  Grants are authlib's; ztgw supplies the client model, the token generator (JWT access
tokens, RFC 9068) and the hooks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator

from .client_secrets import SecretHasher
from .directory import ClientRecord, Directory
from .tokens import TokenIssuer

# RFC 9700 §2.4 / §2.1.2: no password grant, no implicit grant.  More grants join with issue 4.
GRANT_TYPES_SUPPORTED = ("client_credentials",)
TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post")


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


class OAuthClient(ClientMixin):  # type: ignore[misc]
    def __init__(self, record: ClientRecord, hasher: SecretHasher) -> None:
        self.record = record
        self._hasher = hasher

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


class ZtgwAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, directory: Directory, hasher: SecretHasher, issuer: TokenIssuer,
                 on_token: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__(scopes_supported=None)
        self.directory, self.hasher, self.token_issuer = directory, hasher, issuer
        self._on_token = on_token
        self.register_token_generator(
            "default",
            BearerTokenGenerator(self._access_token, None, lambda c, g: issuer.ttl),
        )
        self.register_grant(ClientCredentialsGrant)

    def _access_token(self, client: OAuthClient, grant_type: str, user: Any, scope: str) -> str:
        subject = f"client:{client.get_client_id()}" if user is None else f"user:{user}"
        return self.token_issuer.issue_access_token(
            subject=subject, client_id=client.get_client_id(), scope=scope or ""
        )

    def query_client(self, client_id: str) -> OAuthClient | None:
        record = self.directory.get_client(client_id) if client_id else None
        if record is None or not record.enabled:
            return None
        return OAuthClient(record, self.hasher)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        # JWT access tokens are self-contained; issuance is recorded in the audit trail
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
