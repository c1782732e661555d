"""OpenTelemetry set-up: one tracer provider per process, exporter chosen by configuration."""

from __future__ import annotations

import logging

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from services.config import Telemetry

log = logging.getLogger(__name__)
_provider: TracerProvider | None = None
_meter_provider = None


def setup_tracing(settings: Telemetry, service_name: str) -> TracerProvider | None:
    """Install the global tracer provider for this process (idempotent).

    ``exporter``: ``none`` (spans are created for context propagation but not
    exported), ``console`` (printed to stdout) or ``otlp`` (gRPC to
    ``otlp_endpoint``).
    """
    global _provider
    if _provider is not None:
        return _provider
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    kind = settings.exporter.lower()
    if kind == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif kind == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=True)))
    elif kind != "none":
        raise ValueError(f"unknown telemetry exporter {settings.exporter!r}: use none, console or otlp")
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def setup_metrics(settings: Telemetry, service_name: str):
    """Install the global meter provider (same exporter choice as traces); returns a meter."""
    global _meter_provider
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

    if _meter_provider is None:
        kind = settings.exporter.lower()
        readers = []
        if kind == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        elif kind == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=settings.otlp_endpoint, insecure=True)))
        if settings.prometheus_port:
            readers.append(_prometheus(settings, service_name))
        _meter_provider = MeterProvider(resource=Resource.create({"service.name": service_name}), metric_readers=readers)
        metrics.set_meter_provider(_meter_provider)
    return _meter_provider.get_meter("kefu")


# Where each process serves /metrics, from ``telemetry.prometheus_port``.
PROMETHEUS_OFFSETS = {"kefu-dialog": 0, "kefu-nlu": 1, "kefu-knowledge": 2, "kefu-generation": 3, "kefu-worker": 4}


def _prometheus(settings: Telemetry, service_name: str):  # noqa: ANN202 - PrometheusMetricReader
    """A reader for Prometheus, and its /metrics endpoint on this process's port."""
    import os

    import prometheus_client
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    port = settings.prometheus_port + PROMETHEUS_OFFSETS.get(service_name, 5)
    prometheus_client.start_http_server(port, addr=os.environ.get("KEFU_BIND_HOST") or os.environ.get("KEFU_HOST") or "127.0.0.1")
    log.info("metrics for Prometheus on port %d (/metrics)", port)
    return PrometheusMetricReader()


def shutdown_tracing() -> None:
    """Flush and stop exporting traces and metrics (call on process exit)."""
    if _provider is not None:
        _provider.shutdown()
    if _meter_provider is not None:
        _meter_provider.shutdown()


class _TraceIds(logging.Filter):
    """Adds ``trace_id`` (32 hex digits, "-" outside a trace) to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        record.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else "-"
        return True


def install_trace_ids() -> None:
    """Every handler of the root logger gets the trace id (use ``%(trace_id)s`` in formats)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _TraceIds) for f in handler.filters):
            handler.addFilter(_TraceIds())


def client_interceptors() -> list:
    """Interceptors for grpc.aio channels: propagate the trace context to the callee."""
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())


def server_interceptors() -> list:
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return [aio_server_interceptor()]
