"""Which fallbacks a request used: a model server was unreachable and the answer came from
an in-process stand-in (services/embedding.py FallbackEmbedder, services/nlu/intents.py
FallbackIntentModel). A servicer opens ``tracking()`` around a request and reports its
``degraded`` field from what the fallbacks ``note``d; outside tracking, ``note`` does nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

_USED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("kefu_fallbacks_used", default=None)


@contextlib.contextmanager
def tracking() -> Iterator[list[str]]:
    """The fallbacks used inside the block (by this task and what it awaits)."""
    used: list[str] = []
    token = _USED.set(used)
    try:
        yield used
    finally:
        _USED.reset(token)


def note(what: str) -> None:
    used = _USED.get()
    if used is not None and what not in used:
        used.append(what)
