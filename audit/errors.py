"""Errors of the audit package."""


class AuditError(Exception):
    """Base of every audit-package error."""


class AuditUnavailable(AuditError):
    """The audit trail cannot accept an event now (queue full, writer stopped, disk error).

    Callers serving 重要/核心 data must refuse the request ("no audit, no access").
    """


class QueryError(AuditError):
    """An audit query is malformed (bad time range, unknown field, …)."""


class InvalidEvent(AuditUnavailable):
    """The event cannot be audited as given (no ``event`` object, no ``@timestamp``, not JSON).

    A subclass of :class:`AuditUnavailable`, so the data plane refuses the request (503).
    """


class SinkError(AuditError):
    """A sink did not take a batch; the shipper keeps it in the spool and sends it again."""
