"""A circuit breaker around the model backend.

After ``failures`` consecutive failures the breaker opens: calls fail at once
(``Unavailable``) instead of waiting on a dead server, so turns degrade quickly.
After ``reset_s`` one call is let through as a probe; its success closes the
breaker, its failure opens it again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import AsyncIterator, Callable

from services.errors import DeadlineExceeded, Unavailable
from services.generation.core import LlmBackend, ReplyDelta, Sampling
from services.generation.prompt import ChatMessage

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, *, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = failures
        self._reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.state = CLOSED

    def allow(self) -> bool:
        """Whether a call may go to the backend now."""
        with self._lock:
            if self.state == CLOSED:
                return True
            if self.state == OPEN and self._clock() - self._opened_at >= self._reset_s:
                self.state = HALF_OPEN
            if self.state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            if self.state != CLOSED:
                log.info("model backend is back: circuit closed")
            self.state, self._failures, self._probing = CLOSED, 0, False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            self._probing = False
            if self.state == HALF_OPEN or self._failures >= self._threshold:
                if self.state != OPEN:
                    log.warning("model backend failing: circuit open for %.0f s", self._reset_s)
                self.state, self._opened_at = OPEN, self._clock()

    def release_probe(self) -> None:
        """A call ended without telling success or failure (the caller went away)."""
        with self._lock:
            self._probing = False

    def retry_in(self) -> float:
        with self._lock:
            return max(0.0, self._reset_s - (self._clock() - self._opened_at)) if self.state == OPEN else 0.0


class GuardedLlm:
    """An LlmBackend behind a circuit breaker."""

    def __init__(self, backend: LlmBackend, breaker: CircuitBreaker) -> None:
        self._backend = backend
        self.breaker = breaker

    async def stream(self, messages: list[ChatMessage], sampling: Sampling) -> AsyncIterator[ReplyDelta]:
        if not self.breaker.allow():
            raise Unavailable(f"language model unavailable (circuit open; next probe in {self.breaker.retry_in():.0f} s)")
        settled = False
        try:
            async for delta in self._backend.stream(messages, sampling):
                yield delta
            self.breaker.record_success()
            settled = True
        except (Unavailable, DeadlineExceeded):
            self.breaker.record_failure()
            settled = True
            raise
        finally:
            if not settled:
                self.breaker.release_probe()

    async def close(self) -> None:
        await self._backend.close()
