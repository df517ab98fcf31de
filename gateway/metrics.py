"""Prometheus metrics (ECOSYSTEM.md §5): bounded labels only — never user, path or token."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self, version: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ztgw_http_requests", "HTTP requests served", ["route", "method", "status_class"],
            registry=r,
        )
        self.duration = Histogram(
            "ztgw_http_request_duration_seconds", "Time to serve a request", ["route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.decisions = Counter(
            "ztgw_policy_decisions", "Policy decisions", ["effect", "ruleset"], registry=r
        )
        self.upstream = Counter(
            "ztgw_upstream_requests", "Requests sent upstream", ["api", "status_class"], registry=r
        )
        self.upstream_duration = Histogram(
            "ztgw_upstream_request_duration_seconds", "Upstream latency", ["api"],
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.masked_fields = Counter(
            "ztgw_masked_fields", "Fields masked in responses", ["classification"], registry=r
        )
        self.authn_failures = Counter(
            "ztgw_authn_failures", "Authentication failures", ["reason"], registry=r
        )
        self.tokens_issued = Counter(
            "ztgw_oidc_tokens_issued", "Tokens issued", ["grant_type"], registry=r
        )
        self.audit_events = Counter(
            "ztgw_audit_events", "Audit events emitted", ["dataset"], registry=r
        )
        self.grant_approval = Histogram(  # issue 6: request → decision, by outcome
            "ztgw_grant_approval_seconds", "Time from an access request to its decision",
            ["outcome"], buckets=(60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400),
            registry=r,
        )
        self.audit_queue = Gauge("ztgw_audit_queue_depth", "Audit events waiting", registry=r)
        self.build = Info("ztgw_build", "Build information", registry=r)
        self.build.info({"version": version})


def status_class(status: int) -> str:
    return f"{status // 100}xx"
