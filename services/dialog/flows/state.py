"""A conversation's task state, kept with the session between turns."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class FlowState:
    # The authenticated customer (the store's user id); one per conversation.
    customer_id: str = ""
    # The active flow's name, "" when none; flows the customer asked for next.
    flow: str = ""
    queue: list[str] = field(default_factory=list)
    # What the last reply asked for (DialogState.requested_slot vocabulary).
    requested_slot: str = ""
    # Collected values, as the operation takes them.
    operation: str = ""
    order_id: str = ""
    item_ids: list[str] = field(default_factory=list)
    new_item_ids: list[str] = field(default_factory=list)
    payment_method_id: str = ""
    reason: str = ""
    address: dict[str, str] = field(default_factory=dict)
    # What the customer said about items not yet placed in an order:
    # [{"product": name, "old": {...}, "new": {...}}].
    requests: list[dict[str, Any]] = field(default_factory=list)
    # What the customer said before they were identified (read again once they are).
    unread: list[str] = field(default_factory=list)
    # Awaiting a yes: {"operation": name, "args": {...}} exactly as it would run.
    pending: dict[str, Any] = field(default_factory=dict)

    def clear_task(self) -> None:
        """Forget the active task's values (the customer stays authenticated)."""
        keep = (self.customer_id, self.queue)
        self.__init__()  # type: ignore[misc]
        self.customer_id, self.queue = keep

    def slots(self) -> dict[str, str]:
        """Values held so far, as strings (lists and addresses JSON-encoded)."""
        out: dict[str, str] = {}
        if self.customer_id:
            out["identity"] = "verified"
        for name in ("order_id", "payment_method_id", "reason"):
            if value := getattr(self, name):
                out[name] = value
        if self.item_ids:
            out["item_ids"] = json.dumps(self.item_ids)
        if self.new_item_ids:
            out["new_item_ids"] = json.dumps(self.new_item_ids)
        if self.address:
            out["address"] = json.dumps(self.address, ensure_ascii=False)
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> "FlowState":
        if not raw:
            return cls()
        data = json.loads(raw)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
