"""Triton goes away in the middle of a conversation: turns still succeed, from the
FAQ verbatim and flagged degraded, and kefu recovers when Triton is back."""

from __future__ import annotations

import copy
import sys
import time

import grpc

from kefu.v1 import dialog_pb2, dialog_pb2_grpc
from services.serving.triton import TritonServer
from services.stack import KefuStack
from tests.conftest import converse
from tests.triton_fixtures import free_ports


def test_conversation_survives_triton_going_down_and_coming_back(cfg, tmp_path):
    own = copy.deepcopy(cfg)
    own.home = str(tmp_path / "home")
    (own.ports.triton_grpc, own.ports.triton_http, own.ports.triton_metrics, own.ports.generation, own.ports.dialog) = free_ports(5)
    own.generation.breaker_failures = 1
    own.generation.breaker_reset_s = 1.0
    triton = TritonServer(own, log_path=tmp_path / "triton.log")
    triton.start()
    stack = KefuStack(own, with_triton=False, progress=lambda line: None)
    try:
        triton.wait_ready(timeout=240)
        for name in ("generation", "dialog"):
            stack.start_service(name)
        for name in ("generation", "dialog"):
            stack.wait_service(name)
        with grpc.insecure_channel(own.target("dialog")) as ch:
            dialog = dialog_pb2_grpc.DialogStub(ch)
            _, first = converse(dialog, "What is your return policy?")
            assert not first.degraded

            # The model dies in the middle of a reply: what was streamed is withdrawn and
            # the passage stands in its place; half a reply never stands.
            request = dialog_pb2.TurnRequest(text="Are your products authentic?", session_id=first.session_id, channel="test")
            shown, replacements, cut = [], [], None
            for event in dialog.Converse(request, timeout=240):
                if event.HasField("chunk"):
                    if not shown and not event.chunk.replace:
                        triton.stop(timeout=0.5)  # SIGINT, then its process group killed: a crash mid-stream
                    (replacements if event.chunk.replace else shown).append(event.chunk.delta)
                else:
                    cut = event.result
            assert shown, "the reply should have started streaming before Triton went away"
            assert cut is not None and cut.degraded
            assert replacements == [cut.reply_text]
            assert cut.citations[0].doc_id == "product-authenticity-en"
            assert cut.reply_text.startswith(cut.citations[0].snippet[:40])
            assert cut.actions[0].detail["verbatim"] == "cut"

            triton.stop()
            chunks, second = converse(dialog, "How long does shipping take?", session_id=first.session_id)
            assert second.degraded
            assert second.citations and second.citations[0].doc_id.startswith("shipping")
            assert "".join(chunks) == second.reply_text
            assert second.reply_text.startswith(second.citations[0].snippet[:40])
            _, third = converse(dialog, "Can I get an invoice?", session_id=first.session_id)
            assert third.degraded  # the breaker is open now: no waiting on a dead server
            assert third.turn_index == 4

            triton.start()
            triton.wait_ready(timeout=240)
            recovered = None
            turns = 0
            while recovered is None and turns < 10:  # the breaker lets a probe through after reset_s
                turns += 1
                _, turn = converse(dialog, "Do you ship abroad?", session_id=first.session_id)
                if not turn.degraded:
                    recovered = turn
                else:
                    time.sleep(1)
            print(f"[degradation] recovered after {turns} turn(s)", file=sys.stderr)
            assert recovered is not None, "kefu did not recover after Triton came back"
    finally:
        stack.stop()
        triton.stop()
