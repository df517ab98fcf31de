"""SM2 certificate login — what a USB key (UKey) does.

1. ``GET /login/certificate`` shows a fresh challenge ``ztgw-login|<issuer>|<nonce>``: bound to
   this provider (a signature made for another site does not replay here), single-use, valid
   for ``CHALLENGE_SECONDS``, and carried with a signed ticket so no state is kept before use.
2. The browser's signing component (or ``ztgw crypto sm2 sign`` by hand) signs the challenge
   text with the user's SM2 key (GB/T 32918.2, default ID 1234567812345678, DER) and posts the
   certificate (PEM) and the signature (base64) — a plain form, no JavaScript needed.
3. The certificate must chain to a configured CA (``ZTGW_CERT_LOGIN_CA``, PEM bundle; RFC 5280
   checks in :func:`ztgw.crypto.x509.verify_chain`: validity, CA constraints, digitalSignature,
   clientAuth), the signature must verify with its key, and the challenge must be unused.
4. The account is the one whose ``cert_subject`` attribute equals the certificate's subject
   DN (RFC 4514 string, e.g. ``C=CN,O=市公安局,CN=张伟``), set by an administrator:
   ``ztgw users add NAME --no-password --attr cert_subject=...``.

Success gives ``acr`` ``urn:ztgw:acr:cert`` and ``amr`` ``["hwk"]`` (RFC 8176: proof of
possession of a hardware-secured key).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ztgw.crypto import x509
from ztgw.crypto.errors import CryptoError, InvalidCertificate, InvalidSignature, MalformedInput

from .authn import ACR_CERT
from .store import digest, now

if TYPE_CHECKING:
    from .web import IdentityWeb

CHALLENGE_SECONDS = 300
MAX_CERT_BYTES = 8192
AMR_CERT = ("hwk",)
MSG_FAILED = "证书登录失败：证书无效、签名不正确或该证书未绑定账号。"


def load_anchors(path: Path) -> list[x509.Certificate]:
    anchors = x509.load_certificates(path.read_bytes())
    if not anchors:
        raise ValueError(f"{path}: no CA certificate found")
    return anchors


class CertificateLogin:
    def __init__(self, web: IdentityWeb, anchors: list[x509.Certificate]) -> None:
        self.web, self.anchors = web, anchors

    def challenge(self) -> tuple[str, str]:
        text = f"ztgw-login|{self.web.issuer}|{secrets.token_urlsafe(24)}"
        return text, self.web.csrf.sign("cert-challenge", text, CHALLENGE_SECONDS)

    def page(self, request: Request, authz: str, error: str | None = None,
             status: int = 200) -> Response:
        text, ticket = self.challenge()
        return self.web.page("cert_login.html", request, status=status, error=error, authz=authz,
                             challenge=text, ticket=ticket)

    def user_for(self, cert: x509.Certificate) -> str | None:
        matches = [u.username for u in self.web.directory.list_users()
                   if u.enabled and u.attributes.get("cert_subject") == cert.subject]
        return matches[0] if len(matches) == 1 else None  # ambiguous bindings fail closed

    def verify(self, form: dict[str, list[str]], source_ip: str | None) -> tuple[str | None, str]:
        """(username or None, reason) for a posted certificate login."""
        def one(name: str) -> str:
            v = form.get(name) or [""]
            return v[0]

        text, ticket = one("challenge"), one("ticket")
        if not self.web.csrf.verify_signed("cert-challenge", text, ticket) \
                or not text.startswith(f"ztgw-login|{self.web.issuer}|"):
            return None, "bad_challenge"
        pem = one("certificate").strip()
        if not pem or len(pem) > MAX_CERT_BYTES:
            return None, "bad_certificate"
        try:
            signature = base64.b64decode(one("signature").strip(), validate=True)
            cert = x509.load_certificate(pem.encode("ascii", "strict"))
            x509.verify_chain(cert, self.anchors, required_key_usage=("digital_signature",),
                              required_eku="client_auth")
            cert.public_key().verify(signature, text.encode("utf-8"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return None, "malformed"
        except InvalidCertificate:
            return None, "untrusted_certificate"
        except (InvalidSignature, MalformedInput):
            return None, "bad_signature"
        except CryptoError:
            return None, "bad_certificate"
        # single use: the challenge is consumed only after the signature checked out
        if not self.web.store.use_challenge(digest(text), now() + CHALLENGE_SECONDS):
            return None, "challenge_replayed"
        username = self.user_for(cert)
        if username is None:
            return None, "unbound_certificate"
        return username, "ok"

    def router(self) -> APIRouter:
        r = APIRouter(include_in_schema=False)
        web = self.web

        @r.get("/login/certificate")
        async def cert_page(request: Request) -> Response:
            return self.page(request, urlencode(parse_qsl(request.query_params.get("authz", ""))))

        @r.post("/login/certificate")
        async def cert_post(request: Request) -> Response:
            from .web import read_form, single

            form = await read_form(request)
            if form is None:
                return web.message(request, "证书登录失败", "请求格式不正确。", code="invalid_request")
            authz = urlencode(parse_qsl(single(form, "authz")))
            if not web.csrf_ok(request, form):
                return self.page(request, authz, error="页面已过期，请重试。", status=400)
            ip = request.client.host if request.client else None
            username, reason = self.verify(form, ip)
            if username is None:
                web.emit("login-failed", {"username": "(certificate)", "source_ip": ip,
                                          "reason": f"certificate:{reason}"})
                return self.page(request, authz, error=MSG_FAILED, status=401)
            return web.signed_in(request, username, ACR_CERT, AMR_CERT, authz)

        return r


def extension_links(cert: CertificateLogin | None) -> dict[str, Any]:
    return {"certificate": cert is not None}
