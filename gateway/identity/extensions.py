"""Optional login factors, attached from settings: SM2 certificate login and federation."""

from __future__ import annotations

from typing import Any

from .certlogin import CertificateLogin, load_anchors
from .federation import Federation, UpstreamConfig
from .web import IdentityWeb


def attach_login_extensions(web: IdentityWeb, settings: Any, pepper: bytes) -> None:
    """``settings``: the gateway's :class:`~ztgw.gateway.settings.Settings`."""
    if settings.cert_login_ca is not None:
        web.cert_login = CertificateLogin(web, load_anchors(settings.cert_login_ca))
    if settings.federation_issuer:
        if not settings.federation_client_id or settings.federation_client_secret is None:
            raise ValueError("federation needs ZTGW_FEDERATION_CLIENT_ID and _CLIENT_SECRET")
        if not settings.federation_name.isidentifier():
            raise ValueError("ZTGW_FEDERATION_NAME must be a short identifier")
        web.federations.append(Federation(web, UpstreamConfig(
            name=settings.federation_name, title=settings.federation_title,
            issuer=settings.federation_issuer.rstrip("/"),
            client_id=settings.federation_client_id,
            client_secret=settings.federation_client_secret.get_secret_value(),
            scope=settings.federation_scope,
        ), pepper))
