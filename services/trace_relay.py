"""Triton's spans into kefu's trace backend: OTLP over HTTP with JSON in, OTLP/gRPC out.

Triton (``--trace-config mode=opentelemetry``) exports its spans as OTLP/HTTP **JSON**;
Phoenix takes OTLP protobuf only (415 for JSON), and kefu's own processes export OTLP/gRPC
to ``telemetry.otlp_endpoint``. ``TraceRelay`` listens on loopback for Triton's JSON, turns
each export into the protobuf request (OTLP JSON writes trace and span ids in hex, protobuf's
JSON mapping wants base64) and forwards it to the same endpoint kefu exports to. ``kefu up
--traces`` runs one; in a cluster, point ``telemetry.triton_traces_url`` at the collector's
OTLP/HTTP receiver instead (an OpenTelemetry Collector accepts JSON).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

log = logging.getLogger(__name__)

_ID_KEYS = ("traceId", "spanId", "parentSpanId")
MAX_BODY = 8 << 20


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON's hex ids, as protobuf's JSON mapping of ``bytes`` wants them (base64)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                out[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii") if value else ""
            else:
                out[key] = _hex_ids_to_base64(value)
        return out
    if isinstance(node, list):
        return [_hex_ids_to_base64(v) for v in node]
    return node


def export_request(body: bytes) -> trace_service_pb2.ExportTraceServiceRequest:
    """An OTLP/HTTP JSON export as the protobuf request; ValueError when it is not one."""
    try:
        doc = json.loads(body)
        return json_format.ParseDict(_hex_ids_to_base64(doc), trace_service_pb2.ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (ValueError, TypeError, json_format.ParseError) as exc:
        raise ValueError(f"not an OTLP/JSON trace export: {exc}") from exc


class TraceRelay:
    """``url`` (``http://host:port/v1/traces``) takes OTLP/JSON and forwards to ``target`` (OTLP/gRPC)."""

    def __init__(self, target: str, *, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 5.0) -> None:
        self._target = target.removeprefix("http://")
        self._host, self._port, self._timeout_s = host, port, timeout_s
        self._server: ThreadingHTTPServer | None = None
        self._channel: grpc.Channel | None = None
        self.url = ""

    def start(self) -> "TraceRelay":
        self._channel = grpc.insecure_channel(self._target)
        stub = trace_service_pb2_grpc.TraceServiceStub(self._channel)
        timeout_s = self._timeout_s

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length") or 0)
                if length <= 0 or length > MAX_BODY:
                    self.send_error(413 if length > MAX_BODY else 400)
                    return
                try:
                    stub.Export(export_request(self.rfile.read(length)), timeout=timeout_s)
                except ValueError as exc:
                    self.send_error(400, str(exc)[:200])
                    return
                except grpc.RpcError as exc:
                    log.warning("trace relay: the trace backend refused or is away: %s", exc.code())
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:  # quiet: Triton exports on every request
                pass

        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="trace-relay", daemon=True).start()
        self.url = f"http://{self._host}:{self._server.server_address[1]}/v1/traces"
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._channel is not None:
            self._channel.close()
