"""``kefu agent``: a human agent's desk in the terminal, over the AgentDesk gRPC service.

    kefu agent queue                                 conversations waiting for an agent
    kefu agent claim TICKET --as AGENT               take one: the context packet is printed
    kefu agent watch TICKET                          the customer's messages as they come (Ctrl-C stops)
    kefu agent reply TICKET -m TEXT --as AGENT       answer the customer
    kefu agent handback TICKET --note TEXT --as AGENT   kefu answers again; the ticket stays open
    kefu agent resolve TICKET --note TEXT --as AGENT    resolve the ticket; kefu answers again

``--as`` defaults to $KEFU_AGENT. Errors are one line (the gRPC status and its message)
and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from typing import Callable

import grpc
from google.protobuf.json_format import MessageToDict

from kefu.v1 import agent_pb2, agent_pb2_grpc
from services.config import load_config
from services.security import sync_channel

DESCRIPTION = (
    "When kefu hands a conversation over (the customer asked for a person, or sounded dissatisfied), it opens a "
    "ticket that carries a context packet: summary, intent and task slots, dissatisfaction per turn, order ids and "
    "the last turns, PII-masked. These commands work that queue as a human agent: claim a ticket to hold its "
    "conversation (the customer's messages then go to you, not to kefu), reply, and hand the conversation back to "
    "kefu or resolve the ticket. Every step is recorded on the ticket's timeline."
)


def add_agent_commands(sub) -> None:
    agent = sub.add_parser(
        "agent", help="the human agent's desk: queue, claim, watch, reply, hand back, resolve", description=DESCRIPTION,
    )
    agent_sub = agent.add_subparsers(dest="agent_command", required=True, metavar="{queue,claim,watch,reply,handback,resolve}")

    def command(name: str, help_text: str, func: Callable[[argparse.Namespace, agent_pb2_grpc.AgentDeskStub], int],
                *, ticket: bool = True, who: bool = True, as_json: bool = True) -> argparse.ArgumentParser:
        parser = agent_sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        if ticket:
            parser.add_argument("ticket", metavar="TICKET", help="ticket id, e.g. TK20261121-7F3A9C")
        if who:
            parser.add_argument(
                "--as", dest="agent", default=os.environ.get("KEFU_AGENT", ""),
                help="your agent id (default: $KEFU_AGENT)",
            )
        if as_json:
            parser.add_argument("--json", action="store_true", help="print the response as JSON")
        parser.add_argument("--target", help="Dialog address host:port (default from the configuration)")
        parser.set_defaults(func=lambda args: _run(args, func, needs_agent=who))
        return parser

    queue = command("queue", "list conversations waiting for an agent, most urgent first", _queue, ticket=False, who=False)
    queue.add_argument("--all", action="store_true", help="also those an agent already holds")
    queue.add_argument("--limit", type=int, default=0, help="at most this many (default: all)")
    command("claim", "take a ticket's conversation and print its context packet", _claim)
    watch = command("watch", "print the customer's messages in a ticket's conversation as they come; Ctrl-C stops", _watch,
                    who=False, as_json=False)
    watch.add_argument("--from", dest="after", type=int, help="also the turns after this turn number (0: all of them)")
    reply = command("reply", "send the customer a message in a conversation you hold", _reply)
    reply.add_argument("-m", "--message", required=True, help="the text the customer reads")
    reply.add_argument("--request-id", default="", help="idempotency key: a retry with the same id sends nothing twice")
    handback = command("handback", "give a conversation you hold back to kefu; the ticket stays open", _handback)
    handback.add_argument("--note", default="", help="what was done, for the ticket and whoever comes next")
    resolve = command("resolve", "resolve a ticket; its conversation goes back to kefu", _resolve)
    resolve.add_argument("--note", default="", help="how it was resolved")


def _run(args: argparse.Namespace, func: Callable[..., int], *, needs_agent: bool) -> int:
    if needs_agent and not args.agent.strip():
        print("kefu agent: say who you are with --as AGENT (or set KEFU_AGENT)", file=sys.stderr)
        return 1
    cfg = load_config(args.config)
    target = args.target or cfg.target("dialog")
    with sync_channel(target, cfg.security, key=cfg.security.client_key) as channel:
        try:
            return func(args, agent_pb2_grpc.AgentDeskStub(channel))
        except grpc.RpcError as err:
            print(f"kefu agent: {describe(err, target)}", file=sys.stderr)
            return 1


def describe(err: grpc.RpcError, target: str) -> str:
    """One line for a failed call: the status and kefu's message."""
    code, details = err.code(), err.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE and ("connect" in details.lower() or "connection" in details.lower()):
        return f"kefu is not reachable at {target} ({details}); is `make up` running?"
    return f"{code.name}: {details}"


