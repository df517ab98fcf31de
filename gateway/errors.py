"""Gateway errors and the one place they become HTTP JSON error bodies.

Body: ``{"error": "<code>", "message": "<human text>", "request_id": "<id>"}`` (INTERFACES.md).
"""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    """An error with a stable code and an HTTP status, safe to show to the caller."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.headers = headers or {}


class BadRequest(GatewayError):
    status, code = 400, "bad_request"


class Unauthenticated(GatewayError):
    status, code = 401, "unauthenticated"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": 'Bearer realm="ztgw"'})


class Forbidden(GatewayError):
    status, code = 403, "access_denied"


class NotFound(GatewayError):
    status, code = 404, "not_found"


class MethodNotAllowed(GatewayError):
    status, code = 405, "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status, code = 413, "payload_too_large"


class RequestTimeout(GatewayError):
    status, code = 408, "request_timeout"


class UpstreamError(GatewayError):
    status, code = 502, "upstream_error"


class UpstreamTimeout(UpstreamError):
    status, code = 504, "upstream_timeout"


class ServiceUnavailable(GatewayError):
    status, code = 503, "service_unavailable"


class TooManyRequests(GatewayError):
    status, code = 429, "rate_limited"


def error_body(code: str, message: str, request_id: str) -> bytes:
    return orjson.dumps({"error": code, "message": message, "request_id": request_id})
