"""The context packet a ticket carries at handoff (workflows.tickets.types.TicketContext).

Built by Dialog when it opens the ticket, from what the session already holds: the turns
(stored PII-masked), NLU's dissatisfaction per turn, the task flow's state, the order ids
seen. The agent reads it on claiming, so the customer is not asked again. Slot values
pass through PII masking once more, and an address never leaves as text: the packet is
shown to people and written to the ticket table.
"""

from __future__ import annotations

import json
import re
from typing import Iterable

from services.dialog.flows.state import FlowState
from services.dialog.sessions import SessionRecord
from services.nlu.pii import ORDER_ID, mask_pii
from workflows.tickets.types import ContextTurn, TicketContext

# Order ids of the imported τ-bench store ("#W6067464"); the demo store's are ORDER_ID.
_TAU_ORDER_ID = re.compile(r"#W\d{7}(?!\d)")

REASONS = {"asked": "the customer asked for a person", "dissatisfied": "the customer sounded dissatisfied for several turns"}


def order_ids_in(texts: Iterable[str]) -> list[str]:
    """Order ids in ``texts``, first seen first, without repeats."""
    seen: dict[str, None] = {}
    for text in texts:
        for match in (*ORDER_ID.finditer(text), *_TAU_ORDER_ID.finditer(text)):
            seen.setdefault(match.group(0).upper(), None)
    return list(seen)


def context_packet(
    session: SessionRecord,
    *,
    text: str,
    dissatisfaction: float,
    intent: str,
    intent_confidence: float,
    state: FlowState,
    reason: str,
    order_ids: Iterable[str] = (),
    at: str = "",
    keep_turns: int = 8,
) -> TicketContext:
    """The packet for a handoff in ``session`` whose turn said ``text`` (PII-masked)."""
    turns = [
        ContextTurn(index=t.index, customer_text=t.customer_text, reply_text=t.reply_text,
                    dissatisfaction=round(t.dissatisfaction, 4), at=t.created_at)
        for t in session.turns
    ]
    turns.append(ContextTurn(index=len(session.turns) + 1, customer_text=text, dissatisfaction=round(dissatisfaction, 4), at=at))
    pending_order = str((state.pending.get("args") or {}).get("order_id", "")) if state.pending else ""
    ids = order_ids_in([*order_ids, state.order_id, pending_order, *(t.customer_text for t in turns), *(t.reply_text for t in turns)])
    context = TicketContext(
        reason=reason,
        intent=intent,
        intent_confidence=round(intent_confidence, 4),
        flow=state.flow,
        requested_slot=state.requested_slot,
        slots=_masked_slots(state.slots()),
        store_customer_id=state.customer_id,
        dissatisfaction=[t.dissatisfaction for t in turns],
        order_ids=ids,
        last_turns=turns[-keep_turns:],
    )
    context.summary = summarize(context)
    return context


def summarize(context: TicketContext) -> str:
    """A few lines an agent reads first (English, the agents' working language here; the
    customer's own words are quoted as they wrote them, masked)."""
    lines = [f"Handed over: {REASONS.get(context.reason, context.reason or 'handoff')} (intent {context.intent or 'unknown'})."]
    if context.flow:
        task = f"Task under way: {context.flow}"
        if context.requested_slot:
            task += f", waiting for {context.requested_slot}"
        lines.append(task + (f"; known: {', '.join(f'{k}={v}' for k, v in sorted(context.slots.items()))}." if context.slots else "."))
    if context.order_ids:
        lines.append(f"Orders: {', '.join(context.order_ids)}.")
    if context.dissatisfaction:
        lines.append(
            f"Dissatisfaction: now {context.dissatisfaction[-1]:.2f}, peak {max(context.dissatisfaction):.2f} "
            f"over {len(context.dissatisfaction)} turn(s)."
        )
    if context.last_turns:
        lines.append(f"Last message: “{context.last_turns[-1].customer_text}”")
    return "\n".join(lines)


def _masked_slots(slots: dict[str, str]) -> dict[str, str]:
    return {name: "[ADDRESS]" if name == "address" else mask_pii(value).text for name, value in slots.items()}


def context_from_json(raw: str) -> TicketContext:
    """The packet stored with a ticket; an empty one for tickets from before packets."""
    if not raw:
        return TicketContext()
    data = json.loads(raw)
    known = {k: v for k, v in data.items() if k in TicketContext.__dataclass_fields__}
    known["last_turns"] = [
        ContextTurn(**{k: v for k, v in t.items() if k in ContextTurn.__dataclass_fields__}) for t in known.get("last_turns", [])
    ]
    return TicketContext(**known)