# -- the commands -------------------------------------------------------------------------


def _queue(args: argparse.Namespace, stub: agent_pb2_grpc.AgentDeskStub) -> int:
    response = stub.ListQueue(agent_pb2.ListQueueRequest(include_claimed=args.all, limit=args.limit), timeout=30)
    if args.json:
        return _print_json(response)
    if not response.tickets:
        print("no conversations waiting for an agent")
        return 0
    for ticket in response.tickets:
        print(_headline(ticket))
        for line in ticket.context.summary.splitlines():
            print(f"    {line}")
    return 0


def _claim(args: argparse.Namespace, stub: agent_pb2_grpc.AgentDeskStub) -> int:
    ticket = stub.Claim(agent_pb2.ClaimRequest(agent_id=args.agent, ticket_id=args.ticket), timeout=30).ticket
    if args.json:
        return _print_json(ticket)
    c = ticket.context
    print(_headline(ticket))
    print(c.summary)
    if c.slots:
        print("slots: " + ", ".join(f"{k}={v}" for k, v in sorted(c.slots.items())))
    if c.store_customer_id:
        print(f"store customer: {c.store_customer_id}")
    if c.last_turns:
        print("last turns:")
        for turn in c.last_turns:
            print(f"  [{turn.index}] customer: {turn.customer_text}  (dissatisfaction {turn.dissatisfaction:.2f})")
            if turn.reply_text:
                print(f"      kefu: {turn.reply_text}")
    print(f"you hold this conversation now: `kefu agent reply {ticket.ticket_id} -m ... --as {args.agent}`")
    return 0


def _watch(args: argparse.Namespace, stub: agent_pb2_grpc.AgentDeskStub) -> int:
    request = agent_pb2.WatchSessionRequest(ticket_id=args.ticket)
    if args.after is not None:
        request.after_turn = args.after
    stream = stub.WatchSession(request)
    print(f"watching ticket {args.ticket}; Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        for message in stream:
            when = message.time.ToDatetime(tzinfo=timezone.utc).astimezone().strftime("%H:%M:%S")
            print(f"[{when} turn {message.turn_index}] customer: {message.text}", flush=True)
    except KeyboardInterrupt:
        stream.cancel()
        print(file=sys.stderr)
    return 0


def _reply(args: argparse.Namespace, stub: agent_pb2_grpc.AgentDeskStub) -> int:
    response = stub.Reply(
        agent_pb2.AgentReplyRequest(agent_id=args.agent, ticket_id=args.ticket, text=args.message, request_id=args.request_id),
        timeout=30,
    )
    if args.json:
        return _print_json(response)
    print(f"sent (message {response.message_id}); the customer gets it in their conversation")
    return 0


def _handback(args: argparse.Namespace, stub: agent_pb2_grpc.AgentDeskStub) -> int:
    response = stub.HandBack(agent_pb2.HandBackRequest(agent_id=args.agent, ticket_id=args.ticket, note=args.note), timeout=30)
    if args.json:
        return _print_json(response)
    print(f"handed back: kefu answers conversation {response.session_id} again; ticket {args.ticket} stays open")
    return 0


def _resolve(args: argparse.Namespace, stub: agent_pb2_grpc.AgentDeskStub) -> int:
    response = stub.Resolve(agent_pb2.ResolveRequest(agent_id=args.agent, ticket_id=args.ticket, note=args.note), timeout=30)
    if args.json:
        return _print_json(response)
    print(f"ticket {args.ticket} resolved" + (f"; kefu answers conversation {response.session_id} again" if response.session_id else ""))
    return 0


# -- output -------------------------------------------------------------------------------


def _headline(ticket: agent_pb2.QueuedTicket) -> str:
    waited = ""
    if ticket.HasField("created_at"):
        minutes = int((datetime.now(timezone.utc) - ticket.created_at.ToDatetime(tzinfo=timezone.utc)).total_seconds() // 60)
        waited = f"  waiting {minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"  waiting {minutes}m"
    held = f"  held by {ticket.held_by}" if ticket.held_by else ""
    return f"{ticket.ticket_id}  {ticket.status:<9} {ticket.priority:<6} {ticket.language:<2}  {ticket.category}{waited}{held}"


def _print_json(message) -> int:
    data = MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    print(json.dumps(data, ensure_ascii=False, indent=2))
    return 0
