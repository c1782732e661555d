"""SIGTERM while a reply is streaming: the stream still finishes, then the process exits."""

from __future__ import annotations

import signal
import grpc

from kefu.v1 import dialog_pb2, dialog_pb2_grpc


def test_dialog_finishes_in_flight_stream_on_sigterm(lone_service):
    # A question no other test asks: its reply is generated and streamed, not the cache's.
    stack, own = lone_service("dialog")
    proc = stack.services["dialog"]
    events = []
    with grpc.insecure_channel(own.target("dialog")) as ch:
        stream = dialog_pb2_grpc.DialogStub(ch).Converse(dialog_pb2.TurnRequest(text="How many days do I have to send back something I don't like?"), timeout=240)
        for event in stream:
            events.append(event)
            if len(events) == 1:
                proc.send_signal(signal.SIGTERM)
    chunks = [e.chunk.delta for e in events if e.HasField("chunk")]
    result = events[-1].result
    assert events[-1].HasField("result"), "the stream was cut before its TurnResult"
    assert len(chunks) >= 2
    assert "".join(chunks) == result.reply_text
    assert [c.doc_id for c in result.citations] == ["returns-7day-en"]
    # After the in-flight turn the server exits by itself, cleanly.
    assert proc.wait_exit(timeout=30) == 0

