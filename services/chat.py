"""``kefu chat``: talk to kefu's Dialog service from a terminal, reply streamed."""

from __future__ import annotations

import json
import sys
from typing import TextIO

import grpc
from google.protobuf.json_format import MessageToDict

from kefu.v1 import dialog_pb2, dialog_pb2_grpc

BANNER = (
    "kefu 客服 — type a message and press Enter (Chinese or English). "
    "Ctrl-D or /quit to leave, /new for a new session.\n"
    "输入消息后回车；Ctrl-D 或 /quit 退出，/new 开始新会话。"
)


def turn_json(result: dialog_pb2.TurnResult) -> dict:
    """The final turn result as printed by ``--json``."""
    return {
        "session_id": result.session_id,
        "turn_index": result.turn_index,
        "reply": result.reply_text,
        "language": result.language,
        "intent": {"name": result.intent.name, "confidence": round(result.intent.confidence, 4)},
        "citations": [MessageToDict(c, preserving_proto_field_name=True) for c in result.citations],
        "actions": [MessageToDict(a, preserving_proto_field_name=True) for a in result.actions],
        "handoff": dialog_pb2.HandoffState.Name(result.handoff),
        "degraded": result.degraded,
        "messages": [{"id": m.id, "author": m.author, "text": m.text} for m in result.messages],
        "state": {
            "flow": result.state.flow,
            "requested_slot": result.state.requested_slot,
            "slots": dict(result.state.slots),
            "customer_id": result.state.customer_id,
            "pending": {"operation": result.state.pending.operation, "args": dict(result.state.pending.args)},
        },
    }


class ChatClient:
    def __init__(self, target: str, *, timeout_s: float = 300.0, security=None, customer_id: str = "") -> None:  # noqa: ANN001 - cfg.security
        from services.security import client_metadata, sync_channel

        # TLS and the client key when cfg.security says so; the customer this chat is for.
        self._channel = sync_channel(target, security, key=security.client_key if security is not None else "")
        self._metadata = client_metadata(customer_id)
        self._stub = dialog_pb2_grpc.DialogStub(self._channel)
        self._timeout_s = timeout_s

    def send(self, text: str, session_id: str = "", *, out: TextIO | None = None, label: bool = False) -> dialog_pb2.TurnResult:
        """One turn; deltas are written to ``out`` as they arrive, with ``label``, each
        text under who wrote it: "kefu › ", or "agent › " for a human agent's reply while
        an agent holds the conversation."""
        result = None
        speaker = None
        for event in self._stub.Converse(
            dialog_pb2.TurnRequest(session_id=session_id, text=text, channel="cli"), timeout=self._timeout_s, metadata=self._metadata
        ):
            if event.HasField("chunk") and out is not None:
                if label and (author := "agent" if event.chunk.author.startswith("agent") else "kefu") != speaker:
                    out.write(("\n" if speaker else "") + f"{author} › ")
                    speaker = author
                if event.chunk.replace:
                    # What was shown is withdrawn: a reply cut by a model failure.
                    out.write("\n[reply corrected] ")
                out.write(event.chunk.delta)
                out.flush()
            elif event.HasField("result"):
                result = event.result
        if result is None:
            raise RuntimeError("the turn ended without a result")
        return result

    def close(self) -> None:
        self._channel.close()


def _describe(err: grpc.RpcError) -> str:
    code = err.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"kefu is not reachable ({err.details()}). Is `make up` running?"
    return f"{code.name}: {err.details()}"


def run_chat(target: str, *, message: str | None, session_id: str, as_json: bool, security=None, customer_id: str = "") -> int:  # noqa: ANN001
    client = ChatClient(target, security=security, customer_id=customer_id)
    try:
        if message is not None:
            try:
                result = client.send(message, session_id, out=None if as_json else sys.stdout)
            except grpc.RpcError as err:
                print(f"error: {_describe(err)}", file=sys.stderr)
                return 1
            if as_json:
                print(json.dumps(turn_json(result), ensure_ascii=False, indent=2))
            else:
                print()
                _print_notices(result)
                _print_footer(result)
            return 0
        print(BANNER)
        while True:
            try:
                text = input("\nyou › ")
            except (EOFError, KeyboardInterrupt):
                print()
                return 0
            if text.strip() in ("/quit", "/exit"):
                return 0
            if text.strip() == "/new":
                session_id = ""
                print("(new session)")
                continue
            if not text.strip():
                continue
            try:
                result = client.send(text, session_id, out=sys.stdout, label=True)
            except grpc.RpcError as err:
                print(f"\nerror: {_describe(err)}")
                continue
            except KeyboardInterrupt:
                print("\n(interrupted)")
                continue
            print()
            session_id = result.session_id
            _print_notices(result)
            _print_footer(result)
    finally:
        client.close()


def _print_notices(result: dialog_pb2.TurnResult) -> None:
    """Messages delivered with a turn kefu answered (a return's label, a refund paid)."""
    if result.handoff != dialog_pb2.HANDOFF_STATE_AGENT:
        for m in result.messages:
            print(f"{'agent' if m.author.startswith('agent') else 'kefu'} (update) › {m.text}")


def _print_footer(result: dialog_pb2.TurnResult) -> None:
    bits = [f"session {result.session_id}", f"intent {result.intent.name} ({result.intent.confidence:.2f})"]
    bits += [f"source {c.doc_id} “{c.title}”" for c in result.citations]
    bits += [f"ticket {a.ticket_id}" for a in result.actions if a.type == dialog_pb2.ACTION_TYPE_CREATE_TICKET]
    if result.handoff == dialog_pb2.HANDOFF_STATE_AGENT:
        bits.append("a human agent holds this conversation")
    if result.degraded:
        bits.append("degraded")
    print("   [" + " · ".join(bits) + "]")
