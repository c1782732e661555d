"""A tiny in-process OTLP/gRPC trace receiver: the services export their spans here."""

from __future__ import annotations

import threading
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str


@dataclass(frozen=True)
class ReceivedPoint:
    service: str
    metric: str
    attributes: tuple[tuple[str, str], ...]
    value: float


class _MetricsReceiver(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, sink: "SpanSink") -> None:
        self._sink = sink

    def Export(self, request, context):  # noqa: N802 - gRPC method name
        got = []
        for rm in request.resource_metrics:
            service = next((a.value.string_value for a in rm.resource.attributes if a.key == "service.name"), "")
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    data = m.sum if m.HasField("sum") else m.gauge if m.HasField("gauge") else m.histogram if m.HasField("histogram") else None
                    for p in data.data_points if data is not None else []:
                        attrs = tuple(sorted((a.key, a.value.string_value) for a in p.attributes))
                        if m.HasField("histogram"):
                            value = float(p.count)  # histograms: how many were recorded
                        else:
                            value = p.as_double if p.HasField("as_double") else float(p.as_int)
                        got.append(ReceivedPoint(service, m.name, attrs, value))
        with self._sink._lock:
            self._sink.points += got
        return metrics_service_pb2.ExportMetricsServiceResponse()


class SpanSink(trace_service_pb2_grpc.TraceServiceServicer):
    """Receives OTLP traces and metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.spans: list[ReceivedSpan] = []
        self.points: list[ReceivedPoint] = []
        self._server: grpc.Server | None = None
        self.endpoint = ""

    def Export(self, request, context):  # noqa: N802 - gRPC method name
        got = []
        for rs in request.resource_spans:
            service = next((a.value.string_value for a in rs.resource.attributes if a.key == "service.name"), "")
            for ss in rs.scope_spans:
                for s in ss.spans:
                    got.append(ReceivedSpan(service, s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex()))
        with self._lock:
            self.spans += got
        return trace_service_pb2.ExportTraceServiceResponse()

    def start(self, host: str = "127.0.0.1") -> "SpanSink":
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsReceiver(self), self._server)
        port = self._server.add_insecure_port(f"{host}:0")
        self._server.start()
        self.endpoint = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=1)

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def latest(self, service: str, metric: str, **attributes: str) -> float | None:
        """The last value received for a metric (cumulative sums: the running total)."""
        want = tuple(sorted(attributes.items()))
        with self._lock:
            values = [p.value for p in self.points if p.service == service and p.metric == metric and p.attributes == want]
        return values[-1] if values else None

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.snapshot() if s.trace_id == trace_id]

    def wait_for(self, predicate, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return True
            time.sleep(0.2)
        return predicate(self.snapshot())
