"""SLA per ticket category and priority, from the configuration's ``tickets.sla``:

    "complaint/high=900/14400, complaint=1800/28800, default=3600/86400"

each item ``category[/priority]=first_response_s/resolution_s``; the most specific item
wins (category and priority, then category, then ``default``). Auto-close after
resolution is ``tickets.auto_close_s`` for every ticket.
"""

from __future__ import annotations

from workflows.tickets.types import TicketSla


def parse_sla(table: str) -> dict[str, tuple[float, float]]:
    """``{"complaint/high": (900, 14400), ...}``; ``ValueError`` naming a bad item."""
    out: dict[str, tuple[float, float]] = {}
    for item in (i.strip() for i in table.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        first, sep2, resolution = value.partition("/")
        try:
            if not sep or not sep2 or not key.strip():
                raise ValueError
            seconds = (float(first), float(resolution))
        except ValueError:
            raise ValueError(f"tickets.sla: {item!r} is not category[/priority]=first_response_s/resolution_s") from None
        if min(seconds) <= 0:
            raise ValueError(f"tickets.sla: {item!r}: seconds must be positive")
        out[key.strip().lower()] = seconds
    if "default" not in out:
        raise ValueError("tickets.sla needs a 'default=first_response_s/resolution_s' item")
    return out


def sla_for(table: str, category: str, priority: str, auto_close_s: float) -> TicketSla:
    rows = parse_sla(table)
    first, resolution = rows.get(f"{category}/{priority}".lower()) or rows.get(category.lower()) or rows["default"]
    return TicketSla(first_response_s=first, resolution_s=resolution, auto_close_s=auto_close_s)
