"""The SLA table of the configuration (workflows/tickets/sla.py)."""

from __future__ import annotations

import pytest

from services.config import KefuConfig
from workflows.tickets.sla import parse_sla, sla_for

TABLE = "complaint/high=900/14400, complaint=1800/28800, default=3600/86400"


def test_the_most_specific_item_wins():
    assert (sla_for(TABLE, "complaint", "high", 10).first_response_s, sla_for(TABLE, "complaint", "high", 10).resolution_s) == (900, 14400)
    assert sla_for(TABLE, "complaint", "normal", 10).first_response_s == 1800
    assert sla_for(TABLE, "sales", "high", 10).resolution_s == 86400
    assert sla_for(TABLE, "Complaint", "HIGH", 7).auto_close_s == 7


def test_the_default_table_parses():
    t = KefuConfig().tickets
    assert "default" in parse_sla(t.sla) and t.auto_close_s > 0


@pytest.mark.parametrize(
    "table, message",
    [("complaint=1800/28800", "needs a 'default="), ("default=60", "is not category"), ("default=a/b", "is not category"),
     ("default=0/10", "must be positive"), ("=1/2, default=1/2", "is not category")],
)
def test_a_bad_table_names_the_item(table, message):
    with pytest.raises(ValueError, match=message):
        parse_sla(table)
