"""Triton's OTLP/JSON spans relayed to kefu's OTLP/gRPC trace backend (services/trace_relay.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from services.trace_relay import TraceRelay, export_request

TRACE, SPAN, PARENT = "0af7651916cd43dd8448eb211c80319c", "6015ae31f9e4aa4f", "b7ad6b7169203331"


def _export(name: str) -> bytes:
    # As tritonserver 2.x writes it (opentelemetry-cpp's OTLP/HTTP JSON exporter).
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "triton"}}]},
        "scopeSpans": [{"scope": {"name": "triton"}, "spans": [{
            "traceId": TRACE, "spanId": SPAN, "parentSpanId": PARENT, "name": name, "kind": 2,
            "startTimeUnixNano": "1765100000000000000", "endTimeUnixNano": "1765100000100000000",
            "attributes": [{"key": "triton.model_name", "value": {"stringValue": "embedder"}}],
        }]}],
    }]}).encode()


def _post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_hex_ids_survive_the_conversion() -> None:
    span = export_request(_export("InferRequest")).resource_spans[0].scope_spans[0].spans[0]
    assert (span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), span.name) == (TRACE, SPAN, PARENT, "InferRequest")
    with pytest.raises(ValueError, match="OTLP/JSON"):
        export_request(b"{not json")


def test_a_triton_export_reaches_the_backend_and_garbage_is_refused(span_sink) -> None:
    relay = TraceRelay(span_sink.endpoint).start()
    try:
        name = "InferRequest-relay-test"
        assert _post(relay.url, _export(name)) == 200
        assert span_sink.wait_for(lambda spans: any(s.name == name for s in spans), timeout=10)
        got = next(s for s in span_sink.snapshot() if s.name == name)
        assert (got.service, got.trace_id, got.span_id, got.parent_span_id) == ("triton", TRACE, SPAN, PARENT)
        before = len(span_sink.snapshot())
        assert _post(relay.url, b'{"resourceSpans": "nope"}') == 400
        assert len(span_sink.snapshot()) == before
    finally:
        relay.stop()

    # A backend that is away: the relay says so (503), it does not hang or crash.
    away = TraceRelay("127.0.0.1:1", timeout_s=1).start()
    try:
        assert _post(away.url, _export("lost")) == 503
    finally:
        away.stop()
