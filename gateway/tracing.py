"""OpenTelemetry traces of the data plane, exported over OTLP/HTTP when configured.

Off by default (``otel_endpoint`` unset): the data plane then never touches the SDK.  With
``ZTGW_OTEL_ENDPOINT=http://collector:4318/v1/traces`` every data-plane request is one SERVER
span (route template, dataset, classification, application, decision, rule, records, status —
the same facts as its audit event, minus anything personal: no path with an ID number in it,
no user name), the upstream call carries a W3C ``traceparent`` naming it, and spans leave in
batches from a background thread (bounded queue: under pressure spans are dropped, requests
never wait for the collector).  The provider is the gateway's own, not the process-global
one, so libraries cannot add spans or exporters behind its back.
"""

from __future__ import annotations

import os
from typing import Any

from .settings import Settings


class Tracing:
    def __init__(self, settings: Settings, version: str) -> None:
        self.tracer: Any = None
        self._provider: Any = None
        if not settings.otel_endpoint:
            return
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({
            "service.name": settings.otel_service_name, "service.version": version,
            "service.instance.id": f"{os.uname().nodename}:{settings.port}",
        })
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=settings.otel_endpoint, timeout=5),
            max_queue_size=8192, max_export_batch_size=512,
            schedule_delay_millis=int(settings.otel_export_delay * 1000)))
        self.tracer = self._provider.get_tracer("ztgw.dataplane", version)

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
