"""Flow declarations of a domain pack (``flows.yaml``), read and validated once."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from services.config import REPO_ROOT
from services.erp.port import OPERATIONS

# The flows of each store format's domain pack.
PACK_FLOWS = {
    "tau-retail": REPO_ROOT / "services" / "packs" / "tau_retail" / "flows.yaml",
    "demo": REPO_ROOT / "services" / "demo" / "pack" / "flows.yaml",
}
IDENTITY = ("email", "name_zip", "phone")

SLOTS = ("identity", "email", "name_zip", "phone", "order_id", "items", "new_items", "payment_method", "reason", "address", "confirmation")
FLOW_SLOTS = ("identity", "order_id", "items", "new_items", "payment_method", "reason", "address", "confirmation")


@dataclass(frozen=True)
class FlowSpec:
    name: str
    slots: tuple[str, ...]
    operation: str = ""
    by_status: dict[str, str] = field(default_factory=dict)
    order_statuses: tuple[str, ...] = ()
    triggers: dict[str, tuple[re.Pattern[str], ...]] = field(default_factory=dict)
    # How customers of this pack's store prove who they are (the pack's ``identity``).
    identity: tuple[str, ...] = ("email", "name_zip")
    # False for a question only the customer's own records answer ("where is my
    # refund?"): the task starts at once instead of the knowledge answering first.
    knowledge_first: bool = True

    def operation_for(self, status: str) -> str:
        return self.by_status.get(status, self.operation)

    def triggered(self, text: str) -> int:
        """Where a trigger matches in ``text`` (-1 if none)."""
        spans = self.spans(text)
        return min(a for a, _ in spans) if spans else -1

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) of every trigger match in ``text``."""
        return [m.span() for patterns in self.triggers.values() for p in patterns for m in p.finditer(text)]


def load_flows(path: str | Path) -> list[FlowSpec]:
    """Read a pack's ``flows.yaml``; ``ValueError`` naming the flow when it is wrong."""
    file = Path(path)
    doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("flows"), list):
        raise ValueError(f"{file}: expected 'version: 1' and a list 'flows'")
    identity = tuple(doc.get("identity") or ("email", "name_zip"))
    if not identity or any(i not in IDENTITY for i in identity):
        raise ValueError(f"{file}: identity must be a list from {', '.join(IDENTITY)}")
    out = []
    for i, raw in enumerate(doc["flows"]):
        where = f"{file}: flow #{i} {raw.get('name', '') if isinstance(raw, dict) else ''}"
        if not isinstance(raw, dict) or not raw.get("name"):
            raise ValueError(f"{where}: needs a name")
        slots = tuple(raw.get("slots") or ())
        if not slots or any(s not in FLOW_SLOTS for s in slots):
            raise ValueError(f"{where}: slots must be a list from {', '.join(FLOW_SLOTS)}")
        ops = [raw.get("operation", "")] + list((raw.get("by_status") or {}).values())
        if any(op and op not in OPERATIONS for op in ops):
            raise ValueError(f"{where}: unknown operation in {ops}")
        triggers = {
            lang: tuple(re.compile(p, re.I) for p in patterns) for lang, patterns in (raw.get("triggers") or {}).items()
        }
        out.append(
            FlowSpec(
                name=raw["name"], slots=slots, operation=raw.get("operation", ""), by_status=dict(raw.get("by_status") or {}),
                order_statuses=tuple(raw.get("order_statuses") or ()), triggers=triggers, identity=identity,
                knowledge_first=bool(raw.get("knowledge_first", True)),
            )
        )
    return out


@functools.lru_cache(maxsize=None)
def flows_for(store_format: str) -> list[FlowSpec]:
    """The flows of the pack that goes with a store format; [] when it has none."""
    path = PACK_FLOWS.get(store_format)
    return load_flows(path) if path else []
